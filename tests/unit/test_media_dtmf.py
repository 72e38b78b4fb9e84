"""In-band DTMF (ars_engine.media.dtmf): the tone generator, and the Goertzel detector fed with
generated keys, twisted, quiet, μ-law coded, chopped anyhow, and with speech, tones and noise
that must not be taken for keys."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ars_engine.media import dtmf
from ars_engine.media.audio import normalize_loudness, peak_dbfs, rms_dbfs, ulaw_decode, ulaw_encode
from ars_engine.media.clip import BYTES_PER_MS, SAMPLE_RATE
from ars_engine.media.dtmf import (
    BLOCK_SAMPLES,
    DTMF_FREQUENCIES,
    DtmfEvent,
    GoertzelDetector,
    block_powers,
    tone,
)

ALL_KEYS = "1234567890*#ABCD"
LEAD_MS, TONE_MS, GAP_MS = 50, 70, 50


def silence(ms: int) -> bytes:
    return bytes(ms * BYTES_PER_MS)


def detect(pcm: bytes) -> list[DtmfEvent]:
    return GoertzelDetector().feed(pcm)


def key_sequence(keys: str, level_dbfs: float = -10.0) -> bytes:
    """50 ms of silence, then each key as a 70 ms tone followed by 50 ms of silence."""
    return silence(LEAD_MS) + b"".join(tone(k, TONE_MS, level_dbfs) + silence(GAP_MS)
                                       for k in keys)


def expected_starts(keys: str) -> list[int]:
    return [LEAD_MS + i * (TONE_MS + GAP_MS) for i in range(len(keys))]


SEQUENCE = key_sequence(ALL_KEYS)


def pcm_of(x: np.ndarray) -> bytes:
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def twisted_tone(key: str, ms: int, twist_db: float, level_dbfs: float = -10.0) -> bytes:
    """A dual tone whose high-group frequency is ``twist_db`` weaker than the low one (negative:
    stronger), without ramps."""
    low, high = DTMF_FREQUENCIES[key]
    t = np.arange(ms * SAMPLE_RATE // 1000) / SAMPLE_RATE
    a = 32768 * 10 ** (level_dbfs / 20) / 2
    return pcm_of(a * np.sin(2 * np.pi * low * t)
                  + a * 10 ** (-twist_db / 20) * np.sin(2 * np.pi * high * t))


def speech_like(seconds: float, seed: int) -> bytes:
    """Voiced-speech stand-in at -20 dBFS: harmonics of a wandering pitch (90-255 Hz) shaped by
    three formants, syllable-rate amplitude modulation, and a little breath noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = 170 + 60 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) \
        + 25 * np.sin(2 * np.pi * 3.1 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    formants = rng.uniform([350, 900, 2200], [800, 1800, 2900])
    x = np.zeros(n)
    for h in range(1, 30):
        gain = sum(np.exp(-((h * f0 - f) / 200) ** 2) for f in formants) + 0.05
        x += gain / math.sqrt(h) * np.sin(h * phase)
    x *= np.clip(np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6)), 0, None) ** 0.5
    x += rng.normal(0, 0.05 * x.std(), n)
    return normalize_loudness(pcm_of(x / np.abs(x).max() * 20000), -20.0)


# -- tone generator --------------------------------------------------------------------------------
def test_frequencies_are_the_q23_keypad() -> None:
    assert len(DTMF_FREQUENCIES) == 16 and set(DTMF_FREQUENCIES) == set(ALL_KEYS)
    assert DTMF_FREQUENCIES["1"] == (697, 1209)
    assert DTMF_FREQUENCIES["5"] == (770, 1336)
    assert DTMF_FREQUENCIES["9"] == (852, 1477)
    assert DTMF_FREQUENCIES["*"] == (941, 1209)
    assert DTMF_FREQUENCIES["0"] == (941, 1336)
    assert DTMF_FREQUENCIES["#"] == (941, 1477)
    assert DTMF_FREQUENCIES["D"] == (941, 1633)


@pytest.mark.parametrize("key", list(ALL_KEYS))
def test_tone_holds_its_two_frequencies_only(key: str) -> None:
    pcm = tone(key, 100)
    assert len(pcm) == 100 * BYTES_PER_MS
    spectrum = np.abs(np.fft.rfft(np.frombuffer(pcm, "<i2").astype(float)))
    freqs = np.fft.rfftfreq(800, 1 / SAMPLE_RATE)
    top_two = sorted(freqs[np.argsort(spectrum)[-2:]])
    # 100 ms gives 10 Hz bins: the two strongest are the bins of the key's frequencies.
    assert all(abs(got - want) <= 5 for got, want in zip(top_two, DTMF_FREQUENCIES[key],
                                                         strict=True))


