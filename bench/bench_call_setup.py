"""Call setup against a SIPp UAS: calls per second, failures, answer → first RTP packet.

SIPp (Debian sip-tester) answers every INVITE (its built-in ``uas`` scenario: 180, 200, then it
waits for our ACK and BYE). The engine places ``--calls`` calls at ``--rate`` calls/s from one
process: INVITE → 200 → ACK, the RTP stream starts, then BYE. Reported: achieved setup rate,
failures, INVITE → answer latency, and answer → first RTP packet sent (the callee must hear the
first prompt within one ptime).

    .venv/bin/python bench/bench_call_setup.py --calls 500 --rate 100
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.telephony.embedded import EmbeddedBackend, SipSettings  # noqa: E402
from ars_engine.telephony.outcomes import Outcome  # noqa: E402


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def one_call(backend: EmbeddedBackend, target: str, hold: float
                   ) -> tuple[bool, float, float, float]:
    t0 = time.perf_counter()
    attempt = await backend.dial(target)
    if attempt.outcome is not Outcome.ANSWERED or attempt.channel is None:
        return False, 0.0, 0.0, 0.0
    answered = time.perf_counter()
    channel = attempt.channel
    sender = channel.media._sender  # the first packet's deadline is the answer + one tick
    first_rtp = 0.0
    while sender is not None and sender.sent == 0:
        await asyncio.sleep(0.001)  # benchmark sampling, not a test
    first_rtp = time.perf_counter() - answered
    await asyncio.sleep(hold)
    await channel.hangup()
    return True, answered - t0, first_rtp, answered


async def run(calls: int, rate: float, hold: float, port: int) -> dict[str, float]:
    target = f"sip:bench@127.0.0.1:{port}"
    async with EmbeddedBackend(SipSettings(answer_timeout=10)) as backend:
        tasks = []
        start = time.perf_counter()
        for i in range(calls):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # open-loop arrivals at the requested rate
            tasks.append(asyncio.create_task(one_call(backend, target, hold)))
        results = await asyncio.gather(*tasks)
    answered_by = max((r[3] for r in results if r[0]), default=start)
    elapsed = answered_by - start  # first INVITE to last answer: the setup window
    ok = [r for r in results if r[0]]
    setup = np.array([r[1] for r in ok]) * 1000
    first = np.array([r[2] for r in ok]) * 1000
    return {"calls": calls, "ok": len(ok), "failed": calls - len(ok),
            "rate": calls / elapsed if elapsed else 0.0,
            "setup_p50": float(np.percentile(setup, 50)) if len(ok) else 0.0,
            "setup_p99": float(np.percentile(setup, 99)) if len(ok) else 0.0,
            "first_p50": float(np.percentile(first, 50)) if len(ok) else 0.0,
            "first_p99": float(np.percentile(first, 99)) if len(ok) else 0.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rate", type=float, default=100.0, help="calls per second offered")
    parser.add_argument("--hold", type=float, default=0.5, help="seconds each call stays up")
    args = parser.parse_args()
    if shutil.which("sipp") is None:
        raise SystemExit("sipp is not installed (make setup installs sip-tester)")
    port = free_udp_port()
    with tempfile.TemporaryDirectory() as tmp:
        sipp = subprocess.Popen(
            ["sipp", "-sn", "uas", "-i", "127.0.0.1", "-p", str(port), "-mp",
             str(free_udp_port()), "-nostdin", "-timeout", "600s"],
            cwd=tmp, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            r = asyncio.run(run(args.calls, args.rate, args.hold, port))
        finally:
            sipp.terminate()
            sipp.wait()
    print(f"# call setup vs SIPp uas  {time.strftime('%Y-%m-%d')}  {args.calls} calls offered at "
          f"{args.rate:g}/s, held {args.hold:g} s")
    print(f"achieved {r['rate']:.1f} calls/s, {r['ok']} answered, {r['failed']} failed; "
          f"INVITE→200 p50 {r['setup_p50']:.1f} ms p99 {r['setup_p99']:.1f} ms; "
          f"answer→first RTP p50 {r['first_p50']:.1f} ms p99 {r['first_p99']:.1f} ms")


if __name__ == "__main__":
    main()
