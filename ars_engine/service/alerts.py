"""Alert rules and their de-duplication, as pure functions: no I/O, no clock (``now`` is given).
The asyncio edge (service/alerting.py) reads a :class:`Snapshot`, calls :func:`evaluate` and
:func:`plan` inside one locked transaction, sends the notifications, and records each answer
with :func:`settle`.

Rules (``[alerts]``, config_ops.AlertsConfig), one key each:

    trunk_down:<host:port>  this node's OPTIONS keepalive gets no answer from the trunk
    ami_down                this node's AMI connection is not logged in (reconnecting, closed)
    answer_rate_low         answered / ended calls within answer_window_minutes < answer_rate_min,
                            once at least answer_min_calls were dialled and ended
    webhook_dead_letters    a webhook event went dead within dead_letter_window_minutes
    queue_age               the oldest due queued call has waited > queue_age_seconds

:func:`evaluate` returns a :class:`Condition` for every key this node can judge (firing or
clear); a key it cannot judge (no trunk watched, no answer to OPTIONS yet) is absent and its row
is left alone.

The state machine (one ``alerts`` row per key, shared by every node; :func:`plan`):

    reading  row        → row                                        notification
    firing   none       → firing, since=now, due                     "firing"
    firing   firing     → confirmed (updated_at, value, message)     none
    firing   resolved   → firing, since=now, due unless notified     "firing"
    clear    none       → none                                       none
    clear    firing     → resolved, since=now, due unless notified   "resolved"
    clear    resolved   → none                                       none

- A reading changes a row's state only if it is news: this node has seen it since the row's
  ``since`` or later (``Condition.observed``). So when nodes disagree for a moment (the trunk went
  down, one node's keepalive noticed first) the alert does not flip back and forth; a reading
  older than the row also wins once the row is stale (:func:`stale_after`): a firing row nobody
  confirmed lately (its node died), a resolved row this node has contradicted all along.
- Due means ``state != notified`` (the last state delivered): a condition that clears and comes
  back before its "resolved" went out sends nothing, and a change while a notification waits
  for a retry sends only the latest state, when the retry is due.
- A due notification is claimed (``next_notify_at = now + claim``) in the transaction that found
  it, so another node does not send it too; :func:`settle` records the answer: delivered →
  ``notified``; failed → ``next_notify_at = now + retry_seconds``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config_ops import AlertsConfig
    from .health import BackendHealth

FIRING = "firing"  # = store.models.FIRING
RESOLVED = "resolved"  # = store.models.RESOLVED

TRUNK_DOWN = "trunk_down"
AMI_DOWN = "ami_down"
ANSWER_RATE_LOW = "answer_rate_low"
WEBHOOK_DEAD_LETTERS = "webhook_dead_letters"
QUEUE_AGE = "queue_age"
RULES = (TRUNK_DOWN, AMI_DOWN, ANSWER_RATE_LOW, WEBHOOK_DEAD_LETTERS, QUEUE_AGE)

SMS_LIMIT = 140  # characters of a message (one long SMS)
STALE_INTERVALS = 3
STALE_MIN = timedelta(seconds=120)  # > a trunk keepalive interval (30 s by default)

# rule → ((Korean, English) when firing, (Korean, English) when resolved)
_TEXT: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    TRUNK_DOWN: (("트렁크 응답 없음", "trunk down"), ("트렁크 복구", "trunk up")),
    AMI_DOWN: (("AMI 연결 끊김", "AMI down"), ("AMI 연결 복구", "AMI up")),
    ANSWER_RATE_LOW: (("응답률 낮음", "answer rate low"), ("응답률 회복", "answer rate ok")),
    WEBHOOK_DEAD_LETTERS: (("웹훅 전달 실패", "webhook dead letters"),
                           ("웹훅 실패 해소", "no new webhook dead letters")),
    QUEUE_AGE: (("발신 대기 지연", "queue delayed"), ("발신 대기 정상", "queue ok")),
}


def alert_message(rule: str, state: str, detail: str) -> str:
    """The SMS text: ``[ARS] 트렁크 응답 없음 / trunk down 10.0.0.1:5060``, at most
    :data:`SMS_LIMIT` characters."""
    korean, english = _TEXT[rule][state == RESOLVED]
    text = f"[ARS] {korean} / {english} {detail}".rstrip()
    return text if len(text) <= SMS_LIMIT else text[:SMS_LIMIT - 1] + "…"


def stale_after(config: AlertsConfig) -> timedelta:
    """How long a row may go without a confirming reading before an older reading may flip it."""
    return max(timedelta(seconds=STALE_INTERVALS * config.interval_seconds), STALE_MIN)


# -- what a node sees ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkView:
    """A link is ``up`` (or down) in this node's eyes, continuously ``since``."""

    up: bool
    since: datetime


