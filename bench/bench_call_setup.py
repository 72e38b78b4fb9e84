"""Call setup against a SIPp UAS: the engine's SIP UAC vs SIPp's UAC, same callee, same run.

The callee is SIPp's built-in ``uas`` (180, 200 with SDP, waits for ACK and BYE), a fresh one
for every run. Two phases, each run first with the engine as the caller (this process, its
embedded SIP backend: INVITE, 180, 200, ACK, its RTP stream starts, then BYE) and then with
SIPp's built-in ``uac`` (no RTP):

1. latency at a fixed offered rate: ``--calls`` calls offered open-loop at ``--rate`` calls/s,
   each held ``--hold`` s. A loopback capture of the callee's port (bench/sipwire.py, kernel
   times, the same observer for both callers) gives per call INVITE → ACK on the wire (the
   whole three-way handshake: the callee's answer plus the caller's reaction to it) and
   200 → ACK (the caller's reaction alone), and the achieved rate. SIPp 3.6 times its own
   calls with a 1 ms clock, so the wire is the only fair clock for both.
2. capacity: ``--capacity-calls`` calls with at most ``--concurrency`` up at once and no hold
   (INVITE … ACK, then BYE at once), each caller as fast as it can: calls/s from the first
   call to the last, and the caller's CPU per call.

Also printed for the engine: ``dial()`` → answered inside the engine, and answer → first RTP
packet sent (issue 4: the callee hears the first prompt within one ptime).

    .venv/bin/python bench/bench_call_setup.py     # --calls 1000 --rate 200 --hold 0.5
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    CpuMeter,
    free_udp_ports,
    machine,
    percentiles,
    require_sipp,
    result,
    running_sipp,
    start_sipp,
)
from sipwire import SipCapture, capture_problem, setups  # noqa: E402

from ars_engine.telephony.embedded import (  # noqa: E402
    EmbeddedBackend,
    EmbeddedChannel,
    SipSettings,
)
from ars_engine.telephony.outcomes import Outcome  # noqa: E402


@dataclass
class WireResult:
    """Phase 1 for one caller, from the capture."""

    offered: int
    answered: int
    rate: float
    setup_ms: np.ndarray  # INVITE → ACK
    turn_ms: np.ndarray  # 200 → ACK
    inside: dict[str, float]  # the engine's own timings (empty for SIPp)


@dataclass
class CapacityResult:
    calls: int
    failed: int
    rate: float
    cpu_ms_per_call: float


# -- the engine as the caller ----------------------------------------------------------------------

async def engine_call(backend: EmbeddedBackend, target: str, hold: float
                      ) -> tuple[bool, float, float]:
    """One call: (answered, dial → answered s, answer → first RTP packet s)."""
    t0 = time.perf_counter()
    attempt = await backend.dial(target)
    if attempt.outcome is not Outcome.ANSWERED or not isinstance(attempt.channel,
                                                                 EmbeddedChannel):
        return False, 0.0, 0.0
    answered = time.perf_counter()
    channel = attempt.channel
    sender = channel.media._sender
    while sender is not None and sender.sent == 0:
        await asyncio.sleep(0.0005)  # sampling the first packet (a benchmark, not a test)
    first_rtp = time.perf_counter() - answered
    if hold:
        await asyncio.sleep(hold)
    await channel.hangup()
    return True, answered - t0, first_rtp


async def engine_open_loop(port: int, calls: int, rate: float, hold: float
                           ) -> list[tuple[bool, float, float]]:
    target = f"sip:bench@127.0.0.1:{port}"
    async with EmbeddedBackend(SipSettings(answer_timeout=10)) as backend:
        tasks = []
        start = time.perf_counter()
        for i in range(calls):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)  # open-loop arrivals at the offered rate
            tasks.append(asyncio.create_task(engine_call(backend, target, hold)))
        return await asyncio.gather(*tasks)


async def engine_closed_loop(port: int, calls: int, concurrency: int) -> tuple[int, float]:
    """``calls`` calls by ``concurrency`` workers, no hold; (failed, seconds)."""
    target = f"sip:bench@127.0.0.1:{port}"
    failed = 0
    left = calls
    async with EmbeddedBackend(SipSettings(answer_timeout=10)) as backend:

        async def worker() -> None:
            nonlocal left, failed
            while left > 0:
                left -= 1
                ok, _, _ = await engine_call(backend, target, 0.0)
                failed += not ok

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return failed, time.perf_counter() - start


# -- the runs --------------------------------------------------------------------------------------

def wire_result(capture: SipCapture, port: int, offered: int,
                inside: dict[str, float]) -> WireResult:
    found = [(s.invite, s.ok, s.ack) for s in setups(capture.datagrams, port)
             if s.ok is not None and s.ack is not None]
    setup_ms = np.array([ack - invite for invite, _, ack in found]) * 1000
    turn_ms = np.array([ack - ok for _, ok, ack in found]) * 1000
    span = max(f[2] for f in found) - min(f[0] for f in found) if found else 0.0
    return WireResult(offered, len(found), len(found) / span if span else 0.0, setup_ms,
                      turn_ms, inside)


def latency_ours(workdir: Path, calls: int, rate: float, hold: float) -> WireResult:
    uas_port, media_port = free_udp_ports(2)
    with running_sipp(["-sn", "uas", "-mp", str(media_port)], workdir, uas_port), \
            SipCapture(uas_port) as capture:
        results = asyncio.run(engine_open_loop(uas_port, calls, rate, hold))
    ok = [r for r in results if r[0]]
    dial_p50, dial_p99 = percentiles([r[1] * 1000 for r in ok])
    rtp_p50, rtp_p99 = percentiles([r[2] * 1000 for r in ok])
    inside = {"failed": len(results) - len(ok), "dial_p50": dial_p50, "dial_p99": dial_p99,
              "rtp_p50": rtp_p50, "rtp_p99": rtp_p99}
    return wire_result(capture, uas_port, calls, inside)


def latency_sipp(workdir: Path, calls: int, rate: float, hold: float) -> WireResult:
    uas_port, media_port, uac_port = free_udp_ports(3)
    with running_sipp(["-sn", "uas", "-mp", str(media_port)], workdir, uas_port), \
            SipCapture(uas_port) as capture:
        caller = start_sipp(["-sn", "uac", "-r", f"{rate:g}", "-m", str(calls),
                             "-l", str(calls), "-d", str(int(hold * 1000)),
                             f"127.0.0.1:{uas_port}"], workdir, uac_port)
        try:
            caller.wait(calls / rate + hold + 60)
        finally:
            caller.stop()
    return wire_result(capture, uas_port, calls, {})


def capacity_ours(workdir: Path, calls: int, concurrency: int) -> CapacityResult:
    uas_port, media_port = free_udp_ports(2)
    with running_sipp(["-sn", "uas", "-mp", str(media_port)], workdir, uas_port):
        meter = CpuMeter({"engine": os.getpid()})
        meter.start()
        failed, seconds = asyncio.run(engine_closed_loop(uas_port, calls, concurrency))
        meter.stop()
    return CapacityResult(calls, failed, calls / seconds,
                          meter.share("engine") * meter.wall / calls * 1000)


def capacity_sipp(workdir: Path, calls: int, concurrency: int) -> CapacityResult:
    uas_port, media_port, uac_port = free_udp_ports(3)
    with running_sipp(["-sn", "uas", "-mp", str(media_port)], workdir, uas_port):
        start = time.monotonic()
        caller = start_sipp(["-sn", "uac", "-r", "100000", "-m", str(calls),
                             "-l", str(concurrency), "-d", "0", "-trace_stat", "-fd", "1",
                             f"127.0.0.1:{uas_port}"], workdir, uac_port)
        _, cpu, _ = caller.wait_rusage(calls / 10 + 60)
        seconds = time.monotonic() - start
    rows = caller.stat_rows()
    # every call not counted successful failed (-1: SIPp wrote no statistics)
    failed = calls - int(rows[-1].get("SuccessfulCall(C)", "0") or 0) if rows else -1
    return CapacityResult(calls, failed, calls / seconds, cpu * 1000 / calls)


def print_wire(who: str, r: WireResult) -> None:
    s50, s99 = percentiles(r.setup_ms)
    t50, t99 = percentiles(r.turn_ms)
    print(f"{who:<6} {r.offered:>7} {r.answered:>8} {r.rate:>8.1f} {s50:>9.2f} {s99:>9.2f} "
          f"{t50:>9.2f} {t99:>9.2f}", flush=True)


def phase_one(work: Path, args: argparse.Namespace) -> tuple[WireResult, WireResult]:
    print(f"# phase 1: {args.calls} calls offered at {args.rate:g}/s, held {args.hold:g} s; "
          "wire times at the callee's port (kernel)")
    print(f"{'caller':<6} {'offered':>7} {'answered':>8} {'calls/s':>8} "
          f"{'INV→ACK':>9} {'p99':>9} {'200→ACK':>9} {'p99':>9}   (ms)")
    ours = latency_ours(work, args.calls, args.rate, args.hold)
    print_wire("ours", ours)
    peer = latency_sipp(work, args.calls, args.rate, args.hold)
    print_wire("SIPp", peer)
    i = ours.inside
    print(f"  engine inside: {i['failed']:.0f} failed; dial() → answered p50 "
          f"{i['dial_p50']:.2f} ms p99 {i['dial_p99']:.2f} ms; answer → first RTP p50 "
          f"{i['rtp_p50']:.2f} ms p99 {i['rtp_p99']:.2f} ms")
    return ours, peer


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="phase 1: calls offered")
    parser.add_argument("--rate", type=float, default=200.0, help="phase 1: calls/s offered")
    parser.add_argument("--hold", type=float, default=0.5, help="phase 1: seconds held")
    parser.add_argument("--capacity-calls", type=int, default=4000, help="phase 2: calls")
    parser.add_argument("--concurrency", type=int, default=50, help="phase 2: calls up at once")
    args = parser.parse_args()
    require_sipp()
    print(f"# call setup vs SIPp  {time.strftime('%Y-%m-%d')}  {machine()}")
    problem = capture_problem()
    ours: WireResult | None = None
    peer: WireResult | None = None
    with tempfile.TemporaryDirectory(prefix="ars-bench-setup-") as tmp:
        work = Path(tmp)
        if problem is not None:
            print(f"# phase 1 skipped: {problem}")
        else:
            ours, peer = phase_one(work, args)
        print(f"# phase 2: {args.capacity_calls} calls, at most {args.concurrency} up at once, "
              "no hold, as fast as each caller goes")
        cap_ours = capacity_ours(work, args.capacity_calls, args.concurrency)
        cap_peer = capacity_sipp(work, args.capacity_calls, args.concurrency)
        for who, c in (("ours", cap_ours), ("SIPp", cap_peer)):
            print(f"{who:<6} {c.calls:>7} calls, {c.failed} failed, {c.rate:>8.1f} calls/s, "
                  f"caller CPU {c.cpu_ms_per_call:.3f} ms/call", flush=True)
    if ours is not None and peer is not None:
        s50, s99 = percentiles(ours.setup_ms)
        p50, p99 = percentiles(peer.setup_ms)
        result("call_setup_latency", s50, "ms INVITE→ACK p50", "SIPp 3.6 uac", p50,
               better="lower", ours_note=f"p99 {s99:.2f}", peer_note=f"p99 {p99:.2f}")
    result("call_setup_rate", cap_ours.rate, "calls/s", "SIPp 3.6 uac", cap_peer.rate,
           better="higher", ours_note=f"{cap_ours.cpu_ms_per_call:.2f} ms CPU/call",
           peer_note=f"{cap_peer.cpu_ms_per_call:.2f} ms CPU/call")


if __name__ == "__main__":
    main()
