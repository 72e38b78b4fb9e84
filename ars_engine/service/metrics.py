"""Prometheus metrics of one engine process (``GET /metrics``), in a registry of its own.

Two kinds of series (docs/observability.md lists each one):

- **From the store, read at scrape time** (:meth:`EngineMetrics.refresh`): calls by state and
  outcome, the due queue, the webhook outbox, firing alerts. They describe the shared database,
  so every node reports the same values; they always match the tables. One short unit of work,
  bounded by a timeout; when the store does not answer, these series are left out and
  ``ars_store_up`` is 0 (the rest of the scrape still answers).
- **This process's own**: terminal writes and call setup times (the dispatcher's hooks), webhook
  deliveries (the sender's hook), running calls, RTP sessions and packets, the backend's links.

Label values are closed sets (states, outcomes, statuses, alert rules, the version): never a
number, a parameter or a secret.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from .. import __version__
from ..errors import StoreError
from ..store.models import FIRING, PENDING, QUEUED, Alert, Call, Node, WebhookEvent
from .health import backend_health
from .masking import DEFAULT_REGISTRY
from .nodes import ALIVE, DEAD, STOPPED, node_status

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from ..store.db import Store
    from .runtime import Services

__all__ = ["SETUP_BUCKETS", "WEBHOOK_RESULTS", "BoundedQuery", "EngineMetrics", "StoreSnapshot"]

log = logging.getLogger("ars_engine.metrics")
T = TypeVar("T")

STORE_TIMEOUT = 2.0  # seconds a scrape waits for the store
# dial start → answered or failed: a busy line answers in ~0.1 s, a trunk gives up after ~60 s
SETUP_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0)
# RFC 3550 interarrival jitter at the end of a call; 20 ms packets, so 30 ms is already bad
JITTER_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1)
WEBHOOK_RESULTS = ("delivered", "failed", "dead")


# -- the store's side ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What one scrape read from the store; ages are in seconds at ``read_at``."""

    read_at: datetime
    calls: dict[tuple[str, str], int] = field(default_factory=dict)  # (state, outcome) → rows
    queued_due: int = 0
    queue_oldest_age: float = 0.0
    webhook_events: dict[str, int] = field(default_factory=dict)  # status → rows
    webhook_oldest_pending_age: float = 0.0
    alerts_firing: dict[str, int] = field(default_factory=dict)  # rule → firing alerts
    nodes: dict[str, int] = field(default_factory=dict)  # alive/dead/stopped → nodes


def read_store(session: Session, now: datetime, lease: timedelta) -> StoreSnapshot:
    """Read every store-side series in one unit of work (a few aggregate queries); a node
    without a heartbeat for ``lease`` counts as dead."""
    calls = {(state, outcome or ""): count for state, outcome, count in session.execute(
        select(Call.state, Call.outcome, func.count()).group_by(Call.state, Call.outcome))}
    due, oldest_due = session.execute(
        select(func.count(), func.min(Call.not_before))
        .where(Call.state == QUEUED, Call.not_before <= now)).one()
    events = {status: count for status, count in session.execute(
        select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status))}
    oldest_pending = session.scalar(
        select(func.min(WebhookEvent.created_at)).where(WebhookEvent.status == PENDING))
    alerts = {rule: count for rule, count in session.execute(
        select(Alert.rule, func.count()).where(Alert.state == FIRING).group_by(Alert.rule))}
    nodes = dict.fromkeys((ALIVE, DEAD, STOPPED), 0)
    for node in session.scalars(select(Node)):
        nodes[node_status(node, now, lease)] += 1
    return StoreSnapshot(now, calls, int(due), _age(now, oldest_due), events,
                         _age(now, oldest_pending), alerts, nodes)


def _age(now: datetime, since: datetime | None) -> float:
    return 0.0 if since is None else max((now - since).total_seconds(), 0.0)


