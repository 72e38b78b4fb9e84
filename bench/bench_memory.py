"""Memory per concurrent answered call: the engine vs SIPp, same callee, same run.

The callee is one SIPp ``uas`` with ``-rtp_echo`` (it answers every INVITE and sends back every
RTP packet it gets, so media flows both ways on every call). For each step N (default 0, 50,
100, 200) the two callers take turns, each a fresh process that places N calls at 200/s and
lets them run ``--age`` s (default 10) before the reading, so that at every step the calls
have the same age on both sides:

* ours: an engine process (this file with ``--engine``: the embedded SIP backend, nothing else
  loaded) plays the 3 s prompt in a loop on every call (one shared prompt, as the media
  library shares clips); the echo comes back through the receive path (RTP accounting,
  decoding, in-band DTMF detection: SIPp's SDP offers no telephone-event). Reading: VmRSS
  after a ``gc.collect()``.
* peer: SIPp as the caller (bench/sipp/uac_rtp_stream.xml: the same tone streamed with
  ``rtp_stream``). Reading: VmRSS.

KiB per call is the slope of a least-squares line through (N, RSS) over the steps with
N > 0, the same steps for both. Every engine process first makes one warm-up call (imports,
first-use caches), so that its N = 0 reading is an engine ready to call. One more engine
process, with the largest N, runs under ``tracemalloc``: the Python heap's growth from after
the warm-up to the reading, per call (exact, unlike RSS), and the allocation sites that grew
most (its RSS is not used: tracemalloc's bookkeeping inflates it).

Per-call memory depends on the call's age: see bench/README.md (``--age``).

    .venv/bin/python bench/bench_memory.py        # --calls 0 50 100 200 --age 10
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    free_udp_ports,
    machine,
    require_sipp,
    result,
    rss_kib,
    running_sipp,
    scenario_file,
    start_sipp,
    ulaw_tone_file,
)

DIAL_RATE = 200.0  # calls per second while calls are added (both callers)
TOP_SITES = 6  # allocation sites listed from the tracemalloc snapshot


# -- the engine process ----------------------------------------------------------------------------

async def engine_process(target: str, calls: int, age: float) -> None:
    """One warm-up call (imports, first-use caches), then ``calls`` calls that run ``age`` s;
    then print ``READING <calls up> <traced bytes before> <after> <top growth sites as JSON>``
    (traced: -1 without tracemalloc) and wait for a line on stdin before hanging up."""
    from ars_engine.telephony.embedded import EmbeddedBackend, EmbeddedChannel, SipSettings
    from ars_engine.telephony.outcomes import Outcome

    prompt = (np.sin(np.arange(8000 * 3) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    async def talk(channel: EmbeddedChannel) -> None:
        while True:
            await channel.media.play(prompt, barge_in=False)

    async def dial(i: int, start: float) -> EmbeddedChannel | None:
        await asyncio.sleep(max(0.0, start + i / DIAL_RATE - time.perf_counter()))
        attempt = await backend.dial(target)
        if attempt.outcome is Outcome.ANSWERED and isinstance(attempt.channel, EmbeddedChannel):
            return attempt.channel
        return None

    tracing = tracemalloc.is_tracing()
    async with EmbeddedBackend(SipSettings(answer_timeout=10)) as backend:
        warm = await dial(0, time.perf_counter())
        if warm is None:
            raise SystemExit("the warm-up call was not answered")
        warm_task = asyncio.create_task(talk(warm))
        await asyncio.sleep(0.5)
        warm_task.cancel()
        await asyncio.gather(warm_task, return_exceptions=True)
        await warm.hangup()
        gc.collect()
        before = tracemalloc.take_snapshot() if tracing else None
        start = time.perf_counter()
        channels = [c for c in await asyncio.gather(*(dial(i, start) for i in range(calls)))
                    if c]
        talkers = [asyncio.create_task(talk(c)) for c in channels]
        await asyncio.sleep(age)  # the calls run: RTP both ways (a benchmark, not a test)
        gc.collect()
        traced_before = traced_after = -1
        top: list[tuple[str, int, int]] = []
        if before is not None:
            after = tracemalloc.take_snapshot()
            traced_before = sum(st.size for st in before.statistics("filename"))
            traced_after = sum(st.size for st in after.statistics("filename"))
            top = [(str(st.traceback[0]), st.size_diff, st.count_diff)
                   for st in after.compare_to(before, "lineno")[:TOP_SITES]]
        print("READING", len(channels), traced_before, traced_after, json.dumps(top),
              flush=True)
        await reader.readline()
        for task in talkers:
            task.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        await asyncio.gather(*(c.hangup() for c in channels), return_exceptions=True)


@dataclass
class Reading:
    calls: int  # calls up at the reading
    rss_kib: float
    heap_kib_per_call: float  # traced Python heap growth per call (NaN without tracemalloc)
    top: list[tuple[str, int, int]]  # (site, bytes, blocks) that grew most


def engine_step(target: str, calls: int, age: float, *, trace: bool) -> Reading:
    """A fresh engine process holding ``calls`` calls of age ``age`` (under tracemalloc with
    ``trace``: its RSS is then inflated by tracemalloc's bookkeeping)."""
    command = [sys.executable, __file__, "--engine", target, str(calls), str(age)]
    if trace:
        command.append("--tracemalloc")
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               text=True, cwd=ROOT)
    assert process.stdin is not None and process.stdout is not None
    try:
        line = process.stdout.readline().split(maxsplit=4)
        if len(line) != 5 or line[0] != "READING":
            raise RuntimeError(f"engine process: {line} (exit {process.poll()})")
        rss = rss_kib(process.pid)
        process.stdin.write("done\n")
        process.stdin.flush()
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    up, before, after = int(line[1]), int(line[2]), int(line[3])
    heap = (after - before) / 1024 / up if trace and up else float("nan")
    top = [(site, size, count) for site, size, count in json.loads(line[4])]
    if trace:
        print(f"  ours (tracemalloc): {up:>4} calls  {heap:>9.1f} KiB/call of Python heap",
              flush=True)
    else:
        print(f"  ours: {up:>4} calls  {rss:>9,.0f} KiB", flush=True)
    return Reading(up, float(rss), heap, top)


