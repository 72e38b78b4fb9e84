"""The alert monitor: evaluates the rules of service/alerts.py on this node and tells the
``[alerts] url`` (an SMS gateway, a chat hook) when an alert fires or resolves.

- A round (:meth:`AlertMonitor.run_once`): read the backend's links (service/health.py), then in
  ONE transaction that locks the ``alerts`` rows (an advisory lock and ``FOR UPDATE`` on
  PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) read the numbers, apply the state machine and claim
  the due notifications; commit; POST them; record each answer. Two nodes never both announce a
  change: the second one reads the first one's rows.
- The POST: JSON ``{"alert", "rule", "state", "message", "value", "since", "node", "sent_at"}``
  signed like the webhooks (``X-ARS-Signature: t=…,v1=…``, service/signing.py) with a secret
  derived from the master key (:func:`alert_secret`). 2xx: delivered; anything else is retried
  after ``retry_seconds``.
- When: every ``interval_seconds``, at once when the trunk's keepalive status or the AMI
  connection's state changes (``AmiClient.state_changed``), and when a retry falls due.
- Without ``url``: evaluated, stored and logged; nothing is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import ArsError
from ..store import alert_queries
from ..store.models import FIRING, Alert
from ..store.repo import iso
from .alerts import (
    AlertRecord,
    Condition,
    Links,
    Notification,
    Snapshot,
    Transition,
    evaluate,
    plan,
    settle,
)
from .health import backend_health
from .tasks import cancel_and_wait, finish_round
from .webhooks import SEND_TIMEOUT, post_signed, signing_client

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from ..config_ops import AlertsConfig
    from ..store.db import Store
    from .keys import MasterKey
    from .runtime import Services

log = logging.getLogger("ars_engine.alerts")
USER_AGENT = "ars-engine-alerts/1"
CLAIM = timedelta(seconds=SEND_TIMEOUT + 5)  # > SEND_TIMEOUT: a node that died mid-POST frees it
_RECORD_FIELDS = tuple(f.name for f in fields(AlertRecord))


def alert_secret(keys: MasterKey) -> str:
    """The signing secret of alert notifications (the receiver verifies ``X-ARS-Signature``
    with it, as a tenant does its webhooks)."""
    return "whsec_" + keys.derive("alerts").hex()


async def list_alerts(store: Store, *, state: str | None = None) -> list[Alert]:
    """The alert rows for the console and ``/metrics`` (``state="firing"``: the current ones)."""
    async with store.session() as s:
        return list(await alert_queries.list_alerts(s, state=state))


@dataclass(frozen=True, slots=True)
class NotifyResult:
    """One attempt to deliver a notification, once recorded."""

    notification: Notification
    delivered: bool
    status: int | None  # the HTTP status, None when no answer came
    error: str | None
    attempts: int  # attempts at the row's current state, this one included


@dataclass(frozen=True, slots=True)
class Round:
    """What one evaluation saw and did."""

    at: datetime
    conditions: dict[str, Condition]
    transitions: tuple[Transition, ...]
    results: tuple[NotifyResult, ...]
    next_due: datetime | None  # the earliest pending notification (a retry), if any


def _record(row: Alert) -> AlertRecord:
    return AlertRecord(**{name: getattr(row, name) for name in _RECORD_FIELDS})


def _write(row: Alert, record: AlertRecord) -> None:
    for name in _RECORD_FIELDS[1:]:  # not the key
        setattr(row, name, getattr(record, name))


class AlertMonitor:
    """Watches this node's links and the shared store; ``start()`` / ``stop()``, ``wake()``.
    ``on_notify`` is called with each recorded :class:`NotifyResult` (tests await it through a
    queue)."""

    def __init__(self, services: Services, *, node_id: str,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.services = services
        self.node_id = node_id
        self.clock = clock or services.clock
        self.secret = alert_secret(services.keys)
        self.on_notify: Callable[[NotifyResult], None] = lambda result: None
        self.links = Links()  # this node's view of its links, carried between rounds
        self.rounds = 0
        self.last_round: Round | None = None  # the latest evaluation (console, metrics)
        self.sent = 0  # notifications delivered
        self.failed = 0  # attempts that failed
        self._wake = asyncio.Event()
        self._ami_down = asyncio.Event()  # a round saw the AMI down: watch for its return
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def config(self) -> AlertsConfig:
        return self.services.settings.alerts

    async def open(self) -> None:
        """The HTTP client alone (``start()`` opens it too): enough for :meth:`run_once`
        rounds driven by the caller; ``stop()`` closes it."""
        if self._http is None:
            self._http = signing_client(USER_AGENT)

    async def start(self) -> None:
        """Open the client, watch the backend's links, and run a round now and then."""
        await self.open()
        self._stopping = False
        backend = self.services.backend
        trunk = getattr(backend, "trunk", None)
        if trunk is not None and isinstance(getattr(trunk, "changed", None), asyncio.Event):
            self._watchers.append(asyncio.create_task(self._watch_trunk(trunk.changed),
                                                      name="alerts-trunk"))
        ami = getattr(backend, "ami", None)
        if ami is not None and hasattr(ami, "wait_connected"):
            self._watchers.append(asyncio.create_task(self._watch_ami(ami), name="alerts-ami"))
        self._task = asyncio.create_task(self._loop(), name="alerts")

    async def stop(self) -> None:
        """Finish the round in progress (bounded), stop the watchers, close the client."""
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await finish_round(self._task, SEND_TIMEOUT + 1)
            self._task = None
        watchers, self._watchers = self._watchers, []
        for task in watchers:
            await cancel_and_wait(task)
        if self._http is not None:
            await self._http.close()
            self._http = None

    def wake(self) -> None:
        """Evaluate now (something changed)."""
        self._wake.set()

    async def _watch_trunk(self, changed: asyncio.Event) -> None:
        while True:
            await changed.wait()
            changed.clear()
            self.wake()

    async def _watch_ami(self, ami: Any) -> None:
        changed = getattr(ami, "state_changed", None)
        if isinstance(changed, asyncio.Event):  # AmiClient: every change, down as well as up
            await self._watch_trunk(changed)
            return
        while True:  # a client without the event: at least its return is seen at once
            await self._ami_down.wait()
            self._ami_down.clear()
            try:
                await ami.wait_connected()
            except ArsError:  # AmiClosed: the backend is shutting down
                return
            self.wake()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            delay = self.config.interval_seconds
            try:
                done = await self.run_once()
            except Exception:  # a failed round (database down…) must not end the monitor
                log.exception("alerts: evaluation failed; again in %.0f s", delay)
            else:
                if done.next_due is not None:
                    delay = min(delay, max(0.0, (done.next_due - self.clock()).total_seconds()))
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    # -- one round -----------------------------------------------------------------------------
    async def run_once(self) -> Round:
        """Evaluate, record the changes, send what is due, record the answers."""
        config = self.config
        claim = CLAIM if config.url else None
        async with self.services.store.session() as s, s.begin():
            rows = {row.key: row for row in await alert_queries.lock_alerts(s)}
            # Read under the lock: later than any change another node already stored.
            now = self.clock()
            self.links = self.links.update(backend_health(self.services.backend), now)
            snapshot = await self._snapshot(s, now)
            conditions = evaluate(snapshot, config)
            step = plan({k: _record(r) for k, r in rows.items()}, conditions, now=now,
                        config=config, claim=claim)
            for key in step.changed:
                record = step.records[key]
                row = rows.get(key)
                if row is None:
                    s.add(Alert(**{name: getattr(record, name) for name in _RECORD_FIELDS}))
                else:
                    _write(row, record)
        self.rounds += 1
        if self.links.ami_view is not None and not self.links.ami_view.up:
            self._ami_down.set()
        for change in step.transitions:
            log.log(logging.WARNING if change.state == FIRING else logging.INFO,
                    "alert %s %s: %s", change.key, change.state, change.message)
        records = dict(step.records)
        results: list[NotifyResult] = []
        if step.notifications:
            for result, after in await self._deliver(step.notifications):
                records[after.key] = after
                results.append(result)
                self.on_notify(result)
        pending = [r.next_notify_at for r in records.values()
                   if r.state != r.notified and r.next_notify_at is not None]
        next_due = min(pending) if claim is not None and pending else None
        self.last_round = Round(now, conditions, step.transitions, tuple(results), next_due)
        return self.last_round

    async def _snapshot(self, s: AsyncSession, now: datetime) -> Snapshot:
        config = self.config
        ended, answered = await alert_queries.answer_counts(
            s, now - timedelta(minutes=config.answer_window_minutes))
        dead = await alert_queries.dead_letter_count(
            s, now - timedelta(minutes=config.dead_letter_window_minutes))
        oldest = await alert_queries.oldest_due_queued(s, now)
        age = None if oldest is None else max(0.0, (now - oldest).total_seconds())
        return Snapshot(now, self.links, ended, answered, dead, age)

    async def _deliver(self, notifications: Sequence[Notification]
                       ) -> list[tuple[NotifyResult, AlertRecord]]:
        """POST each (concurrently), then record every answer in one transaction."""
        answers = await asyncio.gather(*(self._post(n) for n in notifications))
        recorded: list[tuple[NotifyResult, AlertRecord]] = []
        retry = timedelta(seconds=self.config.retry_seconds)
        async with self.services.store.session() as s, s.begin():
            for notification, (status, error) in zip(notifications, answers, strict=True):
                delivered = error is None
                row = await alert_queries.get_alert_for_update(s, notification.key)
                if row is None:  # never deleted; nothing to record
                    continue
                after = settle(_record(row), notification, delivered=delivered, error=error,
                               now=self.clock(), retry=retry)
                _write(row, after)
                if delivered:
                    self.sent += 1
                    log.info("alert %s %s sent", notification.key, notification.state)
                else:
                    self.failed += 1
                    log.warning("alert %s %s not sent (%s); again in %.0f s", notification.key,
                                notification.state, error, retry.total_seconds())
                recorded.append((NotifyResult(notification, delivered, status, error,
                                              after.notify_attempts), after))
        return recorded

    async def _post(self, notification: Notification) -> tuple[int | None, str | None]:
        """(HTTP status, error or None when delivered)."""
        assert self._http is not None, "AlertMonitor.open() or start() first"
        url = self.config.url
        assert url is not None, "nothing is claimed without a url"
        body = json.dumps({
            "alert": notification.key, "rule": notification.rule,
            "state": notification.state, "message": notification.message,
            "value": notification.value, "since": iso(notification.since),
            "node": self.node_id, "sent_at": iso(self.clock()),
        }, ensure_ascii=False, separators=(",", ":")).encode()
        result = await post_signed(self._http, url, body, self.secret,
                                   {"Content-Type": "application/json; charset=utf-8"})
        return result.status, None if result.ok else _redact(result.error or "", url)


def _redact(text: str, url: str) -> str:
    """An error text without the URL's query (a gateway token may sit there)."""
    query = urlsplit(url).query
    return text.replace(query, "…") if query else text


__all__ = ["AlertMonitor", "NotifyResult", "Round", "alert_secret", "list_alerts"]
