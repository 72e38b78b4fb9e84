"""G.711 tables, levels, trimming and WAV I/O of ars_engine.media.audio (no subprocesses)."""

from __future__ import annotations

import io
import math
import subprocess
import wave

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.errors import MediaError
from ars_engine.media import audio
from ars_engine.media.audio import (
    alaw_decode,
    alaw_encode,
    normalize_loudness,
    peak_dbfs,
    read_wav,
    rms_dbfs,
    silence,
    trim_silence,
    ulaw_decode,
    ulaw_encode,
    wav_bytes_to_slin,
    write_wav,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype="<i2")
CODECS = [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)]


def pcm_of(samples: list[int] | np.ndarray) -> bytes:
    return np.asarray(samples, dtype="<i2").tobytes()


def samples_of(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2")


def tone(ms: int, dbfs: float, freq: float = 440.0) -> bytes:
    """A sine whose RMS is ``dbfs`` (full-scale sine = -3.01 dBFS)."""
    t = np.arange(ms * 8) / 8000
    amplitude = 32768 * 10 ** (dbfs / 20) * math.sqrt(2)
    return pcm_of(np.rint(amplitude * np.sin(2 * math.pi * freq * t)))


# --- G.711 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),  # arithmetic shift: -1 is just below zero
        (8, 0xFE, 0xD5),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (1000, 0xCE, 0xFA),
        (-1000, 0x4E, 0x7A),
    ],
)
def test_g711_encodes_known_values(sample: int, ulaw: int, alaw: int) -> None:
    assert ulaw_encode(pcm_of([sample])) == bytes([ulaw])
    assert alaw_encode(pcm_of([sample])) == bytes([alaw])


@pytest.mark.parametrize(
    ("code", "value"), [(0xFF, 0), (0x7F, 0), (0xFE, 8), (0x80, 32124), (0x00, -32124)]
)
def test_ulaw_decodes_known_values(code: int, value: int) -> None:
    assert samples_of(ulaw_decode(bytes([code]))).tolist() == [value]


@pytest.mark.parametrize(("code", "value"), [(0xD5, 8), (0x55, -8), (0xAA, 32256), (0x2A, -32256)])
def test_alaw_decodes_known_values(code: int, value: int) -> None:
    # A-law has no zero level: the smallest magnitudes are +8 and -8.
    assert samples_of(alaw_decode(bytes([code]))).tolist() == [value]


def test_alaw_every_code_round_trips() -> None:
    codes = bytes(range(256))
    assert alaw_encode(alaw_decode(codes)) == codes


def test_ulaw_every_code_round_trips_except_negative_zero() -> None:
    codes = bytes(range(256))
    back = ulaw_encode(ulaw_decode(codes))
    assert [c for c in range(256) if back[c] != c] == [0x7F]  # -0 decodes to 0, encodes as +0
    assert back[0x7F] == 0xFF


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_g711_decode_of_encode_is_the_nearest_level_below_or_above(encode, decode) -> None:
    levels = np.unique(samples_of(decode(bytes(range(256)))).astype(np.int64))
    x = ALL_SAMPLES.astype(np.int64)
    y = samples_of(decode(encode(ALL_SAMPLES.tobytes()))).astype(np.int64)
    idx = np.searchsorted(levels, x)
    below = levels[np.clip(idx - 1, 0, levels.size - 1)]
    above = levels[np.clip(idx, 0, levels.size - 1)]
    assert np.all((y == below) | (y == above))
    assert np.all(np.diff(y) >= 0)  # quantisation is monotonic


@pytest.mark.parametrize(("encode", "decode"), CODECS)
def test_g711_relative_error_is_small_for_speech_levels(encode, decode) -> None:
    x = ALL_SAMPLES[np.abs(ALL_SAMPLES.astype(np.int32)) > 256].astype(np.float64)
    y = samples_of(decode(encode(pcm_of(x)))).astype(np.float64)
    assert np.max(np.abs(y - x) / np.abs(x)) < 0.07  # 4 bits of mantissa: under ~1/16


def test_g711_matches_cpython_audioop_exactly() -> None:
    audioop = pytest.importorskip("audioop")  # removed in Python 3.13
    pcm = ALL_SAMPLES.tobytes()
    codes = bytes(range(256))
    assert ulaw_encode(pcm) == audioop.lin2ulaw(pcm, 2)
    assert alaw_encode(pcm) == audioop.lin2alaw(pcm, 2)
    assert ulaw_decode(codes) == audioop.ulaw2lin(codes, 2)
    assert alaw_decode(codes) == audioop.alaw2lin(codes, 2)


@given(st.binary(max_size=2000))
def test_g711_coding_is_idempotent_and_one_byte_per_sample(pcm: bytes) -> None:
    for encode, decode in ((ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)):
        coded = encode(pcm)
        assert len(coded) == len(pcm) // 2
        once = decode(coded)
        assert len(once) == len(pcm) // 2 * 2
        assert decode(encode(once)) == once


