"""AMI parsing speed: messages per CPU second, ars-engine's sans-I/O core vs panoramisk 1.4.

The input is the recorded Asterisk 22 traffic of every tests/transcripts/asterisk/ami_*.rx.bin
(banner removed), concatenated and repeated to about 4 MB (by default: 11,865 messages, 89 % of them
events: AGIExecStart/End, Newexten, VarSet, DTMF, Newchannel, Hangup, Cdr…), behind one banner,
and fed in 64 KiB chunks (an asyncio read) to both sides in the same process, on one core:

* ours: ``AmiConnection.receive_data(chunk)`` for every chunk, then for each returned Event the
  engine's reading of it: ``ev.name`` for all, and ``typed(ev)`` (the typed fields: channel,
  uniqueid, linkedid, cause, reason…) for the kinds the Asterisk backend acts on
  (OriginateResponse, Hangup, DialEnd, Newchannel, VarSet: 19 % of the messages here).
  Responses come back unmatched (no action is pending), as cheap as matched ones.
* panoramisk: ``AMIProtocol.data_received(chunk)`` on a protocol made with a transport that
  does nothing; it decodes, splits, builds a ``Message`` (a case-insensitive dict) per message,
  logs it at debug level (disabled: the call and its level check remain, as in production),
  looks its id up among pending actions and hands events to ``factory.dispatch``. The factory
  is a stub whose ``dispatch`` does the same engine reading as ours (``event.event``, then the
  same fields with ``int()`` for the numbers) instead of Manager.dispatch's pattern matching.

Both sides parse every message and read the same fields; an untimed pass checks that they see
the same messages and events. Process CPU time; the two sides take turns, and each one's best of
``--repeat`` runs is reported (the least disturbed one), as events/s and messages/s (events and
responses). Target: ours ≥ 5× panoramisk.

    .venv/bin/python bench/bench_ami_parse.py [--megabytes 4] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import result  # noqa: E402

from ars_engine.telephony.ami import AmiConnection, Event, typed  # noqa: E402

TRANSCRIPTS = ROOT / "tests" / "transcripts" / "asterisk"
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
CHUNK = 65536
TARGET_RATIO = 5.0
ENGINE_READS = frozenset({"OriginateResponse", "Hangup", "DialEnd", "Newchannel", "VarSet"})


def stream(megabytes: float) -> bytes:
    """One banner, then the transcripts' messages repeated to about ``megabytes`` MB."""
    body = b""
    for path in sorted(TRANSCRIPTS.glob("ami_*.rx.bin")):
        data = path.read_bytes()
        assert data.startswith(BANNER), path
        body += data[len(BANNER):]
    return BANNER + body * max(1, round(megabytes * 1e6 / len(body)))


def chunks(data: bytes) -> list[bytes]:
    return [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)]


def run_ours(pieces: list[bytes]) -> int:
    """Parse with AmiConnection and read what the engine reads; return the messages seen."""
    conn = AmiConnection()
    count = 0
    for piece in pieces:
        received = conn.receive_data(piece)
        count += len(received)
        for item in received:
            if type(item) is Event and item.name in ENGINE_READS:
                typed(item)
    return count


# -- panoramisk -----------------------------------------------------------------------------------
class _Transport:
    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        pass


class _Factory:
    """Stands in for panoramisk.Manager: dispatch reads the engine's fields, counts."""

    def __init__(self) -> None:
        self.events = 0

    def dispatch(self, message: Any) -> None:
        self.events += 1
        name = message.event
        if name in ENGINE_READS:
            if name == "OriginateResponse":
                (message["ActionID"], message["Response"] == "Success", message["Channel"],
                 int(message["Reason"]), message["Uniqueid"])
            elif name == "Hangup":
                (message["Channel"], message["Uniqueid"], message["Linkedid"],
                 int(message["Cause"]), message.get("Cause-txt"))
            elif name == "DialEnd":
                (message["DestChannel"], message["DestUniqueid"], message["DialStatus"],
                 message.get("Channel"), message.get("Uniqueid"))
            elif name == "Newchannel":
                (message["Channel"], message["Uniqueid"], message["Linkedid"])
            else:
                (message.get("Channel"), message.get("Uniqueid"), message["Variable"],
                 message["Value"])