class BoundedQuery:
    """Runs one unit of work on the store at a time and waits at most ``timeout`` for it.

    A unit that overruns is not cancelled (cancelling a SQLite statement mid-way can leave the
    database locked): it runs on in its own task, and until it ends every :meth:`run` fails at
    once rather than queue more work on a database that is not answering. :meth:`close`
    cancels and awaits it."""

    def __init__(self, timeout: float = STORE_TIMEOUT) -> None:
        self.timeout = timeout
        self._task: asyncio.Task[Any] | None = None

    async def run(self, store: Store, work: Callable[[Session], T]) -> T:
        """``work``'s result; StoreError when the store fails, is still busy with the previous
        unit, or does not answer in time."""
        if self._task is not None and not self._task.done():
            raise StoreError("the store has not answered the previous check yet")
        task: asyncio.Task[T] = asyncio.create_task(store.run(work), name="store-check")
        task.add_done_callback(_retrieve)
        self._task = task
        done, _pending = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            raise StoreError(f"the store did not answer within {self.timeout:g} s")
        try:
            return task.result()
        except StoreError:
            raise
        except Exception as exc:  # a closed store, a refused connection: a failed check
            first = (str(exc).splitlines() or [""])[0][:200]
            raise StoreError(f"{type(exc).__name__}: {first}") from exc

    async def wait(self) -> None:
        """Wait until the unit of work in progress (if any) has ended, however it ends."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def close(self) -> None:
        """Cancel the unit of work still running, and wait for it to end."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})  # its outcome is consumed by _retrieve


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark an abandoned unit's outcome as seen (no "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


# -- the registry ----------------------------------------------------------------------------------