# --- levels --------------------------------------------------------------------------------------


def test_rms_dbfs_of_known_signals() -> None:
    assert rms_dbfs(pcm_of([-32768, -32768])) == pytest.approx(0.0)
    assert rms_dbfs(tone(1000, -20.0)) == pytest.approx(-20.0, abs=0.05)
    assert rms_dbfs(silence(100)) == -math.inf
    assert rms_dbfs(b"") == -math.inf
    assert peak_dbfs(pcm_of([0, 16384])) == pytest.approx(-6.02, abs=0.01)


@pytest.mark.parametrize("level", [-45.0, -35.0, -20.0, -8.0])
@pytest.mark.parametrize("target", [-20.0, -26.0])
def test_normalize_loudness_hits_target_within_half_a_db(level: float, target: float) -> None:
    out = normalize_loudness(tone(800, level), target_dbfs=target)
    assert abs(rms_dbfs(out) - target) < 0.5
    assert len(out) == 800 * 16


def test_normalize_loudness_caps_peaks() -> None:
    clicks = np.zeros(8000, dtype=np.int64)
    clicks[::400] = 3000  # high crest factor: RMS target would clip the clicks
    out = normalize_loudness(pcm_of(clicks), target_dbfs=-20.0, peak_dbfs=-1.0)
    assert peak_dbfs(out) <= -1.0 + 0.01
    assert peak_dbfs(out) > -1.2
    assert rms_dbfs(out) < -20.0


def test_normalize_loudness_keeps_silence_silent() -> None:
    assert normalize_loudness(silence(500)) == silence(500)
    assert normalize_loudness(b"") == b""
    dither = pcm_of(np.tile([1, -1, 0, 1], 1000))  # about -90 dBFS: must not become -20 dBFS hiss
    assert normalize_loudness(dither) == dither


def test_trim_silence_keeps_speech_and_margins() -> None:
    pcm = silence(500) + tone(300, -20.0) + silence(400)
    out = trim_silence(pcm, threshold_dbfs=-45.0, keep_ms=30)
    assert 300 + 2 * 30 <= len(out) // 16 <= 300 + 2 * 30 + 10  # 10 ms analysis frames
    assert rms_dbfs(out[: 20 * 16]) == -math.inf  # the kept margin is the original silence


def test_trim_silence_ignores_quiet_noise_and_single_clicks() -> None:
    noise = pcm_of(np.full(4000, 20))  # about -64 dBFS, under the -45 dBFS threshold
    body = tone(200, -25.0)
    out = trim_silence(noise + body + noise, keep_ms=0)
    assert 200 <= len(out) // 16 <= 210
    click = pcm_of([0] * 800 + [1200] + [0] * 800)  # -29 dBFS sample, its 10 ms frame -48
    assert trim_silence(click) == b""


def test_trim_silence_of_silence_is_empty() -> None:
    assert trim_silence(silence(300)) == b""
    assert trim_silence(b"") == b""


def test_silence_is_zero_bytes_of_the_right_length() -> None:
    assert silence(150) == bytes(150 * 16)
    assert silence(0) == b""
    with pytest.raises(ValueError):
        silence(-1)


# --- WAV -----------------------------------------------------------------------------------------


def test_write_then_read_wav_round_trips_slin(tmp_path) -> None:
    pcm = tone(250, -20.0)
    path = tmp_path / "a.wav"
    write_wav(path, pcm)
    with wave.open(str(path)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
    assert read_wav(path) == pcm


def test_slin_wav_bytes_need_no_subprocess(monkeypatch, tmp_path) -> None:
    def no_subprocess(*args, **kwargs):
        raise AssertionError("no converter should run for a WAV that is already slin")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    pcm = tone(100, -20.0)
    write_wav(tmp_path / "a.wav", pcm)
    assert wav_bytes_to_slin((tmp_path / "a.wav").read_bytes()) == pcm


def test_streamed_wav_header_with_huge_length_reads_to_end() -> None:
    # espeak-ng --stdout cannot seek back, so it writes 0x7fffffff as the data length.
    pcm = tone(100, -20.0)
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
        + (8000).to_bytes(4, "little")
        + (16000).to_bytes(4, "little")
        + b"\x02\x00\x10\x00data\xff\xff\xff\x7f"
    )
    assert audio.slin_from_wav(io.BytesIO(header + pcm)) == pcm


def test_read_wav_of_missing_file_is_a_media_error(tmp_path) -> None:
    with pytest.raises(MediaError, match="no such audio file"):
        read_wav(tmp_path / "missing.wav")


def test_missing_converter_is_a_clear_media_error(monkeypatch) -> None:
    def missing(*args, **kwargs):
        raise FileNotFoundError("ffmpeg")

    monkeypatch.setattr(subprocess, "run", missing)
    with pytest.raises(MediaError, match="ffmpeg is not installed"):
        audio.convert_to_slin(b"ID3 not really an mp3")
