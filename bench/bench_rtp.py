"""RTP packet speed: ``RtpPacket.parse`` and ``bytes(packet)`` on a 172-byte G.711 packet.

One G.711 call at 20 ms moves 50 packets/s each way, so 500 concurrent calls (issue 4's target)
need 25,000 parses and 25,000 serialisations per second. This prints packets/s for both, on one
core, median of several runs, plus the same for an RFC 4733 telephone-event packet (parse and
``DtmfReceiver.feed``), the other per-packet path. Numbers, not a timed test.

    .venv/bin/python bench/bench_rtp.py [--packets 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.telephony.rtp.packet import RtpPacket  # noqa: E402
from ars_engine.telephony.rtp.rfc4733 import DtmfReceiver, DtmfSender  # noqa: E402

CALLS = 500  # issue 4: concurrent calls on 2 cores
PACKETS_PER_CALL = 50  # 20 ms packetisation, one direction


def g711_packet() -> bytes:
    """A PCMU packet as a call sends it: 12-byte header, 160 bytes (20 ms) of audio."""
    packet = RtpPacket(0, 4_660, 160_000, 0x5D3A1F07, bytes(range(160)))
    data = bytes(packet)
    assert len(data) == 172
    return data


def rate(action: Callable[[], object], count: int) -> float:
    """Calls of ``action`` per CPU second, over ``count`` calls."""
    start = time.process_time()
    for _ in range(count):
        action()
    return count / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=200_000, help="packets per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs (median reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    data = g711_packet()
    packet = RtpPacket.parse(data)
    dtmf = DtmfSender().packets("5", 8_000)[1].rtp(101, 7, 0x5D3A1F07)
    dtmf_data = bytes(dtmf)
    receiver = DtmfReceiver(101)
    receiver.feed(dtmf, 0)  # the event is known: what follows is the steady state (updates)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("parse, G.711 172 B", lambda: RtpPacket.parse(data)),
        ("bytes(), G.711 172 B", lambda: bytes(packet)),
        ("parse, telephone-event 16 B", lambda: RtpPacket.parse(dtmf_data)),
        ("DtmfReceiver.feed (update)", lambda: receiver.feed(dtmf, 20)),
    ]
    need = CALLS * PACKETS_PER_CALL
    print(f"# RTP packet benchmark  {time.strftime('%Y-%m-%d')}  Python "
          f"{platform.python_version()}  {platform.machine()}  pinned to 1 core")
    print(f"# {args.packets:,} packets per run, median of {args.repeat}; {CALLS} calls need "
          f"{need:,} packets/s each way")
    print(f"{'operation':<30} {'packets/s':>12} {'min':>12} {'max':>12} {'µs/packet':>10} "
          f"{'% of a core at 500 calls':>26}")
    for label, action in cases:
        rate(action, args.packets // 10)  # warm-up
        rates = [rate(action, args.packets) for _ in range(args.repeat)]
        median = statistics.median(rates)
        print(f"{label:<30} {median:>12,.0f} {min(rates):>12,.0f} {max(rates):>12,.0f} "
              f"{1e6 / median:>10.2f} {100 * need / median:>25.1f}%")


if __name__ == "__main__":
    main()
