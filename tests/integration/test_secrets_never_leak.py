"""Acceptance: a secret passed to a simulated call (``code=918273``) appears nowhere in the
timeline, logs or files except as audio.

The console script runs each flow with ``--log-level DEBUG --json`` into its own recordings folder
and an initially empty media cache; the tests then grep stdout, stderr (the DEBUG log), the JSON
timeline, and the names and bytes of every file written. Each run must also have really used the
secret (the expected outcome), so a run that never got to the secret cannot pass vacuously. An
in-process variant greps ``caplog``, the result, its repr and exception messages.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from ars_engine.errors import ParameterError
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario
from ars_engine.scenario.secrets import make_hash
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SECRET = "918273"
WRONG = "918274"  # typed instead of SECRET: a secret input too
PIN2 = "91"  # type D collects 2 digits: too short to grep, so only its hash is checked
AMOUNT_HASH = make_hash(SECRET, "leak-test-amt")
PIN_HASH = make_hash(PIN2, "leak-test-pin")
PROCESS_TIMEOUT = 120


def secret_forms(value: str) -> list[str]:
    """Ways a digit string could be written out: as is, spaced or comma-separated (how digits
    are displayed), and read in Korean (what a TTS engine would have been given)."""
    korean = dict(zip("0123456789", "공일이삼사오육칠팔구", strict=True))
    read = [korean[d] for d in value]
    return [value, " ".join(value), ",".join(value), "".join(read), " ".join(read)]


def hash_forms(stored: str) -> list[str]:
    """The parts of a salted hash that must not leave the engine: digest and the whole value."""
    return [stored, stored.rsplit("$", 1)[1]]


@dataclass(frozen=True)
class Flow:
    name: str
    scenario: str
    params: dict[str, str]
    keys: list[str]
    outcome: str
    secrets: list[str]  # strings that must appear nowhere


FLOWS = [
    Flow("type_c_right_code", "type_c.yaml", {"code": SECRET}, [SECRET], "success",
         secret_forms(SECRET)),
    Flow("type_a_code_read", "type_a.yaml", {"code": SECRET}, [""], "success",
         secret_forms(SECRET)),
    Flow("type_c_wrong_code", "type_c.yaml", {"code": SECRET}, [WRONG] * 3, "failed",
         secret_forms(SECRET) + secret_forms(WRONG)),
    Flow("type_f_amount_typed", "type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH},
         [SECRET + "#"], "success", secret_forms(SECRET) + hash_forms(AMOUNT_HASH)),
    Flow("type_d_pin_hash", "type_d.yaml", {"pin_hash": PIN_HASH}, [PIN2], "success",
         hash_forms(PIN_HASH)),
]


@dataclass(frozen=True)
class Run:
    flow: Flow
    proc: subprocess.CompletedProcess[str]
    data: dict  # type: ignore[type-arg]


@dataclass(frozen=True)
class Runs:
    by_name: dict[str, Run]
    recordings: Path
    cache: Path


def ars_command() -> list[str]:
    script = shutil.which("ars-engine", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ars_engine.cli"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Every flow, run once as a process, sharing a recordings folder and a cache that starts
    empty (so prompt rendering, digit clips included, happens during these secret calls)."""
    base = tmp_path_factory.mktemp("leak")
    recordings, cache = base / "recordings", base / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env.update(ARS_RECORDINGS_DIR=str(recordings), ARS_MEDIA_CACHE=str(cache),
               ARS_TTS_ONLINE="0", PYTHONIOENCODING="utf-8")
    done = {}
    for flow in FLOWS:
        args = [*ars_command(), "--log-level", "DEBUG", "simulate", f"scenarios/{flow.scenario}",
                "--json"]
        for name, value in flow.params.items():
            args += ["--param", f"{name}={value}"]
        for keys in flow.keys:
            args += ["--keys", keys]
        proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                              encoding="utf-8", timeout=PROCESS_TIMEOUT, check=False)
        assert proc.returncode == 0, f"{flow.name}: exit {proc.returncode}\n{proc.stderr}"
        done[flow.name] = Run(flow, proc, json.loads(proc.stdout))
    return Runs(done, recordings, cache)


def all_secrets() -> set[str]:
    return {s for flow in FLOWS for s in flow.secrets}


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_simulated_call_used_the_secret_and_reached_its_outcome(runs: Runs, flow: Flow) -> None:
    data = runs.by_name[flow.name].data
    assert data["outcome"] == flow.outcome, data
    assert data["error"] is None
    checks = [e for e in data["timeline"] if e["kind"] == "check"]
    if flow.scenario == "type_a.yaml":
        # the code was read aloud: the display text shows a masked code of the right length
        texts = [e["text"] for e in data["timeline"] if e["kind"] == "prompt_started"]
        assert any("*" * len(SECRET) in t for t in texts), texts
    elif flow.outcome == "success":
        assert [c["passed"] for c in checks][-1] is True
    else:
        assert [c["passed"] for c in checks] == [False] * 3


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_secret_is_not_in_stdout_stderr_or_the_json_timeline(runs: Runs, flow: Flow) -> None:
    run = runs.by_name[flow.name]
    assert "DEBUG" in run.proc.stderr, "the DEBUG log was not captured: the grep would be vacuous"
    timeline = json.dumps(run.data, ensure_ascii=False)
    for secret in flow.secrets:
        assert secret not in run.proc.stdout, f"{secret!r} in stdout"
        assert secret not in run.proc.stderr, f"{secret!r} in the DEBUG log"
        assert secret not in timeline, f"{secret!r} in the JSON result"


