"""The fuzzing harness (fuzz/, docs/fuzzing.md): every seed passes its target, the targets let
foreign exceptions through, the runner reports a broken target as a crash, and a CI-sized
atheris run of every target (20,000 inputs each) finds nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ars_engine.errors import ArsError
from fuzz import targets
from fuzz.corpus import seeds
from fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[2]
CI_RUNS = 20_000
needs_atheris = pytest.mark.skipif(importlib.util.find_spec("atheris") is None,
                                   reason="atheris is not installed (pip install atheris)")


def run_fuzz(*args: str, pythonpath: Path | None = None,
             timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(ROOT)])
    return subprocess.run([sys.executable, "-m", "fuzz.run", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


# -- targets and seeds -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(TARGETS))
def test_every_seed_passes_its_target(name: str) -> None:
    target = TARGETS[name]
    found = seeds(name)
    assert found, f"no seeds for {name}"
    assert all(0 < len(data) <= target.max_len for data in found)
    for data in found:
        target.check(data)


@pytest.mark.parametrize("name", list(TARGETS))
def test_seeds_come_from_the_repository_when_the_shared_transcripts_are_absent(
        name: str, tmp_path: Path) -> None:
    in_repo = seeds(name, shared=tmp_path / "no-shared-dir")
    assert in_repo
    assert set(in_repo) <= set(seeds(name))  # ../shared only adds (SIPp's SIP messages)


def test_the_allowed_errors_are_the_documented_ars_errors() -> None:
    for target in TARGETS.values():
        assert target.allowed and all(issubclass(e, ArsError) for e in target.allowed)


def _raise_key_error(*args: object, **kwargs: object) -> Any:
    raise KeyError("not a documented error")


class _Raising:
    """Stands for a parser class whose every use raises."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise KeyError("not a documented error")

    parse = staticmethod(_raise_key_error)


# The first parser each target calls, replaced by one that raises KeyError.
ENTRY_POINTS = {"sip": "parse_message", "sip_stream": "SipStreamParser",
                "sip_headers": "split_list", "sdp": "SessionDescription", "rtp": "RtpPacket",
                "ami": "AmiConnection", "agi": "AgiSession", "scenario": "load_scenario_text"}


@pytest.mark.parametrize("name", list(TARGETS))
def test_a_foreign_exception_escapes_every_target(name: str,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    assert set(ENTRY_POINTS) == set(TARGETS)
    monkeypatch.setattr(targets, ENTRY_POINTS[name], _Raising)
    with pytest.raises(KeyError):
        TARGETS[name].check(seeds(name)[0])


# -- the runner ------------------------------------------------------------------------------------
BROKEN = '''
def check(data: bytes) -> None:
    """Raises KeyError for inputs starting with "KZ", as a parser bug would."""
    if data[:2] == b"KZ":
        raise KeyError("boom")
'''


@needs_atheris
def test_the_runner_reports_a_broken_target_as_a_crash_and_reproduces_it(tmp_path: Path) -> None:
    (tmp_path / "broken_target.py").write_text(textwrap.dedent(BROKEN), encoding="utf-8")
    out = tmp_path / "out"
    result = run_fuzz("--target", "broken_target:check", "--runs", "500000", "--seed", "1",
                      "--out", str(out), pythonpath=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    crashes = list((out / "broken_target.check").glob("crash-*"))
    assert len(crashes) == 1 and crashes[0].read_bytes().startswith(b"KZ")
    assert "KeyError: 'boom'" in result.stdout
    assert "--reproduce" in result.stdout and str(crashes[0]) in result.stdout
    row = next(line for line in result.stdout.splitlines()
               if line.startswith("broken_target.check "))
    assert row.split()[-3] == "1"  # the crashes column

    again = run_fuzz("--target", "broken_target:check", "--reproduce", str(crashes[0]),
                     pythonpath=tmp_path)
    assert again.returncode == 1
    assert "KeyError: 'boom'" in again.stderr


def test_reproducing_an_input_that_passes_exits_zero(tmp_path: Path) -> None:
    sample = tmp_path / "sample"
    sample.write_bytes(seeds("sip")[0])
    result = run_fuzz("--target", "sip", "--reproduce", str(sample))
    assert result.returncode == 0 and "passes" in result.stdout


def test_an_unknown_target_is_refused() -> None:
    result = run_fuzz("--target", "nope", "--runs", "1")
    assert result.returncode == 2 and "unknown target" in result.stdout


@needs_atheris
def test_a_ci_sized_run_of_every_target_finds_no_crash(tmp_path: Path) -> None:
    # Seeded: the same inputs each time, so CI fails only when the code changes; the full
    # run (make fuzz) draws a new seed each time.
    out = tmp_path / "fuzz"
    result = run_fuzz("--runs", str(CI_RUNS), "--jobs", "2", "--seed", "1", "--out", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    table = result.stdout[result.stdout.index("target "):].splitlines()
    rows = {line.split()[0]: line.split() for line in table[2:len(TARGETS) + 2]}
    assert set(rows) == set(TARGETS)
    for name, row in rows.items():
        assert row[1] == f"{CI_RUNS:,}", f"{name} stopped early: {row}"
        assert row[-3] == "0", f"{name} crashed: {row}"
    assert not [p for p in out.rglob("*") if p.name.startswith(("crash-", "timeout-", "oom-"))]