# -- SIPp ------------------------------------------------------------------------------------------

def sipp_step(workdir: Path, uas_port: int, n: int, age: float) -> tuple[int, float]:
    """A fresh SIPp caller holding ``n`` calls of age ``age`` with RTP: (calls up, RSS KiB)."""
    uac = workdir / "uac_rtp_stream.xml"
    ramp = n / DIAL_RATE
    hold_ms = int((ramp + age + 2.0) * 1000)
    uac_port, = free_udp_ports(1)
    media_port, = free_udp_ports(1, spacing=4)
    caller = start_sipp(["-sf", str(uac), "-mi", "127.0.0.1", "-mp", str(media_port),
                         "-l", str(n), "-m", str(n), "-r", f"{DIAL_RATE:g}",
                         "-d", str(hold_ms), "-trace_stat", "-fd", "1",
                         f"127.0.0.1:{uas_port}"], workdir, uac_port)
    try:
        time.sleep(ramp + age)  # every call up for ``age`` s, RTP flowing (2 s of hold left)
        rss = float(rss_kib(caller.pid))
        caller.wait(hold_ms / 1000 + 30)
    finally:
        caller.stop()
    up = max((int(r.get("CurrentCall", "0") or 0) for r in caller.stat_rows()), default=-1)
    for path in workdir.glob("uac_rtp_stream_*"):
        path.unlink()
    return up, rss