class EngineMetrics:
    """The metrics of one engine process; ``attach(services)`` hooks the dispatcher and the
    webhook sender in, ``scrape()`` (or ``refresh()`` then ``render()``) answers a scrape."""

    def __init__(self, services: Services | None = None, *, version: str = __version__,
                 store_timeout: float = STORE_TIMEOUT) -> None:
        # the event series live in a registry of their own, exposed without their _created
        # samples (a second series per label set that no dashboard reads)
        r = CollectorRegistry(auto_describe=True)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_WithoutCreated(r))
        self.calls_finished = Counter(
            "ars_calls_finished", "Calls this node ended (terminal writes), by state and outcome",
            ["state", "outcome"], registry=r)
        self.call_setup = Histogram(
            "ars_call_setup_seconds", "Dial start to answer or failure, by attempt outcome",
            ["outcome"], buckets=SETUP_BUCKETS, registry=r)
        self.webhook_deliveries = Counter(
            "ars_webhook_deliveries", "Webhook delivery attempts by result (failed: retried)",
            ["result"], registry=r)
        for result in WEBHOOK_RESULTS:
            self.webhook_deliveries.labels(result)  # present at 0: rate() works from the start
        self.rtp_jitter = Histogram(
            "ars_rtp_jitter_seconds", "Receive jitter (RFC 3550) of each ended RTP session",
            buckets=JITTER_BUCKETS, registry=r)
        Gauge("ars_build_info", "The engine's version (always 1)", ["version"],
              registry=r).labels(version).set(1)
        self.services: Services | None = None
        self.snapshot: StoreSnapshot | None = None
        self.store_error: str | None = None
        self.store_query = BoundedQuery(store_timeout)
        # /readyz has its own: a scrape's unit still running does not fail the probe at once
        self.ready_query = BoundedQuery(store_timeout)
        self._rtp_ended = _RtpTotals()
        self._lock = asyncio.Lock()
        self.registry.register(_LiveCollector(self))
        if services is not None:
            self.attach(services)

    def attach(self, services: Services) -> None:
        """Read ``services`` at each scrape and hook its dispatcher and webhook sender (their
        ``metrics`` attribute) to these metrics."""
        self.services = services
        for worker in (services.dispatcher, services.webhooks):
            if worker is not None and hasattr(worker, "metrics"):
                worker.metrics = self

    # -- hooks (the dispatcher, the webhook sender) -------------------------------------------

    def observe_setup(self, outcome: str, seconds: float) -> None:
        """One dial attempt ended after ``seconds`` with ``outcome`` (answered, busy…)."""
        self.call_setup.labels(outcome).observe(max(seconds, 0.0))

    def call_finished(self, state: str, outcome: str | None) -> None:
        """This node committed a call's terminal state."""
        self.calls_finished.labels(state, outcome or "").inc()

    def webhook_delivery(self, result: str) -> None:
        """This node committed a delivery attempt's result: delivered, failed or dead."""
        self.webhook_deliveries.labels(result).inc()

    def media_ended(self, channel: object) -> None:
        """A call's channel was closed: its RTP counts move from live to ended (call this in
        the same synchronous step that stops listing the channel as live)."""
        stats = _rtp_stats(channel)
        if stats is not None:
            self._rtp_ended.add(stats)
            self.rtp_jitter.observe(stats.jitter)

    # -- scrape ----------------------------------------------------------------------------------

    async def refresh(self, services: Services | None = None) -> StoreSnapshot | None:
        """Read the store-side series (bounded by the store timeout); None, with
        ``store_error`` set, when the store did not answer. Never raises for the store."""
        if services is not None and services is not self.services:
            self.attach(services)
        if self.services is None:
            self.snapshot, self.store_error = None, "no services attached"
            return None
        now = self.services.clock()
        lease = timedelta(seconds=self.services.settings.service.lease_seconds)
        try:
            snapshot = await self.store_query.run(self.services.store,
                                                  lambda s: read_store(s, now, lease))
        except StoreError as exc:
            if self.store_error is None:  # once per outage, not at every scrape
                log.warning("metrics: the store did not answer: %s", exc)
            self.snapshot, self.store_error = None, DEFAULT_REGISTRY.scrub(str(exc))
            return None
        self.snapshot, self.store_error = snapshot, None
        return snapshot

    def render(self) -> bytes:
        """The exposition text (format 0.0.4) of every series; never raises for a bad part."""
        return generate_latest(self.registry)

    async def scrape(self, services: Services | None = None) -> bytes:
        """``refresh`` then ``render``, one scrape at a time."""
        async with self._lock:
            await self.refresh(services)
            return self.render()

    async def close(self) -> None:
        """Stop the store reads still running (at the app's cleanup)."""
        await self.store_query.close()
        await self.ready_query.close()

    def live_channels(self) -> list[Any]:
        """The open channels of the attached dispatcher's calls (none without one)."""
        dispatcher = self.services.dispatcher if self.services is not None else None
        channels = getattr(dispatcher, "live_channels", None)
        return list(channels()) if callable(channels) else []


# -- RTP -------------------------------------------------------------------------------------------

@dataclass(slots=True)
class _RtpTotals:
    sent: int = 0
    received: int = 0
    lost: int = 0
    jitter: float = 0.0  # seconds (one session's; not summed)

    def add(self, other: _RtpTotals) -> None:
        self.sent += other.sent
        self.received += other.received
        self.lost += other.lost


def _rtp_stats(channel: object) -> _RtpTotals | None:
    """The packet counts of an embedded channel's MediaSession; None for a channel without
    RTP in this process (Asterisk carries the media)."""
    media = getattr(channel, "media", None)
    receiver = getattr(media, "receiver", None)
    if media is None or receiver is None:
        return None
    stats = receiver.stats
    rate = getattr(receiver, "clock_rate", 8000) or 8000
    return _RtpTotals(int(media.packets_sent), int(stats.received), int(stats.lost),
                      float(stats.jitter) / rate)


# -- the series computed at collection time --------------------------------------------------------