def panoramisk_runner() -> Callable[[list[bytes]], int] | None:
    """A function parsing chunks with panoramisk's AMIProtocol, or None if not installed."""
    try:
        from panoramisk.ami_protocol import AMIProtocol
    except ImportError:
        return None

    def run(pieces: list[bytes]) -> int:
        protocol = AMIProtocol()
        protocol.connection_made(_Transport())
        factory = _Factory()
        protocol.factory = factory
        for piece in pieces:
            protocol.data_received(piece)
        return factory.events

    return run


def count_panoramisk_messages(pieces: list[bytes]) -> int:
    """Untimed: every Message panoramisk builds (events and responses)."""
    from panoramisk.ami_protocol import AMIProtocol

    seen = 0

    class Counting(AMIProtocol):  # type: ignore[misc]
        def handle_message(self, message: Any) -> None:
            nonlocal seen
            seen += 1
            super().handle_message(message)

    protocol = Counting()
    protocol.connection_made(_Transport())
    protocol.factory = _Factory()
    for piece in pieces:
        protocol.data_received(piece)
    return seen


def best_times(runners: list[Callable[[list[bytes]], int]], pieces: list[bytes],
               repeat: int) -> list[float]:
    """CPU seconds of each runner's best of ``repeat`` runs, after a warm-up run each. The
    runners take turns, so a load change on the machine hits both sides alike."""
    for fn in runners:
        fn(pieces)
    times: list[list[float]] = [[] for _ in runners]
    for _ in range(repeat):
        for fn, spent in zip(runners, times, strict=True):
            start = time.process_time()
            fn(pieces)
            spent.append(time.process_time() - start)
    return [min(spent) for spent in times]


def report(label: str, seconds: float, messages: int, events: int) -> None:
    print(f"{label:<28} {events / seconds:>10,.0f} events/s {messages / seconds:>10,.0f} "
          f"messages/s {1e6 * seconds / messages:>6.2f} µs/message")


def count_ours(pieces: list[bytes]) -> tuple[int, int]:
    """Untimed: (messages, events) our core returns (no list completes: nothing is pending)."""
    conn = AmiConnection()
    received = [x for piece in pieces for x in conn.receive_data(piece)]
    return len(received) - 1, sum(type(x) is Event for x in received)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--megabytes", type=float, default=4.0, help="input size")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (best reported)")
    args = parser.parse_args()
    pinned = hasattr(os, "sched_setaffinity")
    if pinned:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    data = stream(args.megabytes)
    pieces = chunks(data)
    messages, events = count_ours(pieces)
    print(f"# AMI parse benchmark  {time.strftime('%Y-%m-%d')}  Python "
          f"{platform.python_version()}  {platform.machine()}"
          f"{'  pinned to 1 core' if pinned else ''}")
    print(f"# {len(data) / 1e6:.1f} MB: {messages:,} messages ({events:,} events) in "
          f"{len(pieces)} chunks of {CHUNK // 1024} KiB; best of {args.repeat}; "
          f"target ours ≥ {TARGET_RATIO:.0f}× panoramisk")
    run_panoramisk = panoramisk_runner()
    if run_panoramisk is None:
        (ours,) = best_times([run_ours], pieces, args.repeat)
        report("ars-engine AmiConnection", ours, messages, events)
        print("panoramisk is not installed (pip install panoramisk==1.4): no comparison")
        return
    if count_panoramisk_messages(pieces) != messages or run_panoramisk(pieces) != events:
        sys.exit("panoramisk does not see the same messages and events as ours: not comparable")
    ours, theirs = best_times([run_ours, run_panoramisk], pieces, args.repeat)
    report("ars-engine AmiConnection", ours, messages, events)
    report("panoramisk 1.4 AMIProtocol", theirs, messages, events)
    ratio = theirs / ours
    print(f"ratio {ratio:.1f}×  ({'meets' if ratio >= TARGET_RATIO else 'MISSES'} the "
          f"{TARGET_RATIO:.0f}× target)")
    result("ami_parse", messages / ours, "messages/s", "panoramisk 1.4", messages / theirs,
           better="higher", ours_note=f"{1e6 * ours / messages:.2f} µs/message",
           peer_note=f"{1e6 * theirs / messages:.2f} µs/message")


if __name__ == "__main__":
    main()
