"""``python -m reliability.run [--ci] [--fault NAME …] [--work DIR]``: run the faults, print the
report (requested, terminal, delivered once, lost, doubled per fault) and exit 1 unless every
fault lost and doubled nothing."""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from .faults import CI, FAULTS, FULL
from .report import Tally, table


def say(text: str) -> None:
    print(text, flush=True)


async def run(names: list[str], ci: bool, work: Path) -> list[Tally]:
    size = CI if ci else FULL
    tallies = []
    for name in names:
        say(f"[{time.strftime('%H:%M:%S')}] {name} ({'CI' if ci else 'full'} size)")
        try:
            result = await FAULTS[name](work / name, size, say)
        except Exception as exc:  # the fault could not run: a failure, named
            result = Tally(name)
            result.problems.append(f"could not run: {type(exc).__name__}: {exc}")
        if result.skipped:
            say(f"  {name}: SKIPPED: {result.skipped}")
        say(f"  {name}: requested {result.requested}, terminal {result.terminal}, delivered "
            f"once {result.delivered_once}, lost {result.lost}, doubled {result.doubled}")
        tallies.append(result)
    return tallies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.run", description=__doc__)
    parser.add_argument("--ci", action="store_true", help="small counts (the test suite's)")
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS),
                        help="run only this fault (repeatable; default all)")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep logs and configs here (default: a temporary directory)")
    args = parser.parse_args(argv)
    # the softphones and the receiver run in this process: only their errors are news here
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="ars-reliability-"))
    tallies = asyncio.run(run(args.fault or list(FAULTS), args.ci, work))
    say("\n" + table(tallies))
    ok = not any(t.failed for t in tallies)
    for t in tallies:
        if t.skipped:
            say(f"note: {t.fault} was skipped: {t.skipped}")
    if ok and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        say(f"\nnode logs and configs: {work}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