class _WithoutCreated(Collector):
    """``registry``'s families without their ``_created`` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.inner = registry

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        for family in self.inner.collect():  # fresh Metric objects at each collection
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class _LiveCollector(Collector):
    """The store snapshot and this process's live state, as metric families."""

    def __init__(self, metrics: EngineMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        return []  # families vary with what is attached; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        for part in (self._store, self._dispatcher, self._rtp, self._backend):
            try:
                yield from part()
            except Exception:  # a broken part never fails the whole scrape
                log.exception("metrics: %s failed", part.__name__)

    def _store(self) -> Iterator[Metric]:
        m = self.metrics
        yield _gauge("ars_store_up", "1 when the store answered this scrape's reads",
                     1.0 if m.snapshot is not None else 0.0)
        snap = m.snapshot
        if snap is None:
            return
        calls = GaugeMetricFamily("ars_calls", "Calls in the store by state and outcome",
                                  labels=["state", "outcome"])
        for (state, outcome), count in sorted(snap.calls.items()):
            calls.add_metric([state, outcome], count)
        yield calls
        yield _gauge("ars_calls_queued", "Queued calls that are due now", snap.queued_due)
        yield _gauge("ars_queue_oldest_age_seconds",
                     "How long the oldest due queued call has been due (0: none)",
                     snap.queue_oldest_age)
        events = GaugeMetricFamily("ars_webhook_events", "Webhook outbox rows by status",
                                   labels=["status"])
        for status, count in sorted(snap.webhook_events.items()):
            events.add_metric([status], count)
        yield events
        yield _gauge("ars_webhook_oldest_pending_age_seconds",
                     "Age of the oldest undelivered webhook event (0: none)",
                     snap.webhook_oldest_pending_age)
        alerts = GaugeMetricFamily("ars_alerts_firing", "Firing alerts by rule", labels=["rule"])
        for rule, count in sorted(snap.alerts_firing.items()):
            alerts.add_metric([rule], count)
        yield alerts
        nodes = GaugeMetricFamily("ars_nodes", "Engine nodes in the registry by status (dead: "
                                  "no heartbeat for a lease)", labels=["status"])
        for status, count in sorted(snap.nodes.items()):
            nodes.add_metric([status], count)
        yield nodes

    def _dispatcher(self) -> Iterator[Metric]:
        services = self.metrics.services
        dispatcher = services.dispatcher if services is not None else None
        if dispatcher is not None:
            yield _gauge("ars_active_calls", "Calls this node is placing or running now",
                         float(dispatcher.running))

    def _rtp(self) -> Iterator[Metric]:
        ended = self.metrics._rtp_ended
        totals = _RtpTotals(ended.sent, ended.received, ended.lost)
        live = [s for s in map(_rtp_stats, self.metrics.live_channels()) if s is not None]
        for stats in live:  # both only grow during a session
            totals.sent += stats.sent
            totals.received += stats.received
        # a session's loss count can go back (a late packet fills a gap): ended sessions only
        yield _gauge("ars_rtp_sessions", "RTP sessions of this node's running calls", len(live))
        for name, text, value in (
                ("ars_rtp_packets_sent", "RTP packets sent by this node's calls", totals.sent),
                ("ars_rtp_packets_received", "RTP packets received (duplicates excluded)",
                 totals.received),
                ("ars_rtp_packets_lost", "RTP packets lost (RFC 3550), counted when a call ends",
                 totals.lost)):
            yield CounterMetricFamily(name, text, value=value)

    def _backend(self) -> Iterator[Metric]:
        services = self.metrics.services
        if services is None or services.backend is None:
            return
        health = backend_health(services.backend)
        if health.ami_connected is not None or health.backend == "asterisk":
            yield _gauge("ars_ami_connected", "1 when the AMI connection is up",
                         _flag(health.ami_connected))
        if health.trunk is not None:
            yield _gauge("ars_trunk_up", "1 when the trunk answers OPTIONS (NaN: no answer yet)",
                         _flag(health.trunk_up))


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _flag(value: bool | None) -> float:
    return math.nan if value is None else float(value)
