"""Run the fuzz targets: ``python -m fuzz.run [--runs N] [--target NAME ...] [--out DIR]``.

Each target runs in its own process under atheris (libFuzzer inside CPython): its seed corpus
is rebuilt in ``OUT/<target>/seeds`` (fuzz.corpus), the inputs libFuzzer finds interesting are
kept in ``OUT/<target>/corpus`` (reused by the next run), crash, timeout and out-of-memory
inputs are written to ``OUT/<target>/`` and libFuzzer's whole output to
``OUT/<target>/fuzz.log``. The table at the end gives, per target, the inputs executed, execs/s,
the corpus size and the crashes; the exit status is 1 if any target crashed (libFuzzer stops a
target at its first crash) and 2 if a fuzzing process failed in another way.

``--target`` takes a name from fuzz.targets.TARGETS or ``module:function`` (any importable
``bytes -> None`` function; no seeds). ``--reproduce FILE...`` runs a target on saved inputs
without atheris and prints the traceback of the first that fails. Arguments after ``--`` go to
libFuzzer as they are (``-- -dict=sip.dict``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "test-artifacts" / "fuzz"
DEFAULT_RUNS = 1_000_000
ATHERIS = "3.0.0"  # the version measured (docs/fuzzing.md); 2.x breaks on Python 3.11
ARTIFACT_PREFIXES = ("crash-", "timeout-", "oom-", "leak-")
# Packages whose code gives libFuzzer its coverage feedback: the parsers and the targets. Not
# PyYAML: instrumenting it made the scenario target six times slower, and it reached fewer
# loader lines in the same time (docs/fuzzing.md).
INSTRUMENTED = ("ars_engine", "fuzz.targets")
# Status lines libFuzzer prints: "#131072\tpulse  cov: 812 ft: 2307 corp: 301/21Kb ...".
_STATUS = re.compile(r"#(\d+)\s+(INITED|NEW|REDUCE|pulse|DONE|RELOAD)\b(.*)")
_FIELD = re.compile(r"(cov|ft|corp|exec/s): (\d+)")
_STAT = re.compile(r"stat::(\w+):\s+(\d+)")
SLOWEST = ("sip_stream", "ami", "scenario")  # fewest execs/s (docs/fuzzing.md)
_PROGRESS_EVERY = 30.0  # seconds between progress lines of one target besides the milestones
_print_lock = threading.Lock()


def _say(text: str) -> None:
    with _print_lock:
        print(text, flush=True)


@dataclass(slots=True)
class Outcome:
    """What one target's run gave (read from libFuzzer's output and the artifact directory)."""

    target: str
    spec: str
    seeds: int
    log: Path
    runs: int = 0
    execs_per_s: float = 0.0
    corpus: int = 0
    new_units: int = 0
    coverage: int = 0
    seconds: float = 0.0
    returncode: int = 0
    crashes: list[Path] = field(default_factory=list)
    exception: str = ""  # the last line of a Python traceback, when there was one

    @property
    def failed(self) -> bool:
        """True when the process died without leaving a crash input (a harness problem)."""
        return self.returncode != 0 and not self.crashes


# -- resolving targets -----------------------------------------------------------------------------
def _load(spec: str) -> tuple[Callable[[bytes], None], int]:
    """(check function, max_len) of a target name or ``module:function``."""
    if ":" in spec:
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name), 4096
    from .targets import TARGETS

    target = TARGETS[spec]
    return target.check, target.max_len


# -- the fuzzing process ---------------------------------------------------------------------------
def _worker(spec: str, libfuzzer_args: list[str]) -> int:
    """Inside the child process: instrument the parsers, then hand over to libFuzzer."""
    import atheris

    extra = [spec.partition(":")[0]] if ":" in spec else []
    with atheris.instrument_imports(include=[*INSTRUMENTED, *extra]):
        check = _load(spec)[0]
    atheris.Setup([sys.argv[0], *libfuzzer_args], check)
    atheris.Fuzz()
    return 0


def _libfuzzer_args(args: argparse.Namespace, spec: str, work: Path, seeds: Path) -> list[str]:
    max_len = 4096 if ":" in spec else _load(spec)[1]
    flags = [f"-runs={args.runs}", f"-max_len={max_len}", f"-timeout={args.timeout}",
             f"-rss_limit_mb={args.rss_limit}", f"-artifact_prefix={work}/",
             "-print_final_stats=1"]
    if args.seed is not None:
        flags.append(f"-seed={args.seed}")
    if args.seconds is not None:
        flags.append(f"-max_total_time={args.seconds}")
    return [*flags, *args.libfuzzer, str(work / "corpus"), str(seeds)]


def _artifacts(work: Path) -> set[Path]:
    return {p for p in work.glob("*") if p.name.startswith(ARTIFACT_PREFIXES)}


def _run_target(args: argparse.Namespace, spec: str) -> Outcome:
    from .corpus import write_seeds

    name = spec.replace(":", ".")
    work = Path(args.out) / name
    (work / "corpus").mkdir(parents=True, exist_ok=True)
    seeds = work / "seeds"
    count = write_seeds(spec, seeds) if ":" not in spec else _empty_dir(seeds)
    outcome = Outcome(name, spec, count, work / "fuzz.log")
    before = _artifacts(work)
    command = [sys.executable, "-m", "fuzz.run", "--worker", spec, "--",
               *_libfuzzer_args(args, spec, work, seeds)]
    _say(f"[{name}] start: {count} seeds, {args.runs} runs, log {outcome.log}")
    started = time.monotonic()
    with open(outcome.log, "w", encoding="utf-8") as log, subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            errors="replace") as process:
        assert process.stdout is not None
        _follow(process.stdout, log, outcome)
        outcome.returncode = process.wait()
    outcome.seconds = time.monotonic() - started
    outcome.crashes = sorted(_artifacts(work) - before)
    if not outcome.execs_per_s and outcome.seconds:
        outcome.execs_per_s = outcome.runs / outcome.seconds
    verdict = "CRASH" if outcome.crashes else ("FAILED" if outcome.failed else "ok")
    _say(f"[{name}] {verdict}: {outcome.runs} inputs in {outcome.seconds:.0f} s")
    return outcome


def _empty_dir(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    for child in path.iterdir():
        child.unlink()
    return 0


def _follow(stream: IO[str], log: IO[str], outcome: Outcome) -> None:
    """Copy libFuzzer's output to the log, keep its numbers, print milestones."""
    last_print = time.monotonic()
    in_traceback = False
    for line in stream:
        log.write(line)
        text = line.rstrip("\n")
        status = _STATUS.match(text)
        if status is not None:
            outcome.runs = int(status[1])
            fields = dict(_FIELD.findall(status[3]))
            outcome.coverage = int(fields.get("cov", outcome.coverage))
            outcome.corpus = int(fields.get("corp", outcome.corpus))
            now = time.monotonic()
            if status[2] in ("INITED", "pulse", "DONE") or now - last_print >= _PROGRESS_EVERY:
                _say(f"[{outcome.target}] {text}")
                last_print = now
        elif stat := _STAT.match(text):
            if stat[1] == "number_of_executed_units":
                outcome.runs = int(stat[2])
            elif stat[1] == "average_exec_per_sec":
                outcome.execs_per_s = float(stat[2])
            elif stat[1] == "new_units_added":
                outcome.new_units = int(stat[2])
        elif "Uncaught Python exception" in text or text.startswith(("ALARM:", "==")):
            in_traceback = "Uncaught" in text
            _say(f"[{outcome.target}] {text}")
        elif in_traceback and text and not text.startswith(" "):
            if not text.startswith("Traceback"):
                outcome.exception = text
        elif "Test unit written to" in text:
            _say(f"[{outcome.target}] {text}")
        if "ERROR: libFuzzer: " in text and not outcome.exception:
            outcome.exception = text.partition("ERROR: ")[2]  # timeout, out-of-memory…


