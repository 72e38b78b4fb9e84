"""The prompt-end detector: sound then 400 ms of near-silence is one end; pauses, clicks not."""

from __future__ import annotations

import math
import struct

from ars_engine.media.vad import PromptEndDetector


def tone(ms: int, dbfs: float = -20.0) -> bytes:
    amplitude = 32768 * 10 ** (dbfs / 20) * math.sqrt(2)
    return b"".join(struct.pack("<h", int(amplitude * math.sin(2 * math.pi * 440 * i / 8000)))
                    for i in range(8 * ms))


def silence(ms: int) -> bytes:
    return bytes(16 * ms)


def test_sound_then_400_ms_of_silence_is_one_prompt_end_at_the_end_of_the_silence() -> None:
    vad = PromptEndDetector()
    assert vad.feed(tone(1000)) == []
    assert vad.feed(silence(380)) == []
    ends = vad.feed(silence(20))
    assert [(e.at_ms, e.sound_ms) for e in ends] == [(1400, 1000)]
    assert vad.feed(silence(2000)) == []  # reported once


def test_pauses_between_words_do_not_end_a_prompt() -> None:
    vad = PromptEndDetector()
    audio = tone(400) + silence(300) + tone(400) + silence(399)
    assert vad.feed(audio) == []
    assert len(vad.feed(silence(20))) == 1


def test_a_click_shorter_than_300_ms_is_forgotten() -> None:
    vad = PromptEndDetector()
    assert vad.feed(tone(200) + silence(500) + tone(200) + silence(500)) == []
    assert vad.ends == 0


def test_quiet_audio_below_minus_45_dbfs_counts_as_silence() -> None:
    vad = PromptEndDetector()
    assert vad.feed(tone(1000, dbfs=-50.0) + silence(500)) == []


def test_audio_fed_in_odd_slices_gives_the_same_result() -> None:
    audio = tone(600) + silence(500) + tone(700) + silence(450)
    vad = PromptEndDetector()
    ends = [e for i in range(0, len(audio), 333) for e in vad.feed(audio[i:i + 333])]
    whole = PromptEndDetector().feed(audio)
    assert ends == whole and len(whole) == 2
