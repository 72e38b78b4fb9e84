"""The fault suite's verdict (reliability/report.py): each kind of lost and doubled call is
caught, redeliveries of one event are counted apart, and the table says FAILED."""

from __future__ import annotations

from collections import Counter
from typing import Any

from reliability.report import table, tally


def _row(state: str = "finished", outcome: str = "success", attempts: int = 1,
         reason: str = "") -> dict[str, Any]:
    return {"state": state, "outcome": outcome, "reason": reason, "attempts": attempts}


def _good(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "requested": {"k1": "c1", "k2": "c2"}, "refused": [],
        "rows": {"c1": _row(), "c2": _row("failed", "error", reason="engine_restart")},
        "terminal_events": Counter({"c1": 1, "c2": 1}), "invites": ["c1-1", "c2-1"],
        "deliveries": 4, "distinct_events": 4}
    base.update(changes)
    return base


def test_a_clean_run_is_ok_and_names_engine_restarts() -> None:
    t = tally("kill9", **_good())
    assert (t.requested, t.terminal, t.delivered_once, t.lost, t.doubled) == (2, 2, 2, 0, 0)
    assert t.ok
    assert t.outcomes == Counter({"finished/success": 1,
                                  "failed/error (engine_restart)": 1})


def test_a_call_left_in_progress_or_without_webhook_or_never_accepted_is_lost() -> None:
    t = tally("x", **_good(rows={"c1": _row("answered"), "c2": _row()},
                           terminal_events=Counter({"c2": 0}), refused=["k3: HTTP 503"]))
    assert (t.requested, t.terminal, t.lost, t.doubled) == (3, 1, 3, 0)
    assert not t.ok
    assert any("c1: not terminal (answered)" in p for p in t.problems)
    assert any("c2: finished but no terminal webhook" in p for p in t.problems)
    assert any("never accepted: k3" in p for p in t.problems)


def test_two_terminal_events_a_second_dialog_or_extra_dials_are_doubled() -> None:
    t = tally("x", **_good(terminal_events=Counter({"c1": 2, "c2": 1}),
                           invites=["c1-1", "c1-1", "c2-1", "c2-2"]))
    assert t.doubled == 3 and t.lost == 0 and not t.ok
    assert any("c1: 2 distinct terminal webhooks" in p for p in t.problems)
    assert any("attempt 1 reached a phone 2 times" in p for p in t.problems)
    assert any("c2: dialed 2 times, 1 attempts recorded" in p for p in t.problems)


def test_one_call_id_for_two_idempotency_keys_is_doubled() -> None:
    t = tally("x", **_good(requested={"k1": "c1", "k2": "c1"}, rows={"c1": _row()},
                           terminal_events=Counter({"c1": 1}), invites=["c1-1"]))
    assert t.doubled == 1


def test_redeliveries_of_one_event_are_counted_not_doubled() -> None:
    t = tally("x", **_good(deliveries=7, distinct_events=4))
    assert (t.redelivered, t.doubled, t.ok) == (3, 0, True)


def test_the_table_has_a_line_per_fault_and_a_failed_total() -> None:
    good = tally("kill9", **_good())
    bad = tally("lossy", **_good(rows={"c1": _row("dialing"), "c2": _row()}))
    text = table([good, bad])
    lines = text.splitlines()
    assert lines[2].startswith("kill9") and lines[2].endswith("ok")
    assert lines[3].startswith("lossy") and lines[3].endswith("FAILED")
    assert lines[5].startswith("total") and lines[5].endswith("FAILED")
    assert "problem: c1: not terminal (dialing)" in text
    assert not tally("empty", **_good(requested={}, rows={})).ok  # nothing run is no proof
