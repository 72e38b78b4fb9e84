"""Run every benchmark (``make bench``) and end with one summary table.

Each benchmark is its own script and its own process (``bench/bench_*.py``, runnable alone);
this runs them one after the other, shows their output as it comes, and collects the lines
they end with (bench/harness.py):

    RESULT <bench> | ours <value> <unit> | peer <name> <value> <unit> | ratio <x> | <direction>

The ratio is always ours / peer, both measured in the same run of that benchmark. The summary
lists every RESULT line, then the benchmarks that have no peer (they print their own table
against a target), with how long each took and whether it failed. ``--markdown`` also prints
the summary as the rows of bench/README.md's table.

    .venv/bin/python bench/run_all.py              # everything, defaults (≈ 10-15 min)
    .venv/bin/python bench/run_all.py --quick      # smoke run: small sizes (≈ 3 min)
    .venv/bin/python bench/run_all.py --only api memory
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import RESULT, machine, machine_busy_ticks

BENCH_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Bench:
    name: str
    script: str
    quick: tuple[str, ...] = ()  # arguments for --quick
    peer: bool = True  # ends with RESULT lines


BENCHES = [
    # the six with a peer measured in the same run
    Bench("interpreter", "bench_interpreter.py", ("--runs", "500", "--repeat", "2")),
    Bench("ami_parse", "bench_ami_parse.py", ("--megabytes", "0.5", "--repeat", "2")),
    Bench("rtp_streams", "bench_rtp_streams.py", ("--streams", "50", "--seconds", "3")),
    Bench("call_setup", "bench_call_setup.py",
          ("--calls", "200", "--rate", "100", "--capacity-calls", "500")),
    Bench("api", "bench_api.py", ("--seconds", "3", "--warmup", "2", "--db", "sqlite")),
    Bench("memory", "bench_memory.py", ("--calls", "0", "20", "40", "--age", "2")),
    Bench("console", "bench_console.py", ("--calls", "5000", "--repeat", "3")),
    # against a target, no peer
    Bench("dtmf", "bench_dtmf.py", ("--seconds", "10", "--repeat", "2"), peer=False),
    Bench("rtp_packets", "bench_rtp.py", ("--packets", "20000", "--repeat", "2"), peer=False),
    Bench("sip_parse", "bench_sip_parse.py", ("--number", "2000", "--repeat", "2"), peer=False),
    Bench("dtmf_reaction", "bench_dtmf_reaction.py", ("--presses", "30",), peer=False),
]


@dataclass
class Outcome:
    bench: Bench
    seconds: float = 0.0
    status: str = "ok"
    others: float = 0.0  # CPU of processes outside the benchmark meanwhile, share of a core
    results: list[list[str]] = field(default_factory=list)  # RESULT fields


def run(bench: Bench, quick: bool, timeout: float) -> Outcome:
    """Run one benchmark script, echoing its output; its RESULT lines."""
    outcome = Outcome(bench)
    command = [sys.executable, str(BENCH_DIR / bench.script), *(bench.quick if quick else ())]
    print(f"\n=== {bench.name}: {' '.join(command[1:])}", flush=True)
    start = time.monotonic()
    busy_before, total_before = machine_busy_ticks()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, cwd=BENCH_DIR.parent)
    assert process.stdout is not None
    watchdog = threading.Timer(timeout, process.kill)  # a hung benchmark prints nothing
    watchdog.start()
    try:
        for line in process.stdout:
            print(line, end="", flush=True)
            if line.startswith(RESULT + " "):
                outcome.results.append([f.strip() for f in line[len(RESULT):].split(" | ")])
        # wait4: the CPU of the benchmark and of every descendant it waited for (SIPp, the
        # servers, the receivers), to tell how busy the rest of the machine was meanwhile
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
        busy, total = machine_busy_ticks()
        elapsed = time.monotonic() - start
        machine_cpu = (busy - busy_before) / max(1, total - total_before) * (os.cpu_count() or 1)
        outcome.others = max(0.0, machine_cpu - (usage.ru_utime + usage.ru_stime) / elapsed)
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    outcome.seconds = time.monotonic() - start
    if outcome.seconds >= timeout:
        outcome.status = f"killed after {timeout:g} s"
    if outcome.status == "ok" and code != 0:
        outcome.status = f"failed (exit {code})"
    elif outcome.status == "ok" and bench.peer and not outcome.results:
        outcome.status = "no RESULT line"
    return outcome


def summary(outcomes: list[Outcome], markdown: bool) -> None:
    date = time.strftime("%Y-%m-%d")
    host = machine()
    rows = [(o, r) for o in outcomes for r in o.results]
    print(f"\n=== summary  {date}  {host}  (ratio = ours / peer, same run)")
    width = max([len(r[0]) for _, r in rows] + [12])
    for _, r in rows:
        name, ours, peer, ratio, better = (r + [""] * 5)[:5]
        print(f"{name:<{width}}  {ratio.removeprefix('ratio '):>6}  {better:<17}  {ours}  ||  "
              f"{peer}")
    print("  (others: CPU used meanwhile by processes outside the benchmark, in % of one core; "
          "above ~20% the numbers are disturbed)")
    for o in outcomes:
        note = "" if o.status == "ok" else f"  <-- {o.status}"
        kind = "peer" if o.bench.peer else "target only"
        print(f"  {o.bench.name:<14} {o.seconds:>6.0f} s  others {o.others * 100:>4.0f}%  "
              f"{kind}{note}")
    if markdown:
        print("\n| date | bench | ours | peer | ratio | machine |\n|---|---|---|---|---:|---|")
        for _, r in rows:
            name, ours, peer, ratio, better = (r + [""] * 5)[:5]
            arrow = "↑" if better.startswith("higher") else "↓"
            print(f"| {date} | {name} | {ours.removeprefix('ours ')} | "
                  f"{peer.removeprefix('peer ')} | {ratio.removeprefix('ratio ')} {arrow} | "
                  f"{host} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run these benchmarks only")
    parser.add_argument("--skip", nargs="+", metavar="NAME", default=[], help="skip these")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds after which one benchmark is killed")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the summary as bench/README.md table rows")
    args = parser.parse_args()
    names = {b.name for b in BENCHES}
    for name in [*(args.only or []), *args.skip]:
        if name not in names:
            parser.error(f"unknown benchmark {name!r}; known: {', '.join(sorted(names))}")
    chosen = [b for b in BENCHES if (not args.only or b.name in args.only)
              and b.name not in args.skip]
    started = time.monotonic()
    outcomes = [run(b, args.quick, args.timeout) for b in chosen]
    summary(outcomes, args.markdown)
    print(f"  total {time.monotonic() - started:.0f} s")
    if any(o.status != "ok" for o in outcomes):
        sys.exit(1)


if __name__ == "__main__":
    main()
