"""Concurrent RTP streams from one engine process: pacing quality and CPU.

N ``MediaSession``s (the RTP side of N answered calls) each play a prompt in a loop, 20 ms
G.711 packets on absolute deadlines. A receiver in another process stamps every packet with the
kernel's receive time (SO_TIMESTAMPNS); the report gives, per run, the engine process's CPU and
the p50 / p99 / p99.9 / max inter-arrival per stream, and lost or late packets. This measures
the media half of issue 4's "500 concurrent calls on 2 cores with p99 ≤ 22 ms" target; call
setup (SIP) is not in it.

    .venv/bin/python bench/bench_rtp_streams.py --streams 100 200 500 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.telephony.rtp.media import MediaSession  # noqa: E402
from ars_engine.telephony.sip.sdp import NegotiatedMedia  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux


def receiver(port_q: mp.Queue, stop: mp.Event, out_q: mp.Queue) -> None:  # type: ignore[type-arg]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * 1024 * 1024)
    # Kernel receive timestamps: the time a packet reached the socket, not when this Python
    # loop got to it (a burst of 500 packets takes this loop several ms to drain).
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    port_q.put(sock.getsockname()[1])
    ssrcs: list[int] = []
    seqs: list[int] = []
    times: list[float] = []
    while not stop.is_set():
        try:
            data, ancdata, _, _ = sock.recvmsg(2048, 256)
        except TimeoutError:
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


async def run_streams(n: int, seconds: float, port: int) -> tuple[float, float]:
    prompt = (np.sin(np.arange(8000 * 3) * 2 * np.pi * 440 / 8000) * 8000).astype("<i2").tobytes()
    sessions = []
    for _ in range(n):
        s = await MediaSession.open("127.0.0.1")
        s.configure(NegotiatedMedia("127.0.0.1", port, port + 1, "PCMU", 8000, 0, 101, 101,
                                    20, "sendrecv"))
        sessions.append(s)
    for s in sessions:
        s.start()

    async def talk(s: MediaSession) -> None:
        while True:
            await s.play(prompt, barge_in=False)

    talkers = [asyncio.create_task(talk(s)) for s in sessions]
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)  # the measurement window (this is a benchmark, not a test)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    for t in talkers:
        t.cancel()
    await asyncio.gather(*talkers, return_exceptions=True)
    for s in sessions:
        await s.close()
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return cpu / wall, wall


def analyse(ssrcs: np.ndarray, seqs: np.ndarray, times: np.ndarray, skip: float = 1.0
            ) -> dict[str, float]:
    gaps: list[np.ndarray] = []
    lost = 0
    late = 0
    total = 0
    start = times.min() + skip if len(times) else 0
    for ssrc in np.unique(ssrcs):
        mask = (ssrcs == ssrc) & (times >= start)
        t = times[mask]
        q = seqs[mask].astype(np.int64)
        if len(t) < 3:
            continue
        d = np.diff(t) * 1000
        gaps.append(d)
        steps = np.diff(q) % 65536
        lost += int(np.sum(steps[steps < 1000] - 1))
        late += int(np.sum(d > 40))
        total += len(t)
    allgaps = np.concatenate(gaps) if gaps else np.array([0.0])
    return {"packets": total, "p50": float(np.percentile(allgaps, 50)),
            "p99": float(np.percentile(allgaps, 99)),
            "p999": float(np.percentile(allgaps, 99.9)), "max": float(allgaps.max()),
            "lost": lost, "gaps_over_40ms": late}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 200, 500])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"# concurrent RTP streams  {time.strftime('%Y-%m-%d')}  one engine process "
          "(asyncio); receiver in another process, kernel receive times; first 1 s skipped")
    print(f"{'streams':>8} {'engine CPU':>11} {'packets':>9} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'p99.9 ms':>9} {'max ms':>7} {'lost':>6} {'gaps>40ms':>10}")
    for n in args.streams:
        port_q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        out_q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
        stop = mp.Event()
        proc = mp.Process(target=receiver, args=(port_q, stop, out_q))
        proc.start()
        port = port_q.get()
        cpu, _ = asyncio.run(run_streams(n, args.seconds, port))
        stop.set()
        ssrcs, seqs, times = out_q.get()
        proc.join()
        r = analyse(ssrcs, seqs, times)
        print(f"{n:>8} {cpu * 100:>10.0f}% {r['packets']:>9} {r['p50']:>7.2f} {r['p99']:>7.2f} "
              f"{r['p999']:>9.2f} {r['max']:>7.1f} {r['lost']:>6} {r['gaps_over_40ms']:>10}")


if __name__ == "__main__":
    main()
