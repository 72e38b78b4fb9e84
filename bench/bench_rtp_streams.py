"""Concurrent calls with RTP: pacing quality (jitter at the receiver) and CPU, engine vs SIPp.

For each N, two runs against the same kind of callee and measured by the same receiver:

* ours: the engine's embedded SIP backend (one asyncio process, this one) places N calls at a
  SIPp UAS (bench/sipp/uas_rtp_sink.xml) and plays a 3 s prompt in a loop on every answered
  channel: 20 ms PCMU packets paced by the engine's shared pacer;
* peer: SIPp as the caller (bench/sipp/uac_rtp_stream.xml) places N calls at the same UAS and
  streams the same tone with its ``rtp_stream`` action (C++, one thread per few streams).

The UAS answers with an SDP whose media address is the receiver: a process of its own that
stamps every packet with the kernel's receive time (SO_TIMESTAMPNS). From the moment the last
of the N streams started, the first second is skipped and the next ``--seconds`` are analysed
per stream (SSRC): inter-arrival p50 / p99 / p99.9 / max, jitter as |inter-arrival - 20 ms|
(p99), lost packets (sequence gaps) and gaps over 40 ms. The CPU of the sending process (the
engine, or the SIPp caller) over the same window is read from /proc.

    .venv/bin/python bench/bench_rtp_streams.py            # --streams 100 500 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import socket
import struct
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import (  # noqa: E402
    CpuMeter,
    free_udp_port,
    free_udp_ports,
    machine,
    require_sipp,
    result,
    running_sipp,
    scenario_file,
    start_sipp,
    ulaw_tone_file,
)

from ars_engine.telephony.embedded import (  # noqa: E402
    EmbeddedBackend,
    EmbeddedChannel,
    SipSettings,
)
from ars_engine.telephony.outcomes import CallAttempt, Outcome  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
Arrivals = tuple[np.ndarray, np.ndarray, np.ndarray]  # SSRC, sequence number, time
SKIP = 1.0  # seconds skipped after the last stream started
DIAL_RATE = 200.0  # calls per second while the N calls are set up (both callers)
PTIME_MS = 20.0


def receiver(port: int, ready: Event, stop: Event, out_q: mp.Queue[Arrivals]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    # Kernel receive timestamps: the time a packet reached the socket, not when this Python
    # loop got to it (a burst of 500 packets takes this loop several ms to drain).
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", port))
    sock.settimeout(0.2)
    ready.set()
    ssrcs: list[int] = []
    seqs: list[int] = []
    times: list[float] = []
    while not stop.is_set():
        try:
            data, ancdata, _, _ = sock.recvmsg(2048, 256)
        except TimeoutError:
            continue
        if len(data) < 12:
            continue
        now = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                now = sec + nsec * 1e-9
        seq, ssrc = struct.unpack_from("!2xH4xI", data)
        ssrcs.append(ssrc)
        seqs.append(seq)
        times.append(now)
    out_q.put((np.array(ssrcs, dtype=np.uint32), np.array(seqs, dtype=np.uint16),
               np.array(times)))


class Receiver:
    """The receiver process for one run: ``with Receiver() as r: ...; r.data``."""

    def __enter__(self) -> Receiver:
        self.port = free_udp_port()
        self.ready, self.stop = mp.Event(), mp.Event()
        self.out_q: mp.Queue[Arrivals] = mp.Queue()
        self.process = mp.Process(target=receiver,
                                  args=(self.port, self.ready, self.stop, self.out_q))
        self.process.start()
        if not self.ready.wait(10):
            raise RuntimeError("the RTP receiver did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.data: Arrivals = self.out_q.get(timeout=60)
        self.process.join(10)


# -- ours ------------------------------------------------------------------------------------------

async def engine_run(n: int, seconds: float, sip_port: int) -> tuple[float, int]:
    """N engine calls at the UAS, each playing a looping prompt; (CPU share of the engine over
    the analysed window, calls answered)."""
    prompt = (np.sin(np.arange(8000 * 3) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    target = f"sip:bench@127.0.0.1:{sip_port}"
    async with EmbeddedBackend(SipSettings(answer_timeout=10)) as backend:
        start = time.perf_counter()

        async def dial(i: int) -> CallAttempt:
            await asyncio.sleep(max(0.0, start + i / DIAL_RATE - time.perf_counter()))
            return await backend.dial(target)

        attempts = await asyncio.gather(*(dial(i) for i in range(n)))
        channels = [a.channel for a in attempts
                    if a.outcome is Outcome.ANSWERED and isinstance(a.channel, EmbeddedChannel)]

        async def loop_prompt(channel: EmbeddedChannel) -> None:
            while True:  # the media session directly: a prompt after a prompt, no gap
                await channel.media.play(prompt, barge_in=False)

        talkers = [asyncio.create_task(loop_prompt(c)) for c in channels]
        meter = CpuMeter({"engine": os.getpid()})
        await asyncio.sleep(SKIP)  # the receiver skips this second too
        meter.start()
        await asyncio.sleep(seconds)  # the measured window (a benchmark, not a test)
        meter.stop()
        await asyncio.sleep(0.3)
        for task in talkers:
            task.cancel()
        await asyncio.gather(*talkers, return_exceptions=True)
        await asyncio.gather(*(c.hangup() for c in channels), return_exceptions=True)
    return meter.share("engine"), len(channels)


# -- analysis --------------------------------------------------------------------------------------

def analyse(arrivals: Arrivals, seconds: float) -> dict[str, float]:
    """Per-stream inter-arrival statistics over ``seconds`` after the last stream started
    (plus :data:`SKIP`)."""
    ssrcs, seqs, times = arrivals
    streams = np.unique(ssrcs)
    if not len(streams):
        return {"streams": 0, "packets": 0, "p50": float("nan"), "p99": float("nan"),
                "p999": float("nan"), "max": float("nan"), "jitter_p99": float("nan"),
                "lost": 0, "gaps_over_40ms": 0}
    firsts = [times[ssrcs == s].min() for s in streams]
    begin = max(firsts) + SKIP
    end = begin + seconds
    gaps: list[np.ndarray] = []
    lost = late = total = 0
    for ssrc in streams:
        mask = (ssrcs == ssrc) & (times >= begin) & (times < end)
        t = times[mask]
        q = seqs[mask].astype(np.int64)
        if len(t) < 3:
            continue
        d = np.diff(t) * 1000
        gaps.append(d)
        steps = np.diff(q) % 65536
        lost += int(np.sum(steps[steps < 1000] - 1))
        late += int(np.sum(d > 2 * PTIME_MS))
        total += len(t)
    allgaps = np.concatenate(gaps) if gaps else np.array([PTIME_MS])
    deviation = np.abs(allgaps - PTIME_MS)
    return {"streams": len(streams), "packets": total,
            "p50": float(np.percentile(allgaps, 50)), "p99": float(np.percentile(allgaps, 99)),
            "p999": float(np.percentile(allgaps, 99.9)), "max": float(allgaps.max()),
            "jitter_p99": float(np.percentile(deviation, 99)), "lost": lost,
            "gaps_over_40ms": late}


# -- the runs --------------------------------------------------------------------------------------

def run_ours(n: int, seconds: float, workdir: Path) -> dict[str, float]:
    with Receiver() as rx:
        uas = scenario_file("uas_rtp_sink.xml", workdir)
        (sip_port,) = free_udp_ports(1)
        with running_sipp(["-sf", str(uas), "-key", "rtp_sink_port", str(rx.port)],
                          workdir, sip_port):
            cpu, answered = asyncio.run(engine_run(n, seconds, sip_port))
    row = analyse(rx.data, seconds)
    row.update(cpu=cpu, answered=answered)
    return row


def run_sipp(n: int, seconds: float, workdir: Path) -> dict[str, float]:
    tone = ulaw_tone_file(workdir / "tone.ulaw")
    uac = scenario_file("uac_rtp_stream.xml", workdir, rtp_file=tone.name)
    uas = scenario_file("uas_rtp_sink.xml", workdir)
    ramp = n / DIAL_RATE
    hold_ms = int((ramp + SKIP + seconds + 1.0) * 1000)
    with Receiver() as rx:
        sip_port, uac_port = free_udp_ports(2)
        (media_port,) = free_udp_ports(1, spacing=4)
        with running_sipp(["-sf", str(uas), "-key", "rtp_sink_port", str(rx.port)],
                          workdir, sip_port):
            caller = start_sipp(["-sf", str(uac), "-mi", "127.0.0.1", "-mp", str(media_port),
                                 "-l", str(n), "-m", str(n), "-r", str(int(DIAL_RATE)),
                                 "-d", str(hold_ms), "-trace_err", f"127.0.0.1:{sip_port}"],
                                workdir, uac_port)
            try:
                meter = CpuMeter({"sipp": caller.pid})
                time.sleep(ramp + 0.2 + SKIP)  # until every call streams, then the skip
                meter.start()
                time.sleep(seconds)  # the measured window
                meter.stop()
                caller.wait(ramp + hold_ms / 1000 + 30)
            finally:
                caller.stop()
    row = analyse(rx.data, seconds)
    row.update(cpu=meter.share("sipp"), answered=row["streams"],
               exit=caller.process.returncode)
    return row


def print_row(who: str, n: int, r: dict[str, float]) -> None:
    print(f"{who:<6} {n:>7} {r['answered']:>5.0f} {r['cpu'] * 100:>8.0f}% {r['packets']:>8.0f} "
          f"{r['p50']:>7.2f} {r['p99']:>7.2f} {r['p999']:>8.2f} {r['max']:>7.1f} "
          f"{r['jitter_p99']:>10.2f} {r['lost']:>5.0f} {r['gaps_over_40ms']:>9.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 500])
    parser.add_argument("--seconds", type=float, default=8.0, help="analysed seconds per run")
    args = parser.parse_args()
    require_sipp()
    print(f"# concurrent calls with RTP  {time.strftime('%Y-%m-%d')}  {machine()}")
    print(f"# N calls per run set up at {DIAL_RATE:g}/s; kernel receive times; {SKIP:g} s "
          f"skipped after the last stream started, then {args.seconds:g} s analysed")
    print(f"{'who':<6} {'streams':>7} {'up':>5} {'send CPU':>9} {'packets':>8} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'p99.9 ms':>8} {'max ms':>7} {'jitter p99':>10} {'lost':>5} "
          f"{'gaps>40':>9}")
    rows: list[tuple[int, dict[str, float], dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="ars-bench-rtp-") as tmp:
        for n in args.streams:
            ours = run_ours(n, args.seconds, Path(tmp))
            print_row("ours", n, ours)
            peer = run_sipp(n, args.seconds, Path(tmp))
            print_row("SIPp", n, peer)
            rows.append((n, ours, peer))
    print("# jitter = |inter-arrival - 20 ms|; send CPU: the sending process in % of one core")
    n, ours, peer = rows[-1]
    result(f"rtp_jitter_{n}_calls", ours["jitter_p99"], "ms jitter p99",
           "SIPp 3.6 rtp_stream", peer["jitter_p99"], better="lower",
           ours_note=f"max gap {ours['max']:.1f} ms, lost {ours['lost']:.0f}",
           peer_note=f"max gap {peer['max']:.1f} ms, lost {peer['lost']:.0f}")
    result(f"rtp_cpu_{n}_calls", ours["cpu"] * 100, "% of a core", "SIPp 3.6 rtp_stream",
           peer["cpu"] * 100, better="lower")


if __name__ == "__main__":
    main()
