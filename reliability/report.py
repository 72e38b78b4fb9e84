"""The verdict of one fault run, computed from what the peers saw (pure, unit-tested).

- **requested**: calls the API accepted (one per Idempotency-Key), plus requests no node
  accepted (each of those is *lost*).
- **terminal**: accepted calls whose row is finished, failed or canceled.
- **delivered once**: calls whose receiver got exactly one terminal event (deliveries of the same
  event id again are *redelivered*, which at-least-once delivery allows: receivers de-duplicate
  by id; they are counted, not doubled).
- **lost**: requested calls that are not terminal, or got no terminal event, or were never
  accepted. Must be 0.
- **doubled**: calls with more than one distinct terminal event, one attempt that reached a phone
  twice (two INVITE dialogs with one Call-ID), a call dialed more times than its recorded
  attempts, or two call ids for one Idempotency-Key. Must be 0.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

TERMINAL = ("finished", "failed", "canceled")


@dataclass
class Tally:
    fault: str
    requested: int = 0
    terminal: int = 0
    delivered_once: int = 0
    lost: int = 0
    doubled: int = 0
    redelivered: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # the first few lost/doubled, named
    facts: dict[str, Any] = field(default_factory=dict)  # what the fault did (kills, seconds…)
    seconds: float = 0.0
    skipped: str | None = None  # why this fault could not run here (no Asterisk build…)

    @property
    def ok(self) -> bool:
        """Nothing lost or doubled in a run that did something (a skipped fault is not ok,
        but :attr:`failed` only when it ran)."""
        return self.lost == 0 and self.doubled == 0 and self.requested > 0

    @property
    def failed(self) -> bool:
        return self.skipped is None and not self.ok


def tally(fault: str, *, requested: dict[str, str], refused: list[str],
          rows: dict[str, dict[str, Any]], terminal_events: Counter[str], invites: list[str],
          deliveries: int, distinct_events: int) -> Tally:
    """``requested``: idempotency key → call id; ``rows``: the calls table (id → state,
    outcome, reason, attempts); ``terminal_events``: distinct terminal events per call id at
    the receiver; ``invites``: SIP Call-IDs the phones saw (``<call id>-<attempt>``)."""
    t = Tally(fault)
    ids = list(requested.values())
    t.requested = len(ids) + len(refused)
    for text in refused:
        t.lost += 1
        _note(t, f"never accepted: {text}")
    by_id = Counter(ids)
    for call_id, count in by_id.items():
        if count > 1:
            t.doubled += 1
            _note(t, f"{call_id}: one call id for {count} idempotency keys")
    dials = Counter(invites)
    dialed_attempts: dict[str, set[str]] = {}
    for sip_call_id, count in dials.items():
        call_id, _, attempt = sip_call_id.rpartition("-")
        dialed_attempts.setdefault(call_id, set()).add(attempt)
        if count > 1:
            t.doubled += 1
            _note(t, f"{call_id}: attempt {attempt} reached a phone {count} times")
    for call_id in by_id:
        row = rows.get(call_id)
        events = terminal_events.get(call_id, 0)
        if row is None or row["state"] not in TERMINAL:
            t.lost += 1
            _note(t, f"{call_id}: not terminal ({row['state'] if row else 'no row'})")
            continue
        t.terminal += 1
        t.outcomes[f"{row['state']}/{row['outcome'] or '-'}"
                   + (f" ({row['reason']})" if row["reason"] == "engine_restart" else "")] += 1
        if events == 0:
            t.lost += 1
            _note(t, f"{call_id}: {row['state']} but no terminal webhook")
        elif events > 1:
            t.doubled += 1
            _note(t, f"{call_id}: {events} distinct terminal webhooks")
        else:
            t.delivered_once += 1
        if len(dialed_attempts.get(call_id, ())) > row["attempts"]:
            t.doubled += 1
            _note(t, f"{call_id}: dialed {len(dialed_attempts[call_id])} times, "
                     f"{row['attempts']} attempts recorded")
    t.redelivered = max(deliveries - distinct_events, 0)
    return t


def _note(t: Tally, text: str) -> None:
    if len(t.problems) < 20:
        t.problems.append(text)


def table(tallies: list[Tally]) -> str:
    """The report: one line per fault, then each one's outcomes, facts and problems."""
    head = (f"{'fault':14} {'requested':>9} {'terminal':>8} {'delivered once':>14} "
            f"{'lost':>5} {'doubled':>7} {'redelivered':>11} {'seconds':>8}  verdict")
    lines = [head, "-" * len(head)]
    for t in tallies:
        verdict = "SKIPPED" if t.skipped else "ok" if t.ok else "FAILED"
        lines.append(f"{t.fault:14} {t.requested:>9} {t.terminal:>8} {t.delivered_once:>14} "
                     f"{t.lost:>5} {t.doubled:>7} {t.redelivered:>11} {t.seconds:>8.0f}  "
                     f"{verdict}")
    total = Tally("total")
    for t in tallies:
        for name in ("requested", "terminal", "delivered_once", "lost", "doubled",
                     "redelivered", "seconds"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
    lines.append("-" * len(head))
    lines.append(f"{'total':14} {total.requested:>9} {total.terminal:>8} "
                 f"{total.delivered_once:>14} {total.lost:>5} {total.doubled:>7} "
                 f"{total.redelivered:>11} {total.seconds:>8.0f}  "
                 f"{'FAILED' if any(t.failed for t in tallies) else 'ok'}")
    for t in tallies:
        if t.skipped:
            lines.append(f"\n{t.fault}: SKIPPED: {t.skipped}")
            continue
        lines.append(f"\n{t.fault}: " + ", ".join(f"{k} {v}" for k, v in t.facts.items()))
        lines.append("  outcomes: " + ", ".join(f"{k} {v}" for k, v in
                                                sorted(t.outcomes.items())))
        lines.extend(f"  problem: {p}" for p in t.problems)
    return "\n".join(lines)
