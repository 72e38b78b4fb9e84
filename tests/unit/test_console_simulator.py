"""The console simulator: shipped scenarios run with scripted keys and no network, secrets stay
masked, the heard audio comes back as a WAV, and scenario text is validated line by line."""

from __future__ import annotations

import io
import textwrap
import wave
from pathlib import Path

import pytest

from ars_engine.console.simulator import (
    NO_NETWORK,
    NoNetworkCore,
    Problem,
    ScenarioTextInvalid,
    SimulationError,
    load_text,
    scrub,
    simulate,
    validate_text,
)
from ars_engine.media.clip import SAMPLE_RATE
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.loader import load_scenario
from ars_engine.scenario.model import Scenario
from tests.conftest import SCENARIOS

CODE = "918273"


def shipped(name: str, media: MediaLibrary) -> Scenario:
    return load_scenario(SCENARIOS / f"{name}.yaml", prompts=media.catalogue)


def texts(timeline: list[tuple[float, str]]) -> str:
    return "\n".join(text for _, text in timeline)


async def test_type_b_right_key_plays_the_code_and_succeeds(tone_media: MediaLibrary) -> None:
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE}, ["5"])
    assert sim.outcome == "success"
    assert sim.result == {"code_played": True}
    assert "ask_key: key 5" in texts(sim.timeline)
    times = [t for t, _ in sim.timeline]
    assert times == sorted(times) and times[-1] <= sim.duration_seconds


async def test_type_b_wrong_keys_retry_then_fail(tone_media: MediaLibrary) -> None:
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE},
                         ["1", "2", "3"])
    assert sim.outcome == "failed"
    assert sim.result == {"code_played": False, "reason": "wrong_key"}
    assert texts(sim.timeline).count("again: retry") == 3


async def test_type_b_silence_times_out(tone_media: MediaLibrary) -> None:
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE}, [])
    assert sim.outcome == "timeout"


async def test_heard_audio_is_a_wav_as_long_as_the_call(tone_media: MediaLibrary) -> None:
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE}, ["5"])
    with wave.open(io.BytesIO(sim.wav)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2,
                                                                                 SAMPLE_RATE)
        seconds = wav.getnframes() / wav.getframerate()
    assert seconds == pytest.approx(sim.audio_seconds)
    assert seconds == pytest.approx(sim.duration_seconds, abs=0.01)
    assert seconds > 5 and not sim.audio_truncated


async def test_heard_audio_is_capped(tone_media: MediaLibrary,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ars_engine.console.simulator.MAX_AUDIO_SECONDS", 2)
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE}, ["5"])
    assert sim.audio_truncated and sim.audio_seconds == 2
    with wave.open(io.BytesIO(sim.wav)) as wav:
        assert wav.getnframes() == 2 * SAMPLE_RATE


async def test_secrets_are_masked_in_timeline_and_result(tone_media: MediaLibrary) -> None:
    for name, keys in (("type_b", ["5"]), ("type_a", []), ("type_c", [CODE]),
                       ("type_c", ["111111", CODE])):
        sim = await simulate(shipped(name, tone_media), tone_media, {"code": CODE}, keys)
        shown = texts(sim.timeline) + repr(sim.result) + repr(sim.error)
        assert CODE not in shown and " ".join(CODE) not in shown, name
        assert sim.outcome == "success", name
    sim = await simulate(shipped("type_c", tone_media), tone_media, {"code": CODE}, [CODE])
    assert "key *" in texts(sim.timeline)


async def test_a_callee_hangup_runs_the_hangup_branch(tone_media: MediaLibrary) -> None:
    sim = await simulate(shipped("type_b", tone_media), tone_media, {"code": CODE}, [],
                         hangup_at=1.0)
    assert sim.outcome == "callee_hangup"
    assert sim.duration_seconds == pytest.approx(1.0, abs=0.01)


async def test_webhooks_never_reach_the_network(tone_media: MediaLibrary) -> None:
    scenario = shipped("type_f_event_consent", tone_media)
    url = "https://core.example.invalid/consent"
    sim = await simulate(scenario, tone_media, {"callback_url": url}, ["1"])
    assert sim.core_requests == [url]
    assert NO_NETWORK in texts(sim.timeline)
    assert sim.outcome == "success"  # the scenario's error branch goes on without the core


async def test_no_network_core_answers_every_request_with_a_failure() -> None:
    core = NoNetworkCore()
    answer = await core.post_json("https://core.example/x", {"input": "1234"}, timeout=5)
    assert (answer.status, answer.json, answer.error) == (0, None, NO_NETWORK)
    assert core.urls == ["https://core.example/x"]


