"""EngineMetrics without a database: the event series (setup times, terminal writes, webhook
deliveries), the live ones (running calls, RTP, backend links), a store that fails or hangs,
each parsed back from the exposition text."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from ars_engine import __version__
from ars_engine.errors import StoreError
from ars_engine.service.metrics import SETUP_BUCKETS, BoundedQuery, EngineMetrics
from ars_engine.telephony.rtp.media import MediaSession
from ars_engine.telephony.rtp.session import ReceiveStats


def samples(metrics: EngineMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a render as {(name, sorted labels): value}."""
    text = metrics.render().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: EngineMetrics, name: str, **labels: str) -> float | None:
    return samples(metrics).get((name, tuple(sorted(labels.items()))))


def names(metrics: EngineMetrics) -> set[str]:
    return {name for name, _labels in samples(metrics)}


@dataclass
class FakeMedia:
    """The parts of MediaSession the metrics read."""

    sent: int
    received: int
    lost: int
    jitter_units: float = 0.0
    dropped_sends: int = 0
    receiver: Any = field(init=False)
    _sender: Any = field(init=False)
    packets_sent = MediaSession.packets_sent  # the real computation, on these fields

    def __post_init__(self) -> None:
        stats = ReceiveStats(received=self.received, lost=self.lost, jitter=self.jitter_units)
        self.receiver = SimpleNamespace(stats=stats, clock_rate=8000)
        self._sender = SimpleNamespace(sent=self.sent)


class FakeDispatcher:
    def __init__(self, channels: list[Any]) -> None:
        self.channels = channels
        self.metrics: EngineMetrics | None = None

    @property
    def running(self) -> int:
        return len(self.channels) + 1  # one more still dialing (no channel yet)

    def live_channels(self) -> list[Any]:
        return list(self.channels)


