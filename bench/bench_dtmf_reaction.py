"""DTMF → reaction latency: a key arrives, the barge-in prompt stops, the next prompt starts.

Two ``MediaSession``s on loopback: the engine side plays a long barge-in prompt; the phone side
sends a key (RFC 4733). Measured on the engine: from the arrival of the key's first
telephone-event packet (the time stamped on the key) to ``play()`` returning interrupted, and to
the first packet of the next prompt leaving the socket (the callee hears the reaction). Issue 4's
target: ≤ 20 ms p99.

    .venv/bin/python bench/bench_dtmf_reaction.py --presses 200
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.telephony.rtp.media import MediaSession  # noqa: E402
from ars_engine.telephony.sip.sdp import NegotiatedMedia  # noqa: E402


def media_to(port: int) -> NegotiatedMedia:
    return NegotiatedMedia("127.0.0.1", port, port + 1, "PCMU", 8000, 0, 101, 101, 20,
                           "sendrecv")


async def run(presses: int) -> tuple[np.ndarray, np.ndarray]:
    engine, phone = await MediaSession.open("127.0.0.1"), await MediaSession.open("127.0.0.1")
    engine.configure(media_to(phone.port))
    phone.configure(media_to(engine.port))
    engine.start()
    phone.start()
    long_prompt = (np.sin(np.arange(8000 * 30) * 0.3) * 6000).astype("<i2").tobytes()
    next_prompt = (np.sin(np.arange(8000) * 0.5) * 6000).astype("<i2").tobytes()
    stop_ms: list[float] = []
    react_ms: list[float] = []

    async def prompt_then_reaction() -> tuple[float, float]:
        """Play the barge-in prompt; on the key, start the next prompt at once (as the
        interpreter does) and note when its first packet leaves."""
        _, interrupted = await engine.play(long_prompt, barge_in=True)
        stopped = engine.loop.time()
        assert interrupted
        sender = engine._sender
        sent_before = sender.sent if sender else 0
        reaction = asyncio.create_task(engine.play(next_prompt, barge_in=False))
        while sender is not None and sender.sent == sent_before:
            await asyncio.sleep(0.0005)  # sampling the send counter (benchmark only)
        first_packet = engine.loop.time()
        engine.stop_playing()
        await reaction
        return stopped, first_packet

    try:
        for _ in range(presses):
            task = asyncio.create_task(prompt_then_reaction())
            await asyncio.sleep(0.1)  # the prompt is under way (benchmark pacing)
            await phone.send_key("5", duration_ms=60)
            stopped, first_packet = await task
            _, arrived = await engine.keys.get()
            stop_ms.append((stopped - arrived) * 1000)
            react_ms.append((first_packet - arrived) * 1000)
    finally:
        await engine.close()
        await phone.close()
    return np.array(stop_ms), np.array(react_ms)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--presses", type=int, default=200)
    args = parser.parse_args()
    stop, react = asyncio.run(run(args.presses))
    print(f"# DTMF reaction  {time.strftime('%Y-%m-%d')}  {args.presses} presses, RFC 4733")
    for name, values in (("key → prompt stopped", stop), ("key → next prompt's first packet",
                                                          react)):
        print(f"{name:<34} p50 {np.percentile(values, 50):6.2f} ms  "
              f"p99 {np.percentile(values, 99):6.2f} ms  max {values.max():6.2f} ms")


if __name__ == "__main__":
    main()
