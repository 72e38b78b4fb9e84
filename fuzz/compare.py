"""Measure atheris against hypothesis on one target with the same time budget.

``python -m fuzz.compare --target sip --seconds 60`` runs, each in its own process and from the
same seeds: atheris (libFuzzer, coverage-guided) and hypothesis (the strategy the unit tests'
fuzzing uses: a seed with one to six edits, or random bytes). Then it replays, without
instrumentation, the seeds alone, the corpus atheris kept and every input hypothesis generated,
under a line tracer limited to ``--package`` (default: the target's parser package), and prints
inputs executed, execs/s, and the parser lines each reached beyond the seeds.

Used once to choose the engine (docs/fuzzing.md has the numbers); not part of ``make fuzz``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import FrameType
from typing import Any

from .run import ROOT

PACKAGES = {"sip": "ars_engine/telephony/sip", "sip_stream": "ars_engine/telephony/sip",
            "sip_headers": "ars_engine/telephony/sip", "sdp": "ars_engine/telephony/sip",
            "rtp": "ars_engine/telephony/rtp", "ami": "ars_engine/telephony/ami",
            "agi": "ars_engine/telephony/agi", "scenario": "ars_engine/scenario"}


def lines_reached(check: Callable[[bytes], None], inputs: Iterable[bytes],
                  package: str) -> set[tuple[str, int]]:
    """(file, line) pairs of ``package`` executed while ``check`` ran on ``inputs``."""
    prefix = str(ROOT / package)
    reached: set[tuple[str, int]] = set()

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            reached.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def global_(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code.co_filename.startswith(prefix) else None

    sys.settrace(global_)
    try:
        for data in inputs:
            with contextlib.suppress(Exception):  # crashes are the fuzzers' business
                check(data)
    finally:
        sys.settrace(None)
    return reached


def _hypothesis_worker(target: str, seconds: float, out: Path) -> None:
    """Generate and run inputs for ``seconds``; append each to ``out`` (4-byte length first)."""
    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from mutations import mutated

    from .corpus import seeds
    from .targets import TARGETS

    t = TARGETS[target]
    specials = [b"\r\n", b"\r\n\r\n", b"\n", b"\r", b":", b": ", b",", b";", b'"', b"<", b">",
                b"\\", b"\x00", b"=", b" ", b"\xff"]
    strategy = st.one_of(mutated(seeds(target), specials), st.binary(max_size=t.max_len))
    deadline = time.monotonic() + seconds
    runs = 0
    with open(out, "wb") as sink:
        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(strategy)
        def one(data: bytes) -> None:
            nonlocal runs
            if time.monotonic() < deadline:
                runs += 1
                sink.write(len(data).to_bytes(4, "big") + data)
                t.check(data)

        while time.monotonic() < deadline:
            one()
    print(f"runs={runs}")


def _read_inputs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, pos = [], 0
    while pos < len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        out.append(data[pos + 4:pos + 4 + size])
        pos += 4 + size
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    p = argparse.ArgumentParser(prog="python -m fuzz.compare", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default="sip")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--package", help="directory whose lines are counted")
    p.add_argument("--hypothesis-worker", metavar="FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.hypothesis_worker:
        _hypothesis_worker(args.target, args.seconds, Path(args.hypothesis_worker))
        return 0
    from .corpus import seeds
    from .targets import TARGETS

    with tempfile.TemporaryDirectory(prefix="fuzz-compare-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "fuzz.run", "--target", args.target, "--out",
                        str(work / "atheris"), "--runs", "100000000", "--seconds",
                        str(int(args.seconds))], cwd=ROOT, check=False, capture_output=True)
        log = (work / "atheris" / args.target / "fuzz.log").read_text(errors="replace")
        atheris_runs = int(re.findall(r"stat::number_of_executed_units:\s+(\d+)", log)[-1])
        atheris_time = time.monotonic() - started
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "fuzz.compare", "--target", args.target,
                                 "--seconds", str(args.seconds), "--hypothesis-worker",
                                 str(work / "hypothesis.bin")], cwd=ROOT, check=True,
                                capture_output=True, text=True)
        hypothesis_time = time.monotonic() - started
        hypothesis_runs = int(re.findall(r"runs=(\d+)", result.stdout)[-1])
        check = TARGETS[args.target].check
        package = args.package or PACKAGES[args.target]
        base = seeds(args.target)
        corpus = [f.read_bytes() for f in (work / "atheris" / args.target / "corpus").iterdir()]
        generated = _read_inputs(work / "hypothesis.bin")
        seeded = lines_reached(check, base, package)
        by_atheris = lines_reached(check, [*base, *corpus], package)
        by_hypothesis = lines_reached(check, [*base, *generated], package)
    print(f"target {args.target}, {args.seconds:.0f} s each, lines of {package}: "
          f"{len(seeded)} reached by the {len(base)} seeds")
    for name, runs, spent, reached in (("atheris", atheris_runs, atheris_time, by_atheris),
                                       ("hypothesis", hypothesis_runs, hypothesis_time,
                                        by_hypothesis)):
        print(f"{name:<11} {runs:>9,} inputs  {runs / args.seconds:>8,.0f} execs/s  "
              f"{len(reached):>5} lines  +{len(reached - seeded)} beyond the seeds  "
              f"({spent:.0f} s wall, process start included)")
    only_a, only_h = by_atheris - by_hypothesis, by_hypothesis - by_atheris
    print(f"lines only atheris reached: {len(only_a)}; only hypothesis: {len(only_h)}")
    for file, line in sorted(only_h)[:20]:
        print(f"  hypothesis only: {Path(file).relative_to(ROOT)}:{line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
