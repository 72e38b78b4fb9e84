"""The demo cases (ars_engine.demo_cases.DEMO_CASES) end as they say, with the real espeak-ng
prompts and a real loopback core; and ``ars-engine demo`` runs them all and prints its table."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import wave
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ars_engine.demo import LocalCore, run_case
from ars_engine.demo_cases import DEMO_CASES, DemoCase
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.corehttp import AiohttpCoreClient

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
PROCESS_TIMEOUT = 300


@pytest.fixture
async def local_core() -> AsyncIterator[LocalCore]:
    core = LocalCore()
    await core.start()
    try:
        yield core
    finally:
        await core.stop()


@pytest.fixture
async def client() -> AsyncIterator[AiohttpCoreClient]:
    core_client = AiohttpCoreClient()
    try:
        yield core_client
    finally:
        await core_client.close()


@pytest.mark.parametrize("case", DEMO_CASES, ids=[c.name for c in DEMO_CASES])
async def test_demo_case_ends_with_its_expected_outcome_and_result(
        real_media: MediaLibrary, local_core: LocalCore, client: AiohttpCoreClient,
        tmp_path: Path, case: DemoCase) -> None:
    result, wav = await run_case(case, real_media, tmp_path, local_core.url, client, SCENARIOS)
    assert result.outcome == case.expected_outcome, result.describe()
    assert result.error is None, result.error
    for key, value in (case.expected_result or {}).items():
        assert result.result.get(key) == value, f"result[{key!r}]: {result.result}"
    assert wav.is_file() and wav.is_relative_to(tmp_path)
    with wave.open(str(wav), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.getnframes() > 0


def case_named(name: str) -> DemoCase:
    return next(c for c in DEMO_CASES if c.name == name)


async def test_f_event_agreed_notifies_the_local_core_mid_call(
        real_media: MediaLibrary, local_core: LocalCore, client: AiohttpCoreClient,
        tmp_path: Path) -> None:
    case = case_named("f_event_agreed")
    result, _ = await run_case(case, real_media, tmp_path, local_core.url, client, SCENARIOS)
    assert result.outcome == "success"
    [body] = local_core.received
    assert body["event"] == "marketing_consent"
    assert body["call_id"] == result.call_id
    assert body["scenario"] == "type_f_event_consent"
    assert body["step"] == "notify"
    assert body["data"]["consent"] == "agreed" and body["data"]["choice"] == "1"
    # The core's answer came back into the call: its ticket reached the result.
    assert result.result["ticket"] == "T0001"
    assert result.result["notified"] == "yes"


async def test_f_event_core_down_sends_nothing_to_the_local_core(
        real_media: MediaLibrary, local_core: LocalCore, client: AiohttpCoreClient,
        tmp_path: Path) -> None:
    case = case_named("f_event_core_down")
    result, _ = await run_case(case, real_media, tmp_path, local_core.url, client, SCENARIOS)
    assert result.outcome == "success"
    assert local_core.received == []
    assert result.result["notified"] == "no"


def test_demo_cases_cover_every_shipped_scenario() -> None:
    assert {c.scenario for c in DEMO_CASES} == {p.name for p in SCENARIOS.glob("*.yaml")}
    assert len({c.name for c in DEMO_CASES}) == len(DEMO_CASES)


def test_demo_command_runs_every_case_as_expected(tmp_path: Path) -> None:
    script = shutil.which("ars-engine", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "ars_engine.cli"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env.update(ARS_RECORDINGS_DIR=str(tmp_path / "recordings"),
               ARS_MEDIA_CACHE=str(tmp_path / "cache"), ARS_TTS_ONLINE="0",
               PYTHONIOENCODING="utf-8")
    proc = subprocess.run([*command, "demo"], cwd=ROOT, env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=PROCESS_TIMEOUT, check=False)
    shown = f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert proc.returncode == 0, shown
    for name in (p.name for p in SCENARIOS.glob("*.yaml")):
        assert name in proc.stdout, f"{name} missing\n{shown}"
    summary = re.search(r"^(\d+) runs of (\d+) scenarios: (\d+) as expected, (\d+) unexpected",
                        proc.stdout, re.MULTILINE)
    assert summary, shown
    runs, scenarios, expected, unexpected = map(int, summary.groups())
    assert (runs, scenarios, expected, unexpected) == (len(DEMO_CASES), 7, len(DEMO_CASES), 0)
    rows = [line for line in proc.stdout.splitlines()
            if any(line.startswith(f"{c.scenario} ") for c in DEMO_CASES)]
    assert len(rows) == len(DEMO_CASES), shown
    for row in rows:
        assert "✓" in row and "✗" not in row, row
        wav = Path(row.split()[-1])
        wav = wav if wav.is_absolute() else ROOT / wav
        assert wav.suffix == ".wav" and wav.is_file(), row
        assert wav.is_relative_to(tmp_path / "recordings"), "the demo wrote outside its folder"
