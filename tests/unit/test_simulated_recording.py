"""Recordings of the simulated channel: the engine on the right channel, and on the left the DTMF
tones of the keys the callee pressed while the recording ran, where they pressed them."""

from __future__ import annotations

import logging
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest

from ars_engine.media.audio import rms_dbfs
from ars_engine.media.clip import SAMPLE_RATE
from ars_engine.media.dtmf import DtmfEvent, GoertzelDetector
from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.scenario.timeline import CallResult
from ars_engine.telephony.simulated import KEY_TONE_MS, KeyScript, SimulatedChannel, key_tones

RECORDED_GATHER = """
scenario: recorded_keys
defaults:
  gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
steps:
  before:
    gather: {prompt: {text: "녹음 전입니다"}, digits: 1, into: early}
    on: {ok: rec}
    next: rec
  rec:
    record: {action: start, name: keys}
    next: ask
  ask:
    gather: {prompt: {text: "번호를 눌러 주세요"}, digits: DIGITS, into: choice, secret: true}
    on: {ok: stop}
    next: stop
  stop:
    record: stop
    next: after
  after:
    gather: {prompt: {text: "녹음 후입니다"}, digits: 1, into: late}
    on: {ok: done}
    next: done
  done:
    finish: {outcome: success}
"""
TONE_SAMPLES = KEY_TONE_MS * SAMPLE_RATE // 1000


async def run_recorded(media: MediaLibrary, tmp_path: Path, keys: str
                       ) -> tuple[CallResult, SimulatedChannel]:
    # "5" before the recording starts and "6" after it stopped must not be in it.
    scenario = load_scenario_text(textwrap.dedent(RECORDED_GATHER).replace(
        "DIGITS", str(len(keys))))
    channel = SimulatedChannel(KeyScript.parse(["5", keys, "6"]), recordings_dir=tmp_path)
    result = await Interpreter(scenario, media).run(channel, {}, call_id="rec1")
    assert result.outcome == "success"
    return result, channel


def read_stereo(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, SAMPLE_RATE)
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return frames[:, 0].copy(), frames[:, 1].copy()


def key_offsets_ms(result: CallResult) -> list[int]:
    """Times of the recorded gather's keys, from the start of the recording."""
    start = next(e.t_ms for e in result.timeline if e.kind == "recording_started")
    return [e.t_ms - start for e in result.timeline if e.kind == "key" and e.step == "ask"]


@pytest.mark.parametrize("keys", ["1", "47", "9*#"])
async def test_callee_channel_holds_the_tone_of_each_pressed_key(
        tone_media: MediaLibrary, tmp_path: Path, keys: str) -> None:
    result, _ = await run_recorded(tone_media, tmp_path, keys)
    (recording,) = result.recordings
    left, right = read_stereo(Path(recording))

    events = GoertzelDetector().feed(left.tobytes())
    assert "".join(e.key for e in events) == keys  # not "5" (before) nor "6" (after)
    offsets = key_offsets_ms(result)
    assert len(offsets) == len(keys)
    for event, offset in zip(events, offsets, strict=True):
        assert abs(event.start_ms - offset) <= 15

    # Nothing on the callee's channel but the key tones.
    outside = np.ones(len(left), dtype=bool)
    for offset in offsets:
        first = offset * SAMPLE_RATE // 1000
        outside[max(first - 8, 0): first + TONE_SAMPLES + 8] = False
    assert not left[outside].any()
    # The engine's channel holds the prompt.
    assert rms_dbfs(right.tobytes()) > -40.0


async def test_last_key_tone_is_whole_when_the_recording_stops_at_once(
        tone_media: MediaLibrary, tmp_path: Path) -> None:
    # The gather ends on its last key and the recording stops in the same instant: the recording
    # runs on until that key's tone ends.
    result, _ = await run_recorded(tone_media, tmp_path, "3")
    left, _ = read_stereo(Path(result.recordings[0]))
    (offset,) = key_offsets_ms(result)
    assert len(left) >= offset * SAMPLE_RATE // 1000 + TONE_SAMPLES
    stopped = next(e for e in result.timeline if e.kind == "recording_stopped")
    assert stopped.detail["duration_ms"] == len(left) * 1000 // SAMPLE_RATE


async def test_heard_audio_has_no_key_tones(tone_media: MediaLibrary, tmp_path: Path) -> None:
    # heard_pcm() is what the callee heard: the prompts, not their own keys.
    _, channel = await run_recorded(tone_media, tmp_path, "47")
    assert GoertzelDetector().feed(channel.heard_pcm()) == []


async def test_recorded_secret_keys_stay_out_of_file_names_and_logs(
        tone_media: MediaLibrary, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    result, _ = await run_recorded(tone_media, tmp_path, "9182")
    assert Path(result.recordings[0]).name == "rec1-keys.wav"
    assert not [p for p in tmp_path.rglob("*") if "9182" in p.name]
    assert "9182" not in caplog.text and "9182" not in result.to_json()
    events = GoertzelDetector().feed(read_stereo(Path(result.recordings[0]))[0].tobytes())
    assert "9182" not in repr(events) and all(isinstance(e, DtmfEvent) for e in events)


def test_key_tones_place_mix_and_extend() -> None:
    assert key_tones([], 1600) == bytes(1600)
    pcm = key_tones([(0.010, "1"), (0.500, "2")], 1600)
    x = np.frombuffer(pcm, "<i2")
    assert len(x) == 4000 + TONE_SAMPLES  # extended to the end of the last tone
    assert not x[:80].any() and x[80:80 + TONE_SAMPLES].any()
    assert not x[80 + TONE_SAMPLES:4000].any()
    assert [e.key for e in GoertzelDetector().feed(pcm + bytes(800))] == ["1", "2"]
    # Overlapping tones add up without wrapping round.
    loud = np.frombuffer(key_tones([(0.0, "1"), (0.0, "1"), (0.0, "1"), (0.0, "1")], 0), "<i2")
    assert int(np.abs(loud.astype(np.int32)).max()) <= 32768


async def test_a_recording_that_cannot_be_saved_ends_the_call_as_error_saying_why(
        tone_media: MediaLibrary, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    scenario = load_scenario_text(textwrap.dedent(RECORDED_GATHER).replace("DIGITS", "2"))
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the recordings' folder should be")
    channel = SimulatedChannel(KeyScript.parse(["5", "12", "6"]), recordings_dir=blocked)
    with caplog.at_level(logging.ERROR):
        result = await Interpreter(scenario, tone_media).run(channel, {}, call_id="rec2")
    assert (result.outcome, result.result) == ("error", {"error": "MediaError"})
    assert result.recordings == []
    failed = [e for e in result.timeline if e.kind == "recording_failed"]
    assert len(failed) == 1 and failed[0].detail["name"] == "rec2-keys"
    assert "could not be saved" in caplog.text and "crashed" not in caplog.text
