"""The interpreter on the simulated channel: outcomes, retries, barge-in, bounds, secrets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from ars_engine.errors import ParameterError
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel

TYPE_C = """
scenario: mini_c
params:
  code: {type: secret}
limits: {max_steps: 50, max_seconds: 120}
defaults:
  gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
on_hangup: gone
steps:
  ask:
    gather:
      prompt: {text: "인증번호 네 자리를 입력해 주세요"}
      digits: 4
      finish_key: "#"
      into: entered
      secret: true
    on: {ok: verify}
    next: again
  verify:
    check: {input: entered, equals: code}
    on: {pass: good, fail: again}
  again:
    retry: {max: 2, prompt: {text: "다시 입력해 주세요"}, again: ask, exhausted: bad}
  good:
    finish: {outcome: success, result: {verified: true}}
  bad:
    finish: {outcome: failed, result: {reason: "{last_outcome}"}}
  gone:
    finish: {outcome: abandoned}
"""


async def run(text: str, media: MediaLibrary, params: dict[str, object], cues: list[str],
              hangup_at: float | None = None, tmp: Path | None = None):
    scenario = load_scenario_text(textwrap.dedent(text))
    channel = SimulatedChannel(KeyScript.parse(cues, hangup_at), recordings_dir=tmp)
    result = await Interpreter(scenario, media).run(channel, params, call_id="t1")
    return result, channel


async def test_type_c_right_code_succeeds(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["1234"])
    assert result.outcome == "success"
    assert result.result == {"verified": True}
    assert [e.detail["passed"] for e in result.timeline if e.kind == "check"] == [True]


async def test_type_c_wrong_code_retries_then_fails(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["1111", "2222", "3333"])
    assert result.outcome == "failed"
    assert result.result == {"reason": "exhausted"}
    assert [e.detail["passed"] for e in result.timeline if e.kind == "check"] == [False] * 3
    retries = [e.detail for e in result.timeline if e.kind == "retry"]
    assert retries[-1].get("exhausted") is True and len(retries) == 3


async def test_type_c_wrong_then_right_code_succeeds(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["9999", "1234"])
    assert result.outcome == "success"


async def test_silence_times_out_at_the_first_digit_timeout(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["", "", ""])
    assert result.outcome == "failed"
    ends = [e.detail["end"] for e in result.timeline if e.kind == "gather_ended"]
    assert ends == ["first_digit_timeout"] * 3
    prompt_end = next(e.t_ms for e in result.timeline if e.kind == "prompt_ended")
    gather_end = next(e.t_ms for e in result.timeline if e.kind == "gather_ended")
    assert gather_end - prompt_end == 5000


async def test_finish_key_ends_input_early_as_incomplete(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["12#", "1234"])
    ends = [e.detail["end"] for e in result.timeline if e.kind == "gather_ended"]
    assert ends == ["finish_key", "max_digits"]
    assert result.outcome == "success"


async def test_barge_in_key_stops_the_prompt_and_counts(tone_media: MediaLibrary) -> None:
    # The first key arrives 0.5 s into the gather prompt: the prompt stops there and the four
    # keys typed from then on make the code.
    result, _ = await run(TYPE_C, tone_media, {"code": "1234"}, ["@0.5=1234"])
    ended = next(e for e in result.timeline if e.kind == "prompt_ended")
    assert ended.detail == {"played_ms": 500, "interrupted": True}
    assert result.outcome == "success"


async def test_keys_during_a_prompt_without_barge_in_are_discarded(
        tone_media: MediaLibrary) -> None:
    text = TYPE_C.replace("secret: true", "secret: true\n      barge_in: false")
    result, _ = await run(text, tone_media, {"code": "1234"}, ["@0.2=1234", "1234"])
    ended = next(e for e in result.timeline if e.kind == "prompt_ended")
    assert ended.detail["interrupted"] is False
    # The keys typed over the prompt were dropped; the scripted gather keys then succeeded.
    assert [e.detail["passed"] for e in result.timeline if e.kind == "check"] == [True]


async def test_secret_keys_are_masked_in_timeline_and_result(tone_media: MediaLibrary) -> None:
    result, _ = await run(TYPE_C, tone_media, {"code": "9182"}, ["9182"])
    keys = [e.detail["key"] for e in result.timeline if e.kind == "key"]
    assert keys == ["*"] * 4
    assert "9182" not in result.to_json()


async def test_callee_hangup_goes_to_on_hangup_step(tone_media: MediaLibrary) -> None:
    result, channel = await run(TYPE_C, tone_media, {"code": "1234"}, ["12"], hangup_at=0.3)
    assert result.outcome == "abandoned"
    assert any(e.kind == "hangup" and e.detail["by"] == "callee" for e in result.timeline)
    assert not channel.is_up


async def test_callee_hangup_without_handler_is_callee_hangup(tone_media: MediaLibrary) -> None:
    text = TYPE_C.replace("on_hangup: gone\n", "").replace(
        "  gone:\n    finish: {outcome: abandoned}\n", "")
    result, _ = await run(text, tone_media, {"code": "1234"}, [], hangup_at=2.0)
    assert result.outcome == "callee_hangup"
    assert result.duration_ms == 2000


async def test_step_bound_stops_a_long_retry_loop(tone_media: MediaLibrary) -> None:
    text = TYPE_C.replace("max: 2", "max: 100").replace("max_steps: 50", "max_steps: 10")
    result, _ = await run(text, tone_media, {"code": "1234"}, ["1111"] * 100)
    assert result.outcome == "limit_exceeded"
    assert result.result == {"limit": "max_steps"}
    assert result.steps == 10


async def test_time_bound_stops_a_slow_call(tone_media: MediaLibrary) -> None:
    text = TYPE_C.replace("max: 2", "max: 100").replace("max_seconds: 120", "max_seconds: 30")
    result, _ = await run(text, tone_media, {"code": "1234"}, [])
    assert result.outcome == "limit_exceeded"
    assert result.duration_ms <= 30_000


async def test_missing_parameter_is_refused_before_the_call(tone_media: MediaLibrary) -> None:
    with pytest.raises(ParameterError, match="'code' is required"):
        await run(TYPE_C, tone_media, {}, [])


async def test_malformed_secret_parameter_error_does_not_echo_it(
        tone_media: MediaLibrary) -> None:
    with pytest.raises(ParameterError) as info:
        await run(TYPE_C, tone_media, {"code": "12a4x"}, [])
    assert "12a4x" not in str(info.value)


async def test_unknown_parameter_is_refused(tone_media: MediaLibrary) -> None:
    with pytest.raises(ParameterError, match="unknown parameter"):
        await run(TYPE_C, tone_media, {"code": "1234", "cdoe": "1"}, [])


MENU = """
scenario: menu
params:
  callback: {type: text, default: "https://core.example/hook"}