def observe(previous: LinkView | None, up: bool | None, now: datetime) -> LinkView | None:
    """The view after reading ``up`` at ``now`` (None: unknown); ``since`` moves on a change."""
    if up is None:
        return None
    if previous is not None and previous.up == up:
        return previous
    return LinkView(up, now)


@dataclass(frozen=True, slots=True)
class Links:
    """This node's trunk and AMI as seen at successive evaluations (the edge keeps the last)."""

    trunk: str | None = None  # "host:port" of the watched trunk
    trunk_view: LinkView | None = None
    ami_state: str | None = None
    ami_view: LinkView | None = None  # up = logged in

    def update(self, health: BackendHealth, now: datetime) -> Links:
        """Fold a new :class:`~ars_engine.service.health.BackendHealth` reading in."""
        same_trunk = self.trunk == health.trunk
        trunk_view = observe(self.trunk_view if same_trunk else None, health.trunk_up, now)
        # idle: not connected yet (startup), nothing to judge
        ami_up = None if health.ami_state in (None, "idle") else bool(health.ami_connected)
        return Links(health.trunk, trunk_view, health.ami_state,
                     observe(self.ami_view, ami_up, now))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the rules look at, read at ``now``."""

    now: datetime
    links: Links = Links()
    ended_calls: int = 0  # dialled calls that ended (finished/failed) within the answer window
    answered_calls: int = 0  # of those, the answered ones
    dead_letters: int = 0  # webhook events that went dead within the dead-letter window
    oldest_queued_age: float | None = None  # seconds the oldest due queued call has waited


@dataclass(frozen=True, slots=True)
class Condition:
    """One rule's reading for one key: ``firing`` or clear, ``observed`` continuously since."""

    key: str
    rule: str
    firing: bool
    value: float | None
    detail: str  # subject and numbers, for the message ("10.0.0.1:5060", "12% (3/25) < 30%")
    observed: datetime

    @property
    def state(self) -> str:
        return FIRING if self.firing else RESOLVED

    @property
    def message(self) -> str:
        return alert_message(self.rule, self.state, self.detail)


def _percent(rate: float) -> str:
    return f"{rate * 100:.0f}%"


def evaluate(snapshot: Snapshot, config: AlertsConfig) -> dict[str, Condition]:
    """The reading of every key this node can judge now (module docstring)."""
    now, links = snapshot.now, snapshot.links
    out: dict[str, Condition] = {}
    if links.trunk is not None and links.trunk_view is not None:
        key = f"{TRUNK_DOWN}:{links.trunk}"
        out[key] = Condition(key, TRUNK_DOWN, not links.trunk_view.up, None, links.trunk,
                             links.trunk_view.since)
    if links.ami_view is not None:
        detail = "" if links.ami_view.up else f"({links.ami_state})"
        out[AMI_DOWN] = Condition(AMI_DOWN, AMI_DOWN, not links.ami_view.up, None, detail,
                                  links.ami_view.since)

    ended, answered = snapshot.ended_calls, snapshot.answered_calls
    rate = answered / ended if ended else None
    low = rate is not None and ended >= config.answer_min_calls and rate < config.answer_rate_min
    counts = f"({answered}/{ended} in {config.answer_window_minutes:g}m)"
    if rate is None:
        detail = f"(no calls in {config.answer_window_minutes:g}m)"
    elif low:
        detail = f"{_percent(rate)} {counts} < {_percent(config.answer_rate_min)}"
    else:
        detail = f"{_percent(rate)} {counts}"
    out[ANSWER_RATE_LOW] = Condition(ANSWER_RATE_LOW, ANSWER_RATE_LOW, low, rate, detail, now)

    dead = snapshot.dead_letters
    out[WEBHOOK_DEAD_LETTERS] = Condition(
        WEBHOOK_DEAD_LETTERS, WEBHOOK_DEAD_LETTERS, dead > 0, float(dead),
        f"{dead} in {config.dead_letter_window_minutes:g}m" if dead else "", now)

    age = snapshot.oldest_queued_age or 0.0
    slow = age > config.queue_age_seconds
    detail = (f"oldest {age:.0f}s > {config.queue_age_seconds:g}s" if slow
              else f"oldest {age:.0f}s")
    out[QUEUE_AGE] = Condition(QUEUE_AGE, QUEUE_AGE, slow, age, detail, now)
    return out