# -- reporting -------------------------------------------------------------------------------------
def _table(outcomes: Sequence[Outcome]) -> str:
    rows = [("target", "inputs", "execs/s", "seeds", "corpus", "new", "cov", "crashes", "time")]
    for o in outcomes:
        crashes = str(len(o.crashes)) if not o.failed else f"FAILED (exit {o.returncode})"
        rows.append((o.target, f"{o.runs:,}", f"{o.execs_per_s:,.0f}", str(o.seeds),
                     str(o.corpus), str(o.new_units), str(o.coverage), crashes,
                     f"{o.seconds:.0f} s"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                       for i, (cell, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _report(outcomes: Sequence[Outcome]) -> int:
    _say("\n" + _table(outcomes))
    crashed = [o for o in outcomes if o.crashes]
    for o in crashed:
        _say(f"\n{o.target}: {', '.join(str(p) for p in o.crashes)}"
             + (f"\n  {o.exception}" if o.exception else "") + f"\n  log: {o.log}")
    if crashed:
        first = crashed[0]
        _say(f"\nReproduce (no atheris needed; prints the traceback):\n"
             f"  .venv/bin/python -m fuzz.run --target {first.spec} "
             f"--reproduce {first.crashes[0]}\n"
             f"Under atheris, if it passes without (instrumentation trouble):\n"
             f"  .venv/bin/python -m fuzz.run --worker {first.spec} -- {first.crashes[0]}")
        return 1
    failed = [o for o in outcomes if o.failed]
    for o in failed:
        _say(f"\n{o.target}: the fuzzing process exited {o.returncode} without a crash input; "
             f"see {o.log}")
    return 2 if failed else 0


def _atheris_problem() -> str:
    """Why atheris cannot be used here ("" when it can)."""
    try:
        version = importlib.metadata.version("atheris")
    except importlib.metadata.PackageNotFoundError:
        return f"atheris is not installed: .venv/bin/pip install atheris=={ATHERIS}"
    if int(version.split(".")[0]) < 3:
        # atheris 2.x mis-assembles backward jumps that need EXTENDED_ARG on Python 3.11: a
        # long loop body jumps into a CACHE entry and the process dies or raises nonsense
        # (docs/fuzzing.md), so every "crash" it reports may be its own.
        return f"atheris {version} miscompiles loops on Python 3.11; install atheris=={ATHERIS}"
    return ""


def _interrupt(signum: int, frame: object) -> None:
    raise TimeoutError("the input ran longer than --timeout")


def _reproduce(spec: str, files: Sequence[str], timeout: int) -> int:
    check = _load(spec)[0]
    signal.signal(signal.SIGALRM, _interrupt)  # a timeout input shows where it hangs
    for name in files:
        data = Path(name).read_bytes()
        try:
            signal.alarm(timeout)
            check(data)
        except Exception:  # the point is to show whatever escaped the target
            _say(f"{name}: {len(data)} bytes, {data[:120]!r}{'…' if len(data) > 120 else ''}")
            traceback.print_exc()
            return 1
        finally:
            signal.alarm(0)
        _say(f"{name}: passes ({len(data)} bytes)")
    return 0


# -- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    from . import __doc__ as package_doc

    p = argparse.ArgumentParser(prog="python -m fuzz.run", description=package_doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=DEFAULT_RUNS,
                   help=f"inputs per target (default {DEFAULT_RUNS:,}: the full run)")
    p.add_argument("--target", action="append", metavar="NAME",
                   help="a target name or module:function (repeatable; default: all)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="working and crash directory")
    p.add_argument("--jobs", type=int, default=1, help="targets fuzzed at the same time")
    p.add_argument("--seed", type=int, help="libFuzzer's random seed (default: random)")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take")
    p.add_argument("--rss-limit", type=int, default=2048, help="memory limit per process, MB")
    p.add_argument("--seconds", type=int, help="stop each target after this many seconds")
    p.add_argument("--reproduce", nargs="+", metavar="FILE", help="run saved inputs, no atheris")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("libfuzzer", nargs="*", help="after --: extra libFuzzer flags")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    if args.worker:
        return _worker(args.worker, args.libfuzzer)
    from .targets import TARGETS

    specs = args.target or list(TARGETS)
    unknown = [s for s in specs if ":" not in s and s not in TARGETS]
    if unknown:
        _say(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
        return 2
    if args.reproduce:
        if len(specs) != 1:
            _say("--reproduce needs exactly one --target")
            return 2
        return _reproduce(specs[0], args.reproduce, args.timeout)
    problem = _atheris_problem()
    if problem:
        _say(problem)
        return 2
    os.environ.setdefault("PYTHONHASHSEED", "0")
    # The slowest targets start first, so that with --jobs no process is left running alone.
    order = sorted(specs, key=lambda spec: spec not in SLOWEST)
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        done = dict(zip(order, pool.map(lambda spec: _run_target(args, spec), order),
                        strict=True))
    return _report([done[spec] for spec in specs])


if __name__ == "__main__":
    sys.exit(main())