@pytest.mark.parametrize(("params", "keys", "message"), [
    ({}, [], "parameter 'code' is required"),
    ({"code": "12ab"}, [], "parameter 'code' must contain only digits"),
    ({"code": CODE, "cdoe": "1"}, [], "unknown parameter"),
    ({"code": CODE}, ["5x"], "keys: a key cue is"),
])
async def test_bad_input_is_refused_with_a_precise_message(
        tone_media: MediaLibrary, params: dict[str, str], keys: list[str],
        message: str) -> None:
    with pytest.raises(SimulationError, match=message) as caught:
        await simulate(shipped("type_b", tone_media), tone_media, params, keys)
    assert isinstance(caught.value, ValueError)
    assert "12ab" not in str(caught.value)


@pytest.mark.parametrize(("value", "secrets", "shown"), [
    ("code 918273 read", ["918273"], "code ****** read"),
    ("digits 9 1 8 2 7 3", ["918273"], "digits * * * * * *"),
    ({"a": ["x918273"], "b": 3}, ["918273"], {"a": ["x******"], "b": 3}),
    ("nothing", [], "nothing"),
])
def test_scrub(value: object, secrets: list[str], shown: object) -> None:
    assert scrub(value, secrets) == shown


# -- scenario text -------------------------------------------------------------------------------

BROKEN = """\
scenario: edited
steps:
  ask:
    gather: {digits: 1, first_digit_timeout: 3, inter_digit_timeout: 2}
    on: {ok: done}
  done:
    finsh: {outcome: success}
"""


async def test_validate_text_gives_line_numbered_problems(tone_media: MediaLibrary) -> None:
    problems = await validate_text(BROKEN, tone_media)
    assert problems
    assert all(isinstance(p, Problem) and p.line >= 1 and p.column >= 1 for p in problems)
    assert any(p.line == 7 and "finsh" in p.message for p in problems)
    syntax = await validate_text("steps: [\n", tone_media)
    assert syntax and syntax[0].code == "yaml-syntax" and syntax[0].line >= 1


async def test_valid_text_loads_and_simulates_unsaved_edits(tone_media: MediaLibrary) -> None:
    text = (SCENARIOS / "type_b.yaml").read_text(encoding="utf-8").replace(
        'cases: {"5": read_code}', 'cases: {"7": read_code}')
    assert await validate_text(text, tone_media) == []
    edited = await load_text(text, tone_media)
    assert (await simulate(edited, tone_media, {"code": CODE}, ["7"])).outcome == "success"
    assert (await simulate(edited, tone_media, {"code": CODE}, ["5", "5", "5"])
            ).outcome == "failed"


async def test_load_text_raises_with_the_problems(tone_media: MediaLibrary) -> None:
    with pytest.raises(ScenarioTextInvalid) as caught:
        await load_text(BROKEN, tone_media)
    assert isinstance(caught.value, ValueError) and caught.value.problems


def _with_file(path: Path) -> str:
    return textwrap.dedent(f"""\
        scenario: files
        steps:
          a:
            play: {{file: "{path}"}}
            next: b
          b:
            finish: {{outcome: success}}
        """)


async def test_files_outside_the_scenarios_folder_are_refused(tone_media: MediaLibrary,
                                                              tmp_path: Path) -> None:
    allowed, elsewhere = tmp_path / "scenarios", tmp_path / "recordings"
    allowed.mkdir()
    elsewhere.mkdir()
    for folder in (allowed, elsewhere):
        (folder / "a.wav").write_bytes(b"RIFF")
    problems = await validate_text(_with_file(elsewhere / "a.wav"), tone_media,
                                   base_dir=allowed)
    assert [(p.line, p.code) for p in problems] == [(4, "file-not-allowed")]
    assert "a.wav" in problems[0].message
    assert await validate_text(_with_file(allowed / "a.wav"), tone_media,
                               base_dir=allowed) == []
    relative_escape = await validate_text(_with_file(Path("../recordings/a.wav")), tone_media,
                                          base_dir=allowed)
    assert [p.code for p in relative_escape] == ["file-not-allowed"]
    no_folder = await validate_text(_with_file(elsewhere / "a.wav"), tone_media)
    assert [p.code for p in no_folder] == ["file-not-allowed"]


async def test_without_a_media_library_the_simulator_says_so(tone_media: MediaLibrary) -> None:
    with pytest.raises(SimulationError, match="prompt audio library"):
        await simulate(shipped("type_b", tone_media), None, {"code": CODE}, ["5"])