# -- the shared rows and their changes -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AlertRecord:
    """An ``alerts`` row (store.models.Alert) as plain data."""

    key: str
    rule: str
    state: str
    message: str
    value: float | None
    since: datetime  # when the current state began
    updated_at: datetime  # last change or confirmation by a reading
    notified: str | None = None  # the state last delivered
    notify_attempts: int = 0  # attempts to deliver the current state
    next_notify_at: datetime | None = None  # due (or claimed until) this time; None: nothing due
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    """A row changed state (logged; the console and metrics may show it)."""

    key: str
    rule: str
    state: str
    message: str


@dataclass(frozen=True, slots=True)
class Notification:
    """What to POST: the row's state when it was claimed."""

    key: str
    rule: str
    state: str
    message: str
    value: float | None
    since: datetime


@dataclass(frozen=True, slots=True)
class Plan:
    records: dict[str, AlertRecord]  # every row after this evaluation
    changed: tuple[str, ...]  # keys of rows to insert or update
    transitions: tuple[Transition, ...]
    notifications: tuple[Notification, ...]


def _is_news(row: AlertRecord, reading: Condition, now: datetime, stale: timedelta) -> bool:
    if reading.observed >= row.since:
        return True
    if reading.firing:  # resolved by another node's reading while this one saw it down all along
        return now - row.since >= stale
    return now - row.updated_at >= stale  # firing, but nobody has confirmed it lately


def _read(row: AlertRecord | None, reading: Condition, now: datetime, stale: timedelta,
          can_send: bool) -> AlertRecord | None:
    """The row after ``reading``; None when it stays as it is."""
    message, state = reading.message, reading.state
    if row is None:
        if not reading.firing:
            return None
        return AlertRecord(reading.key, reading.rule, FIRING, message, reading.value, now, now,
                           next_notify_at=now if can_send else None)
    if row.state == state:
        if not reading.firing:
            return None
        return replace(row, message=message, value=reading.value, updated_at=now)
    if not _is_news(row, reading, now, stale):
        return None
    due = state != row.notified
    pending = row.next_notify_at
    # Keep a claim or a retry delay in force: the latest state goes out when it ends.
    next_at = (max(pending, now) if pending is not None else now) if due and can_send else None
    return replace(row, state=state, message=message, value=reading.value, since=now,
                   updated_at=now, notify_attempts=0, next_notify_at=next_at)


def plan(records: Mapping[str, AlertRecord], readings: Mapping[str, Condition], *,
         now: datetime, config: AlertsConfig, claim: timedelta | None) -> Plan:
    """Apply ``readings`` to the stored ``records`` and claim the due notifications for ``claim``
    (None: there is nowhere to send them; changes are recorded and not due)."""
    stale = stale_after(config)
    out = dict(records)
    changed: list[str] = []
    transitions: list[Transition] = []
    for key, reading in readings.items():
        row = records.get(key)
        new = _read(row, reading, now, stale, claim is not None)
        if new is None:
            continue
        out[key] = new
        changed.append(key)
        if row is None or row.state != new.state:
            transitions.append(Transition(key, new.rule, new.state, new.message))
    notifications: list[Notification] = []
    if claim is not None:
        for key in sorted(out):
            row = out[key]
            if (row.state != row.notified and row.next_notify_at is not None
                    and row.next_notify_at <= now):
                out[key] = replace(row, next_notify_at=now + claim)
                if key not in changed:
                    changed.append(key)
                notifications.append(Notification(key, row.rule, row.state, row.message,
                                                  row.value, row.since))
    return Plan(out, tuple(changed), tuple(transitions), tuple(notifications))


def settle(row: AlertRecord, sent: Notification, *, delivered: bool, error: str | None,
           now: datetime, retry: timedelta) -> AlertRecord:
    """The row after an attempt to deliver ``sent`` (the row may have changed meanwhile)."""
    same = row.state == sent.state and row.since == sent.since
    attempts = row.notify_attempts + 1 if same else row.notify_attempts
    notified = sent.state if delivered else row.notified
    if row.state == notified:
        next_at = None
    elif delivered:
        next_at = now  # the state changed while sending: the new one is due at once
    else:
        next_at = now + retry
    return replace(row, notified=notified, notify_attempts=attempts, next_notify_at=next_at,
                   last_error=None if delivered else error)