def slope(rows: list[tuple[int, float]]) -> tuple[float, float]:
    """(KiB per call, intercept) of a least-squares line through the rows with calls > 0."""
    points = [(n, m) for n, m in rows if n > 0]
    if len(points) < 2:
        return float("nan"), float("nan")
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points])
    a, b = np.polyfit(x, y, 1)
    return float(a), float(b)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[0, 50, 100, 200],
                        help="calls held at each step")
    parser.add_argument("--age", type=float, default=10.0,
                        help="seconds the calls run before the reading")
    parser.add_argument("--engine", nargs=3, metavar=("TARGET", "CALLS", "AGE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--tracemalloc", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine:
        logging.basicConfig(level=logging.ERROR)  # an overloaded pacer warns on every call
        if args.tracemalloc:
            tracemalloc.start()
        target, calls, age = args.engine
        asyncio.run(engine_process(target, int(calls), float(age)))
        return
    require_sipp()
    steps = sorted(set(args.calls))
    if sum(n > 0 for n in steps) < 2:
        parser.error("--calls: give at least two steps with calls (a slope needs two points)")
    print(f"# memory per call  {time.strftime('%Y-%m-%d')}  {machine()}")
    print(f"# steps {steps} calls, a fresh process per step, RTP both ways (SIPp uas "
          f"-rtp_echo), reading once the calls are {args.age:g} s old; KiB/call = slope over "
          "the steps with calls > 0")
    with tempfile.TemporaryDirectory(prefix="ars-bench-memory-") as tmp:
        work = Path(tmp)
        tone = ulaw_tone_file(work / "tone.ulaw")
        scenario_file("uac_rtp_stream.xml", work, rtp_file=tone.name)
        uas_port, echo_port = free_udp_ports(1)[0], free_udp_ports(1, spacing=4)[0]
        with running_sipp(["-sn", "uas", "-rtp_echo", "-mi", "127.0.0.1", "-mp",
                           str(echo_port)], work, uas_port):
            target = f"sip:bench@127.0.0.1:{uas_port}"
            ours: list[tuple[int, float]] = []
            peer: list[tuple[int, float]] = []
            for n in steps:  # the two callers take turns, step by step
                reading = engine_step(target, n, args.age, trace=False)
                ours.append((reading.calls, reading.rss_kib))
                if n > 0:
                    up, rss = sipp_step(work, uas_port, n, args.age)
                    peer.append((up, rss))
                    print(f"  SIPp: {up:>4} calls  {rss:>9,.0f} KiB", flush=True)
            # the Python heap, exactly: its growth from the warm-up to the most calls
            heap = engine_step(target, steps[-1], args.age, trace=True)
    for n, (got, _) in zip([n for n in steps if n > 0], peer, strict=True):
        if n != got:
            print(f"  warning: SIPp held {got} calls where {n} were asked")
    ours_slope, ours_base = slope(ours)
    peer_slope, peer_base = slope(peer)
    heap_per_call = heap.heap_kib_per_call
    print(f"ours: {ours_slope:.1f} KiB/call RSS (line at 0 calls {ours_base:,.0f} KiB); "
          f"Python heap {heap_per_call:.1f} KiB/call (tracemalloc, {heap.calls} calls); "
          "the allocation sites that grew most:")
    for site, size, count in heap.top:
        print(f"    {size / 1024 / max(1, heap.calls):>7.1f} KiB/call  {count:>7} blocks  "
              f"{site.replace(str(ROOT) + '/', '')}")
    print(f"SIPp: {peer_slope:.1f} KiB/call RSS (line at 0 calls {peer_base:,.0f} KiB)")
    result("memory_per_call", ours_slope, "KiB/call RSS", "SIPp 3.6 uac+rtp_stream",
           peer_slope, better="lower",
           ours_note=f"Python heap {heap_per_call:.1f} KiB/call, calls {args.age:g} s old",
           peer_note=f"{peer_base / 1024:.1f} MiB at 0 calls")


if __name__ == "__main__":
    main()