defaults:
  gather: {first_digit_timeout: 4, inter_digit_timeout: 2}
steps:
  rec:
    record: {action: start, name: consent}
    next: ask
  ask:
    gather: {prompt: {text: "동의하시면 1번, 아니면 2번"}, digits: 1, into: choice}
    on: {ok: route}
    next: again
  route:
    branch: {var: choice, cases: {"1": agree, "2": refuse}, default: again}
  again:
    retry: {max: 1, again: ask, exhausted: timeout}
  agree:
    set: {answer: "agreed-{choice}"}
    next: stop_yes
  stop_yes:
    record: stop
    next: done_yes
  done_yes:
    finish: {outcome: success, result: {answer: "{answer}"}}
  refuse:
    hangup: {outcome: refused}
  timeout:
    finish: {outcome: timeout}
"""


async def test_menu_branch_set_and_recording(tone_media: MediaLibrary, tmp_path: Path) -> None:
    result, _ = await run(MENU, tone_media, {}, ["1"], tmp=tmp_path)
    assert result.outcome == "success"
    assert result.result == {"answer": "agreed-1"}
    kinds = [e.kind for e in result.timeline]
    assert kinds.index("recording_started") < kinds.index("key") < kinds.index(
        "recording_stopped")
    assert [e.detail["key"] for e in result.timeline if e.kind == "key"] == ["1"]
    (recording,) = result.recordings
    assert Path(recording).is_file() and Path(recording).stat().st_size > 44


async def test_menu_refusal_hangs_up_and_stops_the_recording(
        tone_media: MediaLibrary, tmp_path: Path) -> None:
    result, channel = await run(MENU, tone_media, {}, ["2"], tmp=tmp_path)
    assert result.outcome == "refused"
    assert not channel.is_up
    assert result.recordings, "a recording still running at the end is stopped and kept"


async def test_menu_invalid_key_then_silence_is_timeout(tone_media: MediaLibrary) -> None:
    result, _ = await run(MENU, tone_media, {}, ["7", ""])
    assert result.outcome == "timeout"


async def test_media_failure_becomes_outcome_error_not_a_crash(
        tone_media: MediaLibrary, tmp_path: Path) -> None:
    wav = tmp_path / "gone.wav"
    wav.write_bytes(b"RIFF....not really a wav")
    text = f"""
scenario: broken
steps:
  a:
    play: {{file: "{wav}"}}
    next: b
  b:
    finish: {{outcome: success}}
"""
    scenario = load_scenario_text(text, base_dir=tmp_path)
    channel = SimulatedChannel()
    result = await Interpreter(scenario, tone_media).run(channel, {})
    assert result.outcome == "error"
    assert result.error
    assert not channel.is_up, "the engine hangs up after an error"