def test_tone_peaks_at_its_level_and_ramps_in_and_out() -> None:
    pcm = tone("5", 200, level_dbfs=-10.0)
    assert -10.5 < peak_dbfs(pcm) <= -10.0
    assert rms_dbfs(pcm) == pytest.approx(-16.0, abs=0.5)  # two equal sines, each 6 dB down
    x = np.frombuffer(pcm, "<i2")
    assert abs(int(x[0])) <= 1 and abs(int(x[-1])) <= 200  # no click at either end
    assert peak_dbfs(tone("D", 100, level_dbfs=0.0)) <= 0.0  # full level does not clip


def test_tone_lengths() -> None:
    assert tone("1", 0) == b""
    assert len(tone("1", 3)) == 3 * BYTES_PER_MS  # shorter than the two ramps
    with pytest.raises(ValueError):
        tone("1", -1)


@pytest.mark.parametrize("bad", ["Z", "99", "", "a", "#1", "x7"])
def test_tone_refuses_a_non_key_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        tone(bad)
    assert str(caught.value) == "not a DTMF key"


def test_event_repr_masks_the_key() -> None:
    event = DtmfEvent("7", 1200)
    assert repr(event) == "DtmfEvent(*, 1200 ms)" == str(event)
    assert "7" not in repr([event]).replace("1200", "")


# -- Goertzel powers -------------------------------------------------------------------------------
def goertzel(block: np.ndarray, freq: float) -> float:
    """The textbook Goertzel recurrence (float, per sample), as the reference."""
    coeff = 2 * math.cos(2 * math.pi * freq / SAMPLE_RATE)
    s1 = s2 = 0.0
    for sample in block:
        s1, s2 = sample / 32768 + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def test_block_powers_equal_the_goertzel_recurrence() -> None:
    rng = np.random.default_rng(7)
    blocks = np.vstack([np.frombuffer(tone("6", 20)[:BLOCK_SAMPLES * 2], "<i2"),
                        rng.integers(-32768, 32768, BLOCK_SAMPLES)]).astype(np.int16)
    powers = block_powers(blocks)
    freqs = dtmf.LOW_GROUP + dtmf.HIGH_GROUP
    for row, block in zip(powers, blocks, strict=True):
        assert row == pytest.approx([goertzel(block, f) for f in freqs], rel=1e-9, abs=1e-9)


# -- detection -------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(ALL_KEYS))
def test_every_key_is_detected_exactly_once(key: str) -> None:
    events = detect(key_sequence(key))
    assert [e.key for e in events] == [key]
    assert abs(events[0].start_ms - LEAD_MS) <= 15


def test_a_sequence_of_all_keys_is_decoded_in_order_on_time() -> None:
    events = detect(SEQUENCE)
    assert "".join(e.key for e in events) == ALL_KEYS
    for event, start in zip(events, expected_starts(ALL_KEYS), strict=True):
        assert abs(event.start_ms - start) <= 15


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=1, max_value=800), min_size=1, max_size=40))
def test_chunk_sizes_do_not_change_the_events(sizes: list[int]) -> None:
    detector = GoertzelDetector()
    events: list[DtmfEvent] = []
    pos = i = 0
    while pos < len(SEQUENCE):
        size = sizes[i % len(sizes)]
        events += detector.feed(SEQUENCE[pos:pos + size])
        pos, i = pos + size, i + 1
    assert events == detect(SEQUENCE)


