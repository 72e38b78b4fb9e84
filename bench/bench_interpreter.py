"""Interpreter throughput: scenario runs per second on the in-memory channel, one core.

Audio rendering is cached (prompts pre-rendered before timing), the heard-audio capture is off,
and every run is a whole call: greeting, gather with keys, check, goodbye, finish, hang-up.
The target (issue 3) is ≥ 2,000 type C runs/s on one core, so that the interpreter is never what
limits call volume.

    .venv/bin/python bench/bench_interpreter.py [--runs 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.media.library import MediaLibrary  # noqa: E402
from ars_engine.scenario.interpreter import Interpreter  # noqa: E402
from ars_engine.scenario.loader import load_scenario  # noqa: E402
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel  # noqa: E402

CASES = [
    # (label, scenario file, params, keys, expected outcome)
    ("type C, right code", "type_c.yaml", {"code": "123456"}, ["123456"], "success"),
    ("type C, wrong code x3", "type_c.yaml", {"code": "123456"},
     ["111111", "222222", "333333"], "failed"),
    ("type A, read code", "type_a.yaml", {"code": "1234"}, [""], "success"),
]


async def measure(interpreter: Interpreter, params: dict[str, str], keys: list[str],
                  runs: int, expected: str) -> tuple[float, int]:
    script = KeyScript.parse(keys)
    steps = 0
    start = time.perf_counter()
    for i in range(runs):
        channel = SimulatedChannel(KeyScript(list(script.cues)), call_id=f"b{i}",
                                   capture_audio=False)
        result = await interpreter.run(channel, params, call_id=f"b{i}")
        if result.outcome != expected:
            raise SystemExit(f"run {i}: outcome {result.outcome}, expected {expected}")
        steps += result.steps
    return time.perf_counter() - start, steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5000, help="runs per repetition")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    media = MediaLibrary.default(ROOT)
    report = media.render_all()
    print(f"# interpreter benchmark  {time.strftime('%Y-%m-%d')}  Python "
          f"{platform.python_version()}  {platform.machine()}  pinned to 1 core")
    print(f"# prompts ready: {report.total} ({report.rendered} rendered now)")
    print(f"{'case':<24} {'runs/s (median)':>16} {'min':>8} {'max':>8} {'µs/run':>8} "
          f"{'steps/run':>10}")
    for label, name, params, keys, expected in CASES:
        scenario = load_scenario(ROOT / "scenarios" / name, prompts=media.catalogue)
        interpreter = Interpreter(scenario, media)
        asyncio.run(measure(interpreter, params, keys, 200, expected))  # warm-up
        rates = []
        steps = 0
        for _ in range(args.repeat):
            seconds, steps = asyncio.run(measure(interpreter, params, keys, args.runs, expected))
            rates.append(args.runs / seconds)
        median = statistics.median(rates)
        print(f"{label:<24} {median:>16,.0f} {min(rates):>8,.0f} {max(rates):>8,.0f} "
              f"{1e6 / median:>8.0f} {steps / args.runs:>10.1f}")


if __name__ == "__main__":
    main()