@pytest.mark.parametrize("flow", FLOWS, ids=[f.name for f in FLOWS])
def test_secret_keys_typed_are_masked_in_the_timeline(runs: Runs, flow: Flow) -> None:
    keys = [e["key"] for e in runs.by_name[flow.name].data["timeline"] if e["kind"] == "key"]
    if flow.scenario == "type_a.yaml":
        assert keys == []
        return
    typed = "".join(flow.keys)
    assert len(keys) == len(typed)
    assert all(k == "*" or k == "#" for k in keys), keys


def test_secret_is_in_no_file_name_or_content_under_recordings_or_cache(runs: Runs) -> None:
    files = [p for folder in (runs.recordings, runs.cache) for p in folder.rglob("*")
             if p.is_file()]
    wavs = {p for p in files if p.suffix == ".wav"}
    assert any(p.is_relative_to(runs.recordings) for p in wavs), "no heard WAV was written"
    assert len([p for p in wavs if p.is_relative_to(runs.cache)]) >= 10, "the cache stayed empty"
    for run in runs.by_name.values():
        heard = Path(run.data["heard_wav"])
        assert heard.is_file() and heard.is_relative_to(runs.recordings), heard
    base = runs.recordings.parent
    for path in files:
        content = path.read_bytes()
        relative = str(path.relative_to(base))
        for secret in all_secrets():
            assert secret not in relative, f"{secret!r} in the file name {path}"
            assert secret.encode() not in content, f"{secret!r} in the bytes of {path}"
            assert secret.encode("utf-16-le") not in content, f"{secret!r} (UTF-16) in {path}"


# -- in process ------------------------------------------------------------------------------------
IN_PROCESS = [
    ("type_c.yaml", {"code": SECRET}, [SECRET], "success"),
    ("type_c.yaml", {"code": SECRET}, [WRONG] * 3, "failed"),
    ("type_a.yaml", {"code": SECRET}, ["1", ""], "success"),  # read twice
    ("type_f_amount_auth.yaml", {"amount_hash": AMOUNT_HASH}, [SECRET + "#"], "success"),
]


@pytest.mark.parametrize(("scenario_file", "params", "keys", "outcome"), IN_PROCESS,
                         ids=["type_c_right", "type_c_wrong", "type_a_repeat", "type_f_amount"])
async def test_interpreter_logs_and_result_never_hold_the_secret(
        tone_media: MediaLibrary, caplog: pytest.LogCaptureFixture, tmp_path: Path,
        scenario_file: str, params: dict[str, str], keys: list[str], outcome: str) -> None:
    caplog.set_level(logging.DEBUG)
    scenario = load_scenario(SCENARIOS / scenario_file, prompts=tone_media.catalogue)
    channel = SimulatedChannel(KeyScript.parse(keys), call_id="leak-1",
                               recordings_dir=tmp_path / "rec")
    result = await Interpreter(scenario, tone_media).run(channel, params)
    assert result.outcome == outcome, result.describe()
    assert caplog.records, "nothing was logged at DEBUG: the grep would be vacuous"
    wav = channel.write_heard_wav(tmp_path / "rec" / "heard.wav")
    forbidden = secret_forms(SECRET) + secret_forms(WRONG) + hash_forms(AMOUNT_HASH)
    seen = {
        "log": caplog.text,
        "json": result.to_json(),
        "repr": repr(result),
        "describe": result.describe(),
        "error": str(result.error),
        "log args": " ".join(repr(r.args) for r in caplog.records),
    }
    for where, text in seen.items():
        for secret in forbidden:
            assert secret not in text, f"{secret!r} in {where}"
    # The TTS engine was never asked to say the code (digits come from pre-rendered clips).
    spoken = " ".join(tone_media.tts_engine.calls)  # type: ignore[attr-defined]
    assert spoken, "no TTS happened: the check would be vacuous"
    for secret in forbidden:
        assert secret not in spoken
    for path in [wav, *tone_media.cache_dir.rglob("*")]:
        assert SECRET not in path.name
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes()


@pytest.mark.parametrize("bad", ["91827x", "9182731", "91 8273", "９１８２７３"],
                         ids=["letter", "too_long", "space", "fullwidth"])
async def test_refused_secret_parameter_error_does_not_echo_it(
        tone_media: MediaLibrary, caplog: pytest.LogCaptureFixture, bad: str) -> None:
    caplog.set_level(logging.DEBUG)
    scenario = load_scenario(SCENARIOS / "type_c.yaml", prompts=tone_media.catalogue)
    with pytest.raises(ParameterError) as caught:
        await Interpreter(scenario, tone_media).run(SimulatedChannel(), {"code": bad})
    message = f"{caught.value} {caught.value!r} {caught.value.args}"
    assert "'code'" in message
    assert bad not in message
    assert "9182" not in message and "８２７" not in message
    assert bad not in caplog.text


def test_digit_clip_error_names_a_position_not_the_digits(tone_media: MediaLibrary) -> None:
    with pytest.raises(ValueError) as caught:
        tone_media.digits("91827x")
    assert "6" in str(caught.value)
    assert "9182" not in f"{caught.value} {caught.value!r}"
