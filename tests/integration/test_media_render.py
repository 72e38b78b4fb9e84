"""Real rendering: espeak-ng, sox and ffmpeg turn Korean text and odd WAVs into 8 kHz slin."""

from __future__ import annotations

import logging
import math
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from ars_engine.errors import TtsError
from ars_engine.media import audio
from ars_engine.media.audio import convert_to_slin, peak_dbfs, read_wav, rms_dbfs
from ars_engine.media.catalogue import Catalogue
from ars_engine.media.library import MediaLibrary
from ars_engine.media.speech import CLIP_TEXT
from ars_engine.media.tts import EspeakNg, FallbackTts

_MISSING = [tool for tool in ("espeak-ng", "ffmpeg") if shutil.which(tool) is None]
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(_MISSING), reason=f"needs {' and '.join(_MISSING)} (apt-get install espeak-ng ffmpeg)"
    ),
]

SENTENCE = "안녕하세요. 인증번호를 입력해 주세요."


class RaisingTts:
    name = "gTTS"
    cache_tag = "gtts/ko/com/v1"

    def synthesize(self, text: str) -> bytes:
        raise TtsError("HTTP 429 from translate.google.com")


class CountingTts:
    """Wraps a real engine and counts calls."""

    def __init__(self, engine: EspeakNg) -> None:
        self.engine = engine
        self.name = engine.name
        self.cache_tag = engine.cache_tag
        self.calls = 0

    def synthesize(self, text: str) -> bytes:
        self.calls += 1
        return self.engine.synthesize(text)


def dominant_hz(pcm: bytes, rate: int = 8000) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spectrum)) * rate / x.size


def write_44k_stereo(path: Path, ms: int, freq: float) -> None:
    t = np.arange(44100 * ms // 1000) / 44100
    mono = np.rint(8000 * np.sin(2 * math.pi * freq * t)).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.column_stack([mono, mono]).tobytes())


@pytest.fixture
def library_parts(tmp_path: Path) -> tuple[Catalogue, Catalogue]:
    return Catalogue.from_mapping({"intro": SENTENCE}), Catalogue.from_mapping(CLIP_TEXT)


def test_espeak_ng_speaks_korean_at_8k_with_the_same_duration() -> None:
    pcm = EspeakNg().synthesize(SENTENCE)
    raw = subprocess.run(
        ["espeak-ng", "-v", "ko", "-s", "150", "-b", "1", "--stdin", "--stdout"],
        input=SENTENCE.encode(),
        capture_output=True,
        check=True,
    ).stdout
    native_ms = (len(raw) - 44) / 2 / 22050 * 1000
    ours_ms = len(pcm) / 16
    assert ours_ms > 300
    assert abs(ours_ms - native_ms) < 5  # resampled, not sped up or slowed down
    assert rms_dbfs(pcm) > -40


def test_library_renders_a_korean_prompt_to_8k_mono_at_target_level(tmp_path, library_parts):
    catalogue, clips = library_parts
    engine = CountingTts(EspeakNg())
    lib = MediaLibrary(catalogue, clips, engine, tmp_path / "cache", tmp_path / "rec")
    clip = lib.prompt("intro")
    assert clip.duration_ms > 300
    # Speech has a high crest factor: the -1 dBFS peak cap may hold it a little under -20.
    assert -22.0 <= rms_dbfs(clip.pcm) <= -19.5
    assert peak_dbfs(clip.pcm) <= -0.99
    (cached,) = (tmp_path / "cache").iterdir()
    with wave.open(str(cached)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        assert w.readframes(w.getnframes()) == clip.pcm

    again = CountingTts(EspeakNg())
    MediaLibrary(catalogue, clips, again, tmp_path / "cache", tmp_path / "rec").prompt("intro")
    assert engine.calls == 1 and again.calls == 0


def test_fallback_tts_uses_espeak_when_the_primary_fails_and_warns(
    tmp_path, library_parts, caplog
) -> None:
    catalogue, clips = library_parts
    engine = FallbackTts(RaisingTts(), EspeakNg())
    lib = MediaLibrary(catalogue, clips, engine, tmp_path / "cache", tmp_path / "rec")
    with caplog.at_level(logging.WARNING):
        clip = lib.prompt("intro")
    assert clip.duration_ms > 300
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == [
        "gTTS failed (HTTP 429 from translate.google.com); falling back to espeak-ng"
    ]
    assert engine.cache_tag == EspeakNg().cache_tag
    plain = CountingTts(EspeakNg())  # the fallback audio is filed under espeak-ng's key
    assert (
        MediaLibrary(catalogue, clips, plain, tmp_path / "cache", tmp_path / "rec").prompt("intro")
        == clip
    )
    assert plain.calls == 0


def test_recorded_44k_stereo_wav_overrides_tts_and_comes_out_8k_mono(tmp_path, library_parts):
    catalogue, clips = library_parts
    (tmp_path / "rec").mkdir()
    write_44k_stereo(tmp_path / "rec" / "intro.wav", 1000, 440.0)
    engine = CountingTts(EspeakNg())
    clip = MediaLibrary(catalogue, clips, engine, tmp_path / "cache", tmp_path / "rec").prompt(
        "intro"
    )
    assert engine.calls == 0
    assert 995 <= clip.duration_ms <= 1005  # 1 s at 8 kHz: resampled and down-mixed
    assert abs(dominant_hz(clip.pcm) - 440.0) < 3
    assert abs(rms_dbfs(clip.pcm) - -20.0) < 0.5


def test_read_wav_converts_44k_stereo_with_sox_or_ffmpeg(tmp_path, monkeypatch) -> None:
    write_44k_stereo(tmp_path / "a.wav", 500, 1000.0)
    with_default = read_wav(tmp_path / "a.wav")
    monkeypatch.setattr(audio, "_sox_available", lambda: False)
    with_ffmpeg = audio.wav_bytes_to_slin((tmp_path / "a.wav").read_bytes())
    for pcm in (with_default, with_ffmpeg):
        assert abs(len(pcm) / 16 - 500) <= 1
        assert abs(dominant_hz(pcm) - 1000.0) < 5


def test_convert_to_slin_reads_mp3(tmp_path) -> None:
    mp3 = tmp_path / "a.mp3"
    made = subprocess.run(
        [
            "ffmpeg",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=600:duration=0.5",
            "-ar",
            "22050",
            str(mp3),
        ],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("this ffmpeg has no mp3 encoder")
    for source in (mp3, mp3.read_bytes()):
        pcm = convert_to_slin(source)
        assert 480 <= len(pcm) / 16 <= 560  # mp3 adds encoder padding
        assert abs(dominant_hz(pcm) - 600.0) < 5


def test_digits_and_amount_from_real_clips(tmp_path, library_parts) -> None:
    catalogue, clips = library_parts
    lib = MediaLibrary(catalogue, clips, EspeakNg(), tmp_path / "cache", tmp_path / "rec")
    report = lib.render_all()
    assert report.ok, report.failed
    digits = lib.digits("1204")
    assert len(digits) == 7 and all(c.duration_ms > 100 for c in digits[::2])
    assert sum(c.duration_ms for c in lib.amount(12300)) > 1000