def test_one_byte_at_a_time_gives_the_same_events() -> None:
    pcm = key_sequence("9#")
    detector = GoertzelDetector()
    events = [e for i in range(len(pcm)) for e in detector.feed(pcm[i:i + 1])]
    assert events == detect(pcm) and [e.key for e in events] == ["9", "#"]
    assert detector.time_ms == pytest.approx(len(pcm) // 2 // BLOCK_SAMPLES * BLOCK_SAMPLES / 8)


def test_time_runs_from_the_first_sample_fed_across_calls() -> None:
    detector = GoertzelDetector()
    assert detector.feed(silence(1000)) == []
    (event,) = detector.feed(key_sequence("3"))
    assert abs(event.start_ms - (1000 + LEAD_MS)) <= 15


def test_a_key_held_500_ms_is_one_event() -> None:
    assert [e.key for e in detect(silence(30) + tone("8", 500) + silence(100))] == ["8"]


def test_the_same_key_twice_after_a_pause_is_two_events() -> None:
    pcm = tone("2", 70) + silence(40) + tone("2", 70) + silence(40)
    assert [e.key for e in detect(pcm)] == ["2", "2"]


def test_one_bad_block_inside_a_press_does_not_split_it() -> None:
    # One block's worth of the tone lost (a concealed packet), aligned to a block: one block
    # fails, the press goes on. Two failing blocks end it.
    x = np.frombuffer(tone("4", 400) + silence(50), "<i2").copy()
    x[10 * BLOCK_SAMPLES:11 * BLOCK_SAMPLES] = 0
    assert [e.key for e in detect(x.tobytes())] == ["4"]
    x[11 * BLOCK_SAMPLES:12 * BLOCK_SAMPLES] = 0
    assert [e.key for e in detect(x.tobytes())] == ["4", "4"]


def test_a_key_changing_without_a_pause_is_two_events() -> None:
    assert [e.key for e in detect(tone("1", 100) + tone("6", 100) + silence(50))] == ["1", "6"]


@pytest.mark.parametrize("offset", range(0, BLOCK_SAMPLES, 17))
def test_a_40_ms_tone_is_detected_and_a_20_ms_tone_is_not(offset: int) -> None:
    # Q.24 (Bellcore): accept ≥ 40 ms, reject ≤ 23 ms; whatever the alignment to the blocks.
    lead = bytes(offset * 2)
    for key in ALL_KEYS:
        assert [e.key for e in detect(lead + tone(key, 40) + silence(60))] == [key]
        assert detect(lead + tone(key, 20) + silence(60)) == []


@pytest.mark.parametrize("twist_db", [6.0, -3.0])
def test_twisted_tones_within_the_limits_are_detected(twist_db: float) -> None:
    # +6 dB: high group 6 dB weaker (normal twist, limit 8 dB); -3 dB: stronger (reverse, 4 dB).
    for key in ALL_KEYS:
        pcm = twisted_tone(key, 70, twist_db) + silence(50)
        assert [e.key for e in detect(pcm)] == [key]


@pytest.mark.parametrize("twist_db", [10.0, -6.0])
def test_twist_beyond_the_limits_is_refused(twist_db: float) -> None:
    for key in ALL_KEYS:
        assert detect(twisted_tone(key, 70, twist_db) + silence(50)) == []


def test_quiet_keys_at_minus_30_dbfs_are_detected() -> None:
    events = detect(key_sequence(ALL_KEYS, level_dbfs=-30.0))
    assert "".join(e.key for e in events) == ALL_KEYS


def test_keys_at_minus_50_dbfs_are_below_the_threshold() -> None:
    assert detect(key_sequence(ALL_KEYS, level_dbfs=-50.0)) == []


@pytest.mark.parametrize("level", [-10.0, -30.0])
def test_keys_survive_a_g711_ulaw_round_trip(level: float) -> None:
    coded = ulaw_decode(ulaw_encode(key_sequence(ALL_KEYS, level)))
    events = detect(coded)
    assert "".join(e.key for e in events) == ALL_KEYS
    for event, start in zip(events, expected_starts(ALL_KEYS), strict=True):
        assert abs(event.start_ms - start) <= 15


# -- things that are not keys ----------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(8))
def test_speech_like_audio_gives_no_events(seed: int) -> None:
    pcm = speech_like(10.0, seed)
    assert rms_dbfs(pcm) == pytest.approx(-20.0, abs=0.1)
    assert detect(pcm) == []


def test_a_pure_1_khz_tone_gives_no_events() -> None:
    t = np.arange(5 * SAMPLE_RATE) / SAMPLE_RATE
    pcm = pcm_of(32768 * 10 ** (-17 / 20) * np.sin(2 * np.pi * 1000 * t))
    assert rms_dbfs(pcm) == pytest.approx(-20.0, abs=0.1)
    assert detect(pcm) == []


def test_white_noise_gives_no_events() -> None:
    rng = np.random.default_rng(3)
    pcm = pcm_of(rng.normal(0, 32768 * 10 ** (-20 / 20), 10 * SAMPLE_RATE))
    assert rms_dbfs(pcm) == pytest.approx(-20.0, abs=0.1)
    assert detect(pcm) == []


def test_keys_are_still_found_among_speech() -> None:
    # Keys pressed while a prompt plays (barge-in): speech at -20 dBFS, keys at -10 dBFS.
    keys = "159#"
    x = np.frombuffer(speech_like(len(keys) * 0.12 + 0.05, 11), "<i2").astype(np.int32)
    y = np.frombuffer(key_sequence(keys), "<i2").astype(np.int32)
    n = min(len(x), len(y))
    mixed = np.clip(x[:n] + y[:n], -32768, 32767).astype("<i2").tobytes()
    assert "".join(e.key for e in detect(mixed)) == keys


# -- robustness ------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=700), max_size=12))
def test_arbitrary_bytes_never_raise(chunks: list[bytes]) -> None:
    detector = GoertzelDetector()
    for chunk in chunks:
        events = detector.feed(chunk)
        assert isinstance(events, list)
        assert all(isinstance(e, DtmfEvent) and e.key in DTMF_FREQUENCIES for e in events)


def test_full_scale_square_waves_and_silence_do_not_raise() -> None:
    square = np.tile(np.array([32767] * 4 + [-32768] * 4, dtype="<i2"), 2000).tobytes()
    assert detect(square) == [] and detect(silence(500)) == [] and detect(b"") == []