class HangingStore:
    """A store whose unit of work never ends until ``release`` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def run(self, work: Any) -> Any:
        self.started += 1
        await self.release.wait()
        raise StoreError("released")


class BrokenStore:
    async def run(self, work: Any) -> Any:
        raise RuntimeError("cannot schedule new futures after shutdown")


def fake_services(**parts: Any) -> Any:
    base = {"store": BrokenStore(), "dispatcher": None, "webhooks": None, "backend": None,
            "clock": lambda: datetime.now(UTC),
            "settings": SimpleNamespace(service=SimpleNamespace(lease_seconds=30.0))}
    base.update(parts)
    return SimpleNamespace(**base)


def test_setup_times_land_in_their_buckets_per_outcome() -> None:
    metrics = EngineMetrics()
    for seconds in (0.05, 0.3, 2.5):
        metrics.observe_setup("answered", seconds)
    metrics.observe_setup("busy", 0.2)
    metrics.observe_setup("no_answer", 90.0)
    assert value(metrics, "ars_call_setup_seconds_count", outcome="answered") == 3
    assert value(metrics, "ars_call_setup_seconds_sum", outcome="answered") == pytest.approx(2.85)
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="answered", le="0.1") == 1
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="answered", le="0.5") == 2
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="answered", le="3.0") == 3
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="busy", le="0.25") == 1
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="no_answer", le="60.0") == 0
    assert value(metrics, "ars_call_setup_seconds_bucket", outcome="no_answer", le="+Inf") == 1
    assert SETUP_BUCKETS[0] == 0.1 and SETUP_BUCKETS[-1] == 60.0


def test_terminal_writes_and_webhook_results_are_counted_by_label() -> None:
    metrics = EngineMetrics()
    metrics.call_finished("finished", "success")
    metrics.call_finished("finished", "success")
    metrics.call_finished("failed", "busy")
    metrics.call_finished("failed", None)  # an outcome never written shows as ""
    for result in ("delivered", "delivered", "failed", "dead"):
        metrics.webhook_delivery(result)
    assert value(metrics, "ars_calls_finished_total", state="finished", outcome="success") == 2
    assert value(metrics, "ars_calls_finished_total", state="failed", outcome="busy") == 1
    assert value(metrics, "ars_calls_finished_total", state="failed", outcome="") == 1
    assert [value(metrics, "ars_webhook_deliveries_total", result=r)
            for r in ("delivered", "failed", "dead")] == [2, 1, 1]


def test_a_new_registry_shows_every_webhook_result_at_zero_and_no_created_series() -> None:
    metrics = EngineMetrics()
    assert [value(metrics, "ars_webhook_deliveries_total", result=r)
            for r in ("delivered", "failed", "dead")] == [0, 0, 0]
    assert not [n for n in names(metrics) if n.endswith("_created")]
    assert value(metrics, "ars_build_info", version=__version__) == 1


def test_each_engine_has_its_own_registry_and_the_global_one_is_untouched() -> None:
    one, two = EngineMetrics(), EngineMetrics()
    one.call_finished("finished", "success")
    assert value(one, "ars_calls_finished_total", state="finished", outcome="success") == 1
    assert value(two, "ars_calls_finished_total", state="finished", outcome="success") is None
    assert REGISTRY.get_sample_value("ars_calls_finished_total",
                                     {"state": "finished", "outcome": "success"}) is None


async def test_a_store_that_fails_gives_store_up_0_and_keeps_the_rest() -> None:
    metrics = EngineMetrics(fake_services())
    metrics.call_finished("failed", "busy")
    body = await metrics.scrape()
    assert body.startswith(b"# HELP")
    assert value(metrics, "ars_store_up") == 0
    assert value(metrics, "ars_calls_finished_total", state="failed", outcome="busy") == 1
    assert not names(metrics) & {"ars_calls", "ars_calls_queued", "ars_webhook_events"}
    assert metrics.store_error is not None and "RuntimeError" in metrics.store_error


async def test_a_hanging_store_times_out_and_is_not_asked_again_until_it_answers() -> None:
    store = HangingStore()
    metrics = EngineMetrics(fake_services(store=store), store_timeout=0.05)
    try:
        assert await metrics.refresh() is None
        assert metrics.store_error is not None and "within 0.05 s" in metrics.store_error
        assert await metrics.refresh() is None  # the first read still runs: none added
        assert store.started == 1
        assert metrics.store_error is not None and "previous" in metrics.store_error
        assert value(metrics, "ars_store_up") == 0
    finally:
        await metrics.close()
    assert metrics.store_query._task is None


async def test_bounded_query_turns_any_failure_into_store_error() -> None:
    query = BoundedQuery(timeout=5.0)
    with pytest.raises(StoreError, match="RuntimeError: cannot schedule"):
        await query.run(BrokenStore(), lambda s: None)  # type: ignore[arg-type]


def test_running_calls_and_rtp_sessions_come_from_the_dispatcher() -> None:
    calls = [SimpleNamespace(media=FakeMedia(103, 90, 2, dropped_sends=3)),  # 3 refused
             SimpleNamespace(media=FakeMedia(50, 40, 0)),
             SimpleNamespace()]  # a channel without RTP here (Asterisk carries the media)
    dispatcher = FakeDispatcher(calls)
    metrics = EngineMetrics(fake_services(dispatcher=dispatcher))
    assert dispatcher.metrics is metrics, "attach hooks the dispatcher"
    assert value(metrics, "ars_active_calls") == 4
    assert value(metrics, "ars_rtp_sessions") == 2
    assert value(metrics, "ars_rtp_packets_sent_total") == 150
    assert value(metrics, "ars_rtp_packets_received_total") == 130
    assert value(metrics, "ars_rtp_packets_lost_total") == 0, "counted when a call ends"


def test_an_ended_call_keeps_its_packets_in_the_totals_once() -> None:
    ended = SimpleNamespace(media=FakeMedia(100, 90, 2, jitter_units=80.0))
    dispatcher = FakeDispatcher([ended, SimpleNamespace(media=FakeMedia(50, 40, 0))])
    metrics = EngineMetrics(fake_services(dispatcher=dispatcher))
    dispatcher.channels.remove(ended)  # as the dispatcher does, in the same step
    metrics.media_ended(ended)
    assert value(metrics, "ars_rtp_sessions") == 1
    assert value(metrics, "ars_rtp_packets_sent_total") == 150, "a counter never goes back"
    assert value(metrics, "ars_rtp_packets_received_total") == 130
    assert value(metrics, "ars_rtp_packets_lost_total") == 2
    assert value(metrics, "ars_rtp_jitter_seconds_count") == 1
    assert value(metrics, "ars_rtp_jitter_seconds_sum") == pytest.approx(0.01)  # 80 / 8000


def test_a_broken_part_does_not_fail_the_scrape() -> None:
    class Broken:
        metrics = None

        @property
        def running(self) -> int:
            raise RuntimeError("boom")

    metrics = EngineMetrics(fake_services(dispatcher=Broken()))
    metrics.call_finished("finished", "success")
    found = names(metrics)
    assert "ars_active_calls" not in found
    assert {"ars_calls_finished_total", "ars_rtp_sessions", "ars_store_up"} <= found


def embedded(status: Any) -> Any:
    monitor = SimpleNamespace(trunk=("10.0.0.1", 5060))
    return SimpleNamespace(endpoint=object(), trunk=SimpleNamespace(monitor=monitor,
                                                                     status=status))


@pytest.mark.parametrize(("backend", "trunk", "ami"), [
    (None, None, None),
    (SimpleNamespace(endpoint=object(), trunk=None), None, None),  # no proxy: not watched
    (embedded(None), math.nan, None),  # watched, no answer yet
    (embedded(SimpleNamespace(up=True)), 1.0, None),
    (embedded(SimpleNamespace(up=False)), 0.0, None),
    (SimpleNamespace(ami=SimpleNamespace(state=SimpleNamespace(value="connected"))), None, 1.0),
    (SimpleNamespace(ami=SimpleNamespace(state=SimpleNamespace(value="reconnecting"))), None,
     0.0),
], ids=["none", "embedded-unwatched", "trunk-unknown", "trunk-up", "trunk-down",
        "ami-up", "ami-down"])
def test_backend_links_table(backend: Any, trunk: float | None, ami: float | None) -> None:
    metrics = EngineMetrics(fake_services(backend=backend))
    for name, expected in (("ars_trunk_up", trunk), ("ars_ami_connected", ami)):
        got = value(metrics, name)
        if expected is None:
            assert got is None, f"{name} must be absent"
        elif math.isnan(expected):
            assert got is not None and math.isnan(got)
        else:
            assert got == expected
