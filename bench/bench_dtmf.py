"""In-band DTMF detection speed: seconds of audio the Goertzel detector handles per CPU second.

One detector per call, fed as a call feeds it: 20 ms frames (160 samples, one RTP packet of G.711)
of 8 kHz s16le; also in 1 s chunks, the detector's raw speed. The audio is a minute of a key press
every second (70 ms tone) over noise at -30 dBFS, so both the block maths and the press logic run.
The target is ≥ 200× real time on one core: ≥ 200 concurrent calls listened to by one core.

    .venv/bin/python bench/bench_dtmf.py [--seconds 60] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.media.dtmf import GoertzelDetector, tone  # noqa: E402

KEYS = "1234567890*#ABCD"
TARGET = 200.0  # × real time


def test_audio(seconds: int) -> tuple[bytes, str]:
    """``seconds`` of noise at -30 dBFS with one key tone (70 ms, -10 dBFS) each second."""
    rng = np.random.default_rng(1)
    x = rng.normal(0, 32768 * 10 ** (-30 / 20), seconds * 8000)
    keys = "".join(KEYS[i % len(KEYS)] for i in range(seconds))
    for i, key in enumerate(keys):
        burst = np.frombuffer(tone(key, 70), dtype="<i2")
        x[i * 8000 + 2000: i * 8000 + 2000 + len(burst)] += burst
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes(), keys


def measure(pcm: bytes, chunk: int, expected: str) -> float:
    """CPU seconds to run one detector over ``pcm`` fed ``chunk`` bytes at a time."""
    chunks = [pcm[i:i + chunk] for i in range(0, len(pcm), chunk)]
    start = time.process_time()
    detector = GoertzelDetector()
    events = [e for c in chunks for e in detector.feed(c)]
    seconds = time.process_time() - start
    found = "".join(e.key for e in events)
    if found != expected:
        raise SystemExit(f"detector found {len(found)} keys, expected {len(expected)}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="seconds of audio per run")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    pcm, keys = test_audio(args.seconds)
    print(f"# DTMF detector benchmark  {time.strftime('%Y-%m-%d')}  Python "
          f"{platform.python_version()}  numpy {np.__version__}  {platform.machine()}  "
          f"pinned to 1 core")
    print(f"# {args.seconds} s of audio, {len(keys)} key presses, median of {args.repeat}; "
          f"target ≥ {TARGET:.0f}× real time")
    print(f"{'feed':<22} {'× real time':>12} {'min':>8} {'max':>8} {'µs/20 ms':>10}")
    for label, chunk in (("20 ms frames (RTP)", 320), ("1 s chunks", 16000)):
        measure(pcm, chunk, keys)  # warm-up
        speeds = [args.seconds / measure(pcm, chunk, keys) for _ in range(args.repeat)]
        median = statistics.median(speeds)
        print(f"{label:<22} {median:>12,.0f} {min(speeds):>8,.0f} {max(speeds):>8,.0f} "
              f"{20_000 / median:>10.1f}")


if __name__ == "__main__":
    main()
