"""DTMF → reaction latency: a key arrives, the barge-in prompt stops, the next prompt starts.

The engine side is a ``MediaSession`` playing a long barge-in prompt; when ``play()`` returns
interrupted it starts the next prompt at once (as the interpreter does), then the long prompt
again. The phone is a plain UDP socket in another process: at random moments (so every phase
of the engine's 20 ms grid is hit, as with a real peer whose clock is independent) it sends a
key as RFC 4733 telephone-events, and it stamps every packet it receives with the kernel's
receive time (SO_TIMESTAMPNS). Measured at the phone, on one clock:

* key → prompt stopped: from sending the key's first packet to the first engine packet that is
  no longer the barge-in prompt (the callee hears the prompt stop);
* key → next prompt: to the first packet carrying the next prompt's audio.

Also printed, measured inside the engine: key arrival → ``play()`` returned (the decision).
Issue 4's target: ≤ 20 ms p99. A packet goes out on the stream's next 20 ms slot, so the
reaction is bounded by one ptime plus the work and the loopback.

    .venv/bin/python bench/bench_dtmf_reaction.py --presses 300
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import random
import socket
import struct
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.media.audio import ulaw_encode  # noqa: E402
from ars_engine.telephony.rtp.media import MediaSession  # noqa: E402
from ars_engine.telephony.rtp.rfc4733 import DtmfSender  # noqa: E402
from ars_engine.telephony.sip.sdp import NegotiatedMedia  # noqa: E402

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
LONG_LEVEL, NEXT_LEVEL = 4000, -3000  # constant-level prompts: each packet's payload says which
LONG_PAYLOAD = ulaw_encode(np.full(160, LONG_LEVEL, "<i2").tobytes())
NEXT_PAYLOAD = ulaw_encode(np.full(160, NEXT_LEVEL, "<i2").tobytes())
SETTLE_S = (0.25, 0.45)  # random pause between presses: the barge-in prompt is playing again


def phone(presses: int, port_q: mp.Queue, engine_port: int, out_q: mp.Queue) -> None:  # type: ignore[type-arg]
    """The callee: press a key at random moments, note when the engine's audio changes."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.bind(("127.0.0.1", 0))
    port_q.put(sock.getsockname()[1])
    engine = ("127.0.0.1", engine_port)

    def receive(deadline: float) -> tuple[bytes, float] | None:
        sock.settimeout(max(0.0, deadline - time.time()))
        try:
            data, ancdata, _, _ = sock.recvmsg(2048, 256)
        except (TimeoutError, BlockingIOError):
            return None
        stamp = time.time()
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec * 1e-9
        return data[12:], stamp

    planner = DtmfSender(clock_rate=8000, ptime_ms=20, duration_ms=60)
    seq, ssrc = 1, 0x5EED
    stops: list[float] = []
    nexts: list[float] = []
    for _ in range(presses):
        until = time.time() + random.uniform(*SETTLE_S)
        last = b""
        while (got := receive(until)) is not None or last != LONG_PAYLOAD:
            if got is None:  # the settle time is up: wait for the barge-in prompt
                until = time.time() + 0.02
            else:
                last = got[0]
        packets = planner.packets("5", int(time.time() * 8000))  # the phone's clock
        sent_at = 0.0
        stopped = first_next = None
        for i, plan in enumerate(packets):
            header = struct.pack("!BBHII", 0x80, (0x80 if plan.marker else 0) | 101, seq,
                                 plan.timestamp, ssrc)
            seq = (seq + 1) & 0xFFFF
            if i == 0:
                sent_at = time.time()
            sock.sendto(header + plan.payload, engine)
            slot_end = sent_at + 0.02 * (i + 1)
            while (got := receive(slot_end)) is not None:
                payload, stamp = got
                if stopped is None and payload != LONG_PAYLOAD:
                    stopped = stamp
                if first_next is None and payload == NEXT_PAYLOAD:
                    first_next = stamp
        deadline = sent_at + 1.0
        while first_next is None and (got := receive(deadline)) is not None:
            payload, stamp = got
            if stopped is None and payload != LONG_PAYLOAD:
                stopped = stamp
            if payload == NEXT_PAYLOAD:
                first_next = stamp
        if stopped is None or first_next is None:
            raise SystemExit("the engine did not react to a key within 1 s")
        stops.append((stopped - sent_at) * 1000)
        nexts.append((first_next - sent_at) * 1000)
    out_q.put((stops, nexts))


async def engine_side(session: MediaSession, done: asyncio.Event,
                      decisions: list[float]) -> None:
    """Play the barge-in prompt; on a key start the next prompt at once; repeat."""
    long_prompt = np.full(8000 * 30, LONG_LEVEL, "<i2").tobytes()
    next_prompt = np.full(8000 // 10, NEXT_LEVEL, "<i2").tobytes()
    while not done.is_set():
        _, interrupted = await session.play(long_prompt, barge_in=True)
        if not interrupted:
            continue
        returned = session.loop.time()
        arrived = returned
        while not session.keys.empty():  # the key that ended the prompt is the latest
            _, arrived = session.keys.get_nowait()
        decisions.append((returned - arrived) * 1000)
        await session.play(next_prompt, barge_in=False)


async def run(presses: int) -> tuple[list[float], list[float], list[float]]:
    session = await MediaSession.open("127.0.0.1")
    port_q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    out_q: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    proc = mp.Process(target=phone, args=(presses, port_q, session.port, out_q))
    proc.start()
    loop = asyncio.get_running_loop()
    phone_port = await loop.run_in_executor(None, port_q.get)
    session.configure(NegotiatedMedia("127.0.0.1", phone_port, phone_port + 1, "PCMU", 8000, 0,
                                      101, 101, 20, "sendrecv"))
    session.start()
    done = asyncio.Event()
    decisions: list[float] = []
    engine = asyncio.create_task(engine_side(session, done, decisions))
    try:
        stops, nexts = await loop.run_in_executor(None, out_q.get)
    finally:
        done.set()
        session.stop_playing()
        await session.close()
        engine.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await engine
        proc.join()
    return decisions, stops, nexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=300)
    args = parser.parse_args()
    decisions, stops, nexts = asyncio.run(run(args.presses))
    print(f"# DTMF reaction  {time.strftime('%Y-%m-%d')}  {args.presses} presses, RFC 4733, "
          "phone in another process pressing at random phases")
    rows = (("engine: key arrival → play() returned", decisions),
            ("phone: key sent → prompt stopped", stops),
            ("phone: key sent → next prompt heard", nexts))
    for name, values in rows:
        if not values:
            continue
        a = np.array(values)
        print(f"{name:<40} p50 {np.percentile(a, 50):6.2f} ms  p99 {np.percentile(a, 99):6.2f} ms"
              f"  max {a.max():6.2f} ms")


if __name__ == "__main__":
    main()
