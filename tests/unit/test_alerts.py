"""The alert rules and their de-duplication (service/alerts.py) as tables: what each snapshot
reads as, what each stored row becomes, and what is sent across evaluations (flapping, retries
after a failure, a resolve while the firing is still unsent, several nodes)."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ars_engine.config_ops import AlertsConfig
from ars_engine.service import alerts
from ars_engine.service.alerts import (
    ANSWER_RATE_LOW,
    FIRING,
    QUEUE_AGE,
    RESOLVED,
    SMS_LIMIT,
    WEBHOOK_DEAD_LETTERS,
    AlertRecord,
    Condition,
    Links,
    LinkView,
    Notification,
    Snapshot,
    alert_message,
    evaluate,
    observe,
    plan,
    settle,
    stale_after,
)
from ars_engine.service.health import BackendHealth
from ars_engine.store import models

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONFIG = AlertsConfig(url="http://sms.example/send", interval_seconds=15.0, answer_rate_min=0.3,
                      answer_window_minutes=15.0, answer_min_calls=20, queue_age_seconds=300.0,
                      dead_letter_window_minutes=60.0, retry_seconds=30.0)
CLAIM = timedelta(seconds=15)
RETRY = timedelta(seconds=CONFIG.retry_seconds)
TRUNK = "trunk_down:10.0.0.1:5060"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_core_is_pure_and_shares_the_stores_state_names() -> None:
    source = Path(alerts.__file__).read_text(encoding="utf-8")
    imported = {alias.name.split(".")[0] for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(ast.parse(source))
                 if isinstance(node, ast.ImportFrom) and node.module and not node.level}
    assert not imported & {"asyncio", "socket", "aiohttp", "sqlalchemy", "time"}
    assert (FIRING, RESOLVED) == (models.FIRING, models.RESOLVED)


# -- the rules -------------------------------------------------------------------------------------
UP = Links("10.0.0.1:5060", LinkView(True, at(-60)))
DOWN = Links("10.0.0.1:5060", LinkView(False, at(-5)))


@pytest.mark.parametrize(("snapshot", "expected"), [
    # links: a trunk with no answer yet, or none, is not judged
    (Snapshot(T0, Links("10.0.0.1:5060", None)), {}),
    (Snapshot(T0, UP), {TRUNK: False}),
    (Snapshot(T0, DOWN), {TRUNK: True}),
    (Snapshot(T0, Links(ami_state="connected", ami_view=LinkView(True, T0))),
     {"ami_down": False}),
    (Snapshot(T0, Links(ami_state="reconnecting", ami_view=LinkView(False, T0))),
     {"ami_down": True}),
    # answer rate: only once answer_min_calls ended, strictly below the minimum
    (Snapshot(T0, ended_calls=19, answered_calls=0), {ANSWER_RATE_LOW: False}),
    (Snapshot(T0, ended_calls=20, answered_calls=5), {ANSWER_RATE_LOW: True}),
    (Snapshot(T0, ended_calls=20, answered_calls=6), {ANSWER_RATE_LOW: False}),
    (Snapshot(T0), {ANSWER_RATE_LOW: False}),
    # dead letters: any in the window
    (Snapshot(T0, dead_letters=1), {WEBHOOK_DEAD_LETTERS: True}),
    # queue age: strictly longer than queue_age_seconds
    (Snapshot(T0, oldest_queued_age=300.0), {QUEUE_AGE: False}),
    (Snapshot(T0, oldest_queued_age=300.5), {QUEUE_AGE: True}),
])
def test_rules_read_each_snapshot(snapshot: Snapshot, expected: dict[str, bool]) -> None:
    readings = evaluate(snapshot, CONFIG)
    shared = {ANSWER_RATE_LOW, WEBHOOK_DEAD_LETTERS, QUEUE_AGE}
    assert set(readings) == set(expected) | shared  # the store's rules are always judged
    assert {k: c.firing for k, c in readings.items() if k in expected} == expected
    for key in shared - set(expected):
        assert not readings[key].firing


def test_readings_carry_values_and_when_they_were_observed() -> None:
    readings = evaluate(Snapshot(T0, DOWN, ended_calls=25, answered_calls=3, dead_letters=2,
                                 oldest_queued_age=420.0), CONFIG)
    assert readings[TRUNK].observed == at(-5), "a link: since this node's view began"
    assert readings[ANSWER_RATE_LOW].observed == T0, "the store: as of now"
    assert readings[ANSWER_RATE_LOW].value == pytest.approx(0.12)
    assert readings[ANSWER_RATE_LOW].message == \
        "[ARS] 응답률 낮음 / answer rate low 12% (3/25 in 15m) < 30%"
    assert readings[WEBHOOK_DEAD_LETTERS].value == 2.0
    assert readings[QUEUE_AGE].message == "[ARS] 발신 대기 지연 / queue delayed oldest 420s > 300s"
    assert evaluate(Snapshot(T0), CONFIG)[ANSWER_RATE_LOW].value is None


@pytest.mark.parametrize(("rule", "state", "detail", "text"), [
    ("trunk_down", FIRING, "10.0.0.1:5060", "[ARS] 트렁크 응답 없음 / trunk down 10.0.0.1:5060"),
    ("trunk_down", RESOLVED, "10.0.0.1:5060", "[ARS] 트렁크 복구 / trunk up 10.0.0.1:5060"),
    ("ami_down", FIRING, "(reconnecting)", "[ARS] AMI 연결 끊김 / AMI down (reconnecting)"),
    ("ami_down", RESOLVED, "", "[ARS] AMI 연결 복구 / AMI up"),
    ("webhook_dead_letters", FIRING, "3 in 60m",
     "[ARS] 웹훅 전달 실패 / webhook dead letters 3 in 60m"),
])
def test_messages_are_short_korean_and_english(rule: str, state: str, detail: str,
                                               text: str) -> None:
    assert alert_message(rule, state, detail) == text


def test_a_long_message_is_clipped_for_one_sms() -> None:
    text = alert_message("trunk_down", FIRING, "sbc-" + "x" * 300 + ".example:5060")
    assert len(text) == SMS_LIMIT and text.endswith("…")


@pytest.mark.parametrize(("previous", "up", "expected"), [
    (None, None, None),
    (None, True, LinkView(True, T0)),
    (LinkView(True, at(-60)), True, LinkView(True, at(-60))),  # unchanged: since stays
    (LinkView(True, at(-60)), False, LinkView(False, T0)),
    (LinkView(True, at(-60)), None, None),
])
def test_a_link_view_moves_on_a_change_only(previous: LinkView | None, up: bool | None,
                                            expected: LinkView | None) -> None:
    assert observe(previous, up, T0) == expected


def test_links_follow_backend_health() -> None:
    links = Links().update(BackendHealth("embedded", "10.0.0.1:5060", True), at(0))
    assert links.trunk_view == LinkView(True, at(0))
    assert links.update(BackendHealth("embedded", "10.0.0.1:5060", True), at(9)) == links
    moved = links.update(BackendHealth("embedded", "10.0.0.2:5060", True), at(9))
    assert moved.trunk_view == LinkView(True, at(9)), "another trunk: a new view"
    idle = Links().update(BackendHealth("asterisk", ami_connected=False, ami_state="idle"), T0)
    assert idle.ami_view is None, "not connected yet is not down"
    lost = Links().update(BackendHealth("asterisk", ami_connected=False,
                                        ami_state="reconnecting"), T0)
    assert lost.ami_view == LinkView(False, T0)


# -- one evaluation: the row table -----------------------------------------------------------------
def reading(firing: bool, observed: datetime = T0, key: str = TRUNK) -> Condition:
    return Condition(key, "trunk_down", firing, None, "10.0.0.1:5060", observed)


LONG_AGO = at(-100)


def row(state: str, *, since: datetime = LONG_AGO, notified: str | None = None,
        next_at: datetime | None = None, updated: datetime | None = None) -> AlertRecord:
    return AlertRecord(TRUNK, "trunk_down", state, "old", None, since, updated or since,
                       notified=notified, next_notify_at=next_at)


# (row before, reading) → (state, since, next_notify_at, sent) after; None: row unchanged
ROW_TABLE: list[tuple[str, AlertRecord | None, Condition,
                      tuple[str, datetime, datetime | None, str | None] | None]] = [
    ("new firing", None, reading(True), (FIRING, T0, T0 + CLAIM, FIRING)),
    ("clear, no row", None, reading(False), None),
    ("still firing, announced", row(FIRING, notified=FIRING), reading(True),
     (FIRING, at(-100), None, None)),
    ("clears", row(FIRING, notified=FIRING), reading(False), (RESOLVED, T0, T0 + CLAIM, RESOLVED)),
    ("still resolved", row(RESOLVED, notified=RESOLVED), reading(False), None),
    ("fires again", row(RESOLVED, notified=RESOLVED), reading(True),
     (FIRING, T0, T0 + CLAIM, FIRING)),
    ("back to what was announced: nothing due", row(RESOLVED, notified=FIRING, next_at=at(20)),
     reading(True), (FIRING, T0, None, None)),
    ("change while a retry waits: sent when it is due", row(FIRING, next_at=at(20)),
     reading(False), (RESOLVED, T0, at(20), None)),
    ("a retry that is due", row(FIRING, next_at=at(-1)), reading(True),
     (FIRING, at(-100), T0 + CLAIM, FIRING)),
    ("claimed by another node", row(FIRING, next_at=at(10)), reading(True),
     (FIRING, at(-100), at(10), None)),
    ("old news: this node saw it clear before the row fired", row(FIRING, since=at(-10)),
     reading(False, at(-60)), None),
    ("old news, but nobody confirmed the firing lately",
     row(FIRING, since=at(-600), notified=FIRING, updated=at(-200)), reading(False, at(-900)),
     (RESOLVED, T0, T0 + CLAIM, RESOLVED)),
    ("old news: down since before another node resolved it", row(RESOLVED, since=at(-10)),
     reading(True, at(-30)), None),
    ("down all along, long after another node resolved it",
     row(RESOLVED, since=at(-200), notified=RESOLVED), reading(True, at(-300)),
     (FIRING, T0, T0 + CLAIM, FIRING)),
]


@pytest.mark.parametrize(("before", "now_reading", "after"), [case[1:] for case in ROW_TABLE],
                         ids=[case[0] for case in ROW_TABLE])
def test_one_evaluation_changes_the_row(
        before: AlertRecord | None, now_reading: Condition,
        after: tuple[str, datetime, datetime | None, str | None] | None) -> None:
    records = {TRUNK: before} if before is not None else {}
    result = plan(records, {TRUNK: now_reading}, now=T0, config=CONFIG, claim=CLAIM)
    if after is None:
        assert result.changed == () and result.notifications == ()
        return
    state, since, next_at, sent = after
    new = result.records[TRUNK]
    assert (new.state, new.since, new.next_notify_at) == (state, since, next_at)
    assert [n.state for n in result.notifications] == ([sent] if sent else [])
    assert [t.state for t in result.transitions] == (
        [state] if before is None or before.state != state else [])
    if state == FIRING and before is not None and before.state == FIRING:
        assert new.updated_at == T0 and new.message == now_reading.message, "confirmed"


def test_stale_after_outlasts_a_keepalive_interval() -> None:
    assert stale_after(CONFIG) == timedelta(seconds=120)
    assert stale_after(replace(CONFIG, interval_seconds=60)) == timedelta(seconds=180)


def test_without_a_url_changes_are_recorded_and_nothing_is_due() -> None:
    result = plan({}, {TRUNK: reading(True)}, now=T0, config=CONFIG, claim=None)
    assert result.records[TRUNK].state == FIRING
    assert result.records[TRUNK].next_notify_at is None and result.notifications == ()


# -- several evaluations: what the receiver gets ---------------------------------------------------
@dataclass
class Node:
    """Rows shared in a dict, evaluations and deliveries driven by the test."""

    records: dict[str, AlertRecord] = field(default_factory=dict)
    sent: list[tuple[str, str]] = field(default_factory=list)  # (state, message) delivered
    attempts: int = 0

    def evaluate(self, seconds: float, firing: bool, *, receiver_up: bool = True,
                 observed: float | None = None) -> list[str]:
        now = at(seconds)
        result = plan(self.records, {TRUNK: reading(firing, at(seconds if observed is None
                                                               else observed))},
                      now=now, config=CONFIG, claim=CLAIM)
        self.records = result.records
        self.deliver(result.notifications, now, receiver_up)
        return [n.state for n in result.notifications]

    def deliver(self, notifications: Iterable[Notification], now: datetime,
                receiver_up: bool) -> None:
        for n in notifications:
            self.attempts += 1
            if receiver_up:
                self.sent.append((n.state, n.message))
            self.records[n.key] = settle(self.records[n.key], n, delivered=receiver_up,
                                         error=None if receiver_up else "ClientConnectorError",
                                         now=now, retry=RETRY)


def test_fires_once_and_resolves_once() -> None:
    node = Node()
    assert node.evaluate(0, True) == [FIRING]
    assert [node.evaluate(t, True) for t in (15, 30, 45)] == [[], [], []]
    assert node.evaluate(60, False) == [RESOLVED]
    assert node.evaluate(75, False) == []
    assert [s for s, _ in node.sent] == [FIRING, RESOLVED]
    final = node.records[TRUNK]
    assert (final.state, final.notified, final.next_notify_at) == (RESOLVED, RESOLVED, None)


def test_a_failed_notification_is_retried_after_retry_seconds_only() -> None:
    node = Node()
    assert node.evaluate(0, True, receiver_up=False) == [FIRING]
    failed = node.records[TRUNK]
    assert (failed.notify_attempts, failed.last_error) == (1, "ClientConnectorError")
    assert failed.next_notify_at == at(30)
    assert node.evaluate(15, True) == [], "not before retry_seconds"
    assert node.evaluate(30, True) == [FIRING]
    delivered = node.records[TRUNK]
    assert (delivered.notified, delivered.notify_attempts, delivered.last_error) == \
        (FIRING, 2, None)
    assert [s for s, _ in node.sent] == [FIRING]


def test_resolved_while_the_firing_is_unsent_sends_only_resolved() -> None:
    node = Node()
    node.evaluate(0, True, receiver_up=False)
    assert node.evaluate(10, False) == [], "the retry delay still holds"
    assert node.records[TRUNK].state == RESOLVED
    assert node.evaluate(30, False) == [RESOLVED]
    assert node.evaluate(60, False) == []
    assert [s for s, _ in node.sent] == [RESOLVED]


def test_flapping_between_evaluations_sends_nothing_twice() -> None:
    node = Node()
    node.evaluate(0, True)
    assert node.evaluate(15, False, receiver_up=False) == [RESOLVED]
    assert node.evaluate(20, True) == [], "firing again: what the receiver last heard"
    assert node.evaluate(45, True) == [], "the resolved retry is no longer due"
    assert [s for s, _ in node.sent] == [FIRING]
    assert node.records[TRUNK].next_notify_at is None


def test_a_change_while_sending_is_sent_next() -> None:
    node = Node()
    first = plan({}, {TRUNK: reading(True)}, now=T0, config=CONFIG, claim=CLAIM)
    (sending,) = first.notifications
    # another node resolves it while this one's POST is in flight (the claim holds it back)
    other = plan(first.records, {TRUNK: reading(False, at(1))}, now=at(1), config=CONFIG,
                 claim=CLAIM)
    assert other.notifications == () and other.records[TRUNK].next_notify_at == T0 + CLAIM
    node.records = other.records
    node.deliver([sending], at(2), True)
    assert node.records[TRUNK].next_notify_at == at(2), "resolved is due at once"
    assert node.records[TRUNK].notify_attempts == 0, "attempts count the current state's"
    assert node.evaluate(3, False) == [RESOLVED]
    assert [s for s, _ in node.sent] == [FIRING, RESOLVED]


def test_two_nodes_that_disagree_for_a_moment_do_not_flip_the_alert() -> None:
    shared = Node()
    # node A's keepalive sees the trunk down first
    assert shared.evaluate(0, True, observed=0) == [FIRING]
    # node B still sees it up, as it has since long before: old news
    assert shared.evaluate(5, False, observed=-3600) == []
    # node B notices too; node A sees it come back, then B still sees it down
    assert shared.evaluate(20, True, observed=18) == []
    assert shared.evaluate(60, False, observed=60) == [RESOLVED]
    assert shared.evaluate(70, True, observed=18) == [], "B's down began before the resolve"
    assert shared.evaluate(80, False, observed=80) == []
    assert [s for s, _ in shared.sent] == [FIRING, RESOLVED]
