"""MediaLibrary with a fake TTS engine: caching, recorded overrides, digits, amounts, no secrets.

Also the TTS wrappers that need no real engine: FallbackTts, make_tts, argv/stdin of espeak-ng.
"""

from __future__ import annotations

import hashlib
import logging
import math
import subprocess
import sys
import time
import types
import wave
from pathlib import Path

import numpy as np
import pytest

from ars_engine.errors import MediaError, TtsError
from ars_engine.media import tts as tts_module
from ars_engine.media.audio import alaw_encode, rms_dbfs, ulaw_encode, write_wav
from ars_engine.media.catalogue import Catalogue, UnknownPrompt
from ars_engine.media.clip import Clip
from ars_engine.media.library import MediaLibrary
from ars_engine.media.speech import CLIP_IDS, CLIP_TEXT
from ars_engine.media.tts import EspeakNg, FallbackTts, GttsEngine, make_tts

REPO = Path(__file__).resolve().parents[2]
SECRET = "918273"


def tone(ms: int, freq: float, dbfs: float = -32.0) -> bytes:
    t = np.arange(ms * 8) / 8000
    amplitude = 32768 * 10 ** (dbfs / 20) * math.sqrt(2)
    return np.rint(amplitude * np.sin(2 * math.pi * freq * t)).astype("<i2").tobytes()


class FakeTts:
    """Counts calls; speaks a deterministic tone per text, with silence around it to trim."""

    def __init__(self, name: str = "fake", tag: str = "fake/v1") -> None:
        self.name = name
        self.cache_tag = tag
        self.calls: list[str] = []

    def synthesize(self, text: str) -> bytes:
        self.calls.append(text)
        freq = 300 + int(hashlib.sha256(text.encode()).hexdigest()[:4], 16) % 900
        return bytes(200 * 16) + tone(200 + 10 * len(text), freq) + bytes(300 * 16)


class BrokenTts(FakeTts):
    def synthesize(self, text: str) -> bytes:
        self.calls.append(text)
        raise TtsError("service unavailable")


@pytest.fixture
def catalogue() -> Catalogue:
    return Catalogue.from_mapping({"intro": "안녕하세요.", "goodbye": "감사합니다."})


@pytest.fixture
def clips() -> Catalogue:
    return Catalogue.from_mapping(CLIP_TEXT)


def make_library(tmp_path: Path, catalogue: Catalogue, clips: Catalogue, tts=None) -> MediaLibrary:
    return MediaLibrary(
        catalogue, clips, tts or FakeTts(), tmp_path / "cache", tmp_path / "recorded"
    )


def test_prompt_is_trimmed_normalised_slin(tmp_path, catalogue, clips) -> None:
    clip = make_library(tmp_path, catalogue, clips).prompt("intro")
    speech_ms = 200 + 10 * len("안녕하세요.")
    assert speech_ms + 60 <= clip.duration_ms <= speech_ms + 70  # 30 ms kept each side
    assert abs(rms_dbfs(clip.pcm) - -20.0) < 0.5


def test_second_call_runs_no_tts_and_returns_the_same_clip(tmp_path, catalogue, clips) -> None:
    fake = FakeTts()
    lib = make_library(tmp_path, catalogue, clips, fake)
    first = lib.prompt("intro")
    assert lib.prompt("intro") is first
    assert fake.calls == ["안녕하세요."]


def test_disk_cache_serves_a_new_process(tmp_path, catalogue, clips) -> None:
    first = make_library(tmp_path, catalogue, clips).prompt("intro")
    fake = FakeTts()
    again = make_library(tmp_path, catalogue, clips, fake).prompt("intro")
    assert fake.calls == []
    assert again == first


def test_cache_files_are_complete_8k_mono_wavs_with_no_temp_left(tmp_path, catalogue, clips):
    make_library(tmp_path, catalogue, clips).prompt("intro")
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".wav" and len(files[0].stem) == 64
    with wave.open(str(files[0])) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)


def test_editing_a_text_re_renders(tmp_path, catalogue, clips) -> None:
    make_library(tmp_path, catalogue, clips).prompt("intro")
    fake = FakeTts()
    edited = Catalogue.from_mapping({"intro": "반갑습니다."})
    make_library(tmp_path, edited, clips, fake).prompt("intro")
    assert fake.calls == ["반갑습니다."]


def test_another_engine_does_not_reuse_the_cache(tmp_path, catalogue, clips) -> None:
    make_library(tmp_path, catalogue, clips).prompt("intro")
    other = FakeTts(tag="fake/v2")
    make_library(tmp_path, catalogue, clips, other).prompt("intro")
    assert other.calls == ["안녕하세요."]


def test_a_truncated_cache_file_is_rendered_again(tmp_path, catalogue, clips) -> None:
    make_library(tmp_path, catalogue, clips).prompt("intro")
    (cached,) = (tmp_path / "cache").iterdir()
    cached.write_bytes(cached.read_bytes()[:30])
    fake = FakeTts()
    make_library(tmp_path, catalogue, clips, fake).prompt("intro")
    assert fake.calls == ["안녕하세요."]


def test_unwritable_cache_warns_once_and_still_plays(tmp_path, catalogue, clips, caplog) -> None:
    (tmp_path / "cache").write_text("a file where the cache directory should be")
    lib = make_library(tmp_path, catalogue, clips)
    with caplog.at_level(logging.WARNING):
        lib.prompt("intro")
        lib.prompt("goodbye")
    assert len([r for r in caplog.records if "not writable" in r.getMessage()]) == 1


def test_recorded_file_overrides_tts_and_its_bytes_are_in_the_key(tmp_path, catalogue, clips):
    (tmp_path / "recorded").mkdir()
    write_wav(tmp_path / "recorded" / "intro.wav", bytes(800) + tone(700, 440.0) + bytes(800))
    fake = FakeTts()
    lib = make_library(tmp_path, catalogue, clips, fake)
    clip = lib.prompt("intro")
    assert fake.calls == []
    assert 760 <= clip.duration_ms <= 770
    assert lib.has_recorded("intro") and not lib.has_recorded("goodbye")

    write_wav(tmp_path / "recorded" / "intro.wav", tone(400, 440.0))
    assert make_library(tmp_path, catalogue, clips, fake).prompt("intro").duration_ms < 500


def test_recorded_only_prompt_plays_and_counts_as_a_prompt(tmp_path, catalogue, clips) -> None:
    (tmp_path / "recorded").mkdir()
    write_wav(tmp_path / "recorded" / "jingle.wav", tone(300, 660.0))
    lib = make_library(tmp_path, catalogue, clips)
    assert lib.has_prompt("jingle") and lib.has_prompt("intro") and not lib.has_prompt("nope")
    assert lib.prompt("jingle").duration_ms >= 300
    assert lib.recorded_ids() == ["jingle"]


@pytest.mark.parametrize("bad", ["nope", "../cache/x", "Intro", ""])
def test_unknown_prompt_is_a_media_error(tmp_path, catalogue, clips, bad) -> None:
    with pytest.raises(UnknownPrompt):
        make_library(tmp_path, catalogue, clips).prompt(bad)


def test_inline_tts_and_file_are_cached(tmp_path, catalogue, clips) -> None:
    fake = FakeTts()
    lib = make_library(tmp_path, catalogue, clips, fake)
    assert lib.tts("오늘은 좋은 날") is lib.tts("오늘은 좋은 날")
    assert lib.tts("안녕하세요.") == lib.prompt("intro")  # same text, same engine: one render
    assert fake.calls == ["오늘은 좋은 날", "안녕하세요."]
    write_wav(tmp_path / "a.wav", tone(300, 500.0))
    assert lib.file(tmp_path / "a.wav") is lib.file(str(tmp_path / "a.wav"))
    with pytest.raises(MediaError):
        lib.file(tmp_path / "missing.wav")
    with pytest.raises(MediaError):
        lib.tts("   ")


def test_silent_tts_output_is_an_error(tmp_path, catalogue, clips) -> None:
    class SilentTts(FakeTts):
        def synthesize(self, text: str) -> bytes:
            return bytes(8000)

    with pytest.raises(MediaError, match="no audible audio"):
        make_library(tmp_path, catalogue, clips, SilentTts()).prompt("intro")


def test_digits_are_digit_clips_with_gaps(tmp_path, catalogue, clips) -> None:
    lib = make_library(tmp_path, catalogue, clips)
    out = lib.digits("1204")
    assert len(out) == 7
    assert out[1] == out[3] == out[5] == lib.silence(150)
    assert out[1].pcm == bytes(150 * 16)
    assert out[0] == lib.tts("일") and out[4] == lib.tts("공")
    assert lib.digits("") == ()
    assert lib.digits("7") == (lib.tts("칠"),)


def test_digits_leave_no_secret_in_logs_files_or_errors(tmp_path, catalogue, clips, caplog):
    fake = FakeTts()
    lib = make_library(tmp_path, catalogue, clips, fake)
    with caplog.at_level(logging.DEBUG):
        lib.digits(SECRET)
        lib.prompt("intro")
        with pytest.raises(ValueError) as caught:
            lib.digits(SECRET + "x")
    assert str(caught.value) == "position 7: not a digit"
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert all(SECRET not in str(arg) for arg in (record.args or ()))
    assert all(SECRET not in p.name for p in (tmp_path / "cache").rglob("*"))
    assert all(SECRET not in call for call in fake.calls)


def test_which_clips_are_rendered_does_not_depend_on_the_digits(tmp_path, catalogue, clips):
    one, two = FakeTts(), FakeTts()
    make_library(tmp_path / "a", catalogue, clips, one).digits(SECRET)
    make_library(tmp_path / "b", catalogue, clips, two).digits("0")
    assert one.calls == two.calls == list(dict.fromkeys(CLIP_TEXT[i] for i in CLIP_IDS))


def test_amount_is_words_of_clips_with_gaps(tmp_path, catalogue, clips) -> None:
    lib = make_library(tmp_path, catalogue, clips)
    gap = lib.silence(120)
    il, man, i, cheon, sam, baek, won = (lib.tts(t) for t in "일만이천삼백원")
    assert lib.amount(12300) == (il, man, gap, i, cheon, sam, baek, gap, won)
    assert lib.amount(0) == (lib.tts("영"), gap, won)
    with pytest.raises(ValueError):
        lib.amount(-5)


def test_hot_path_is_dict_lookups(tmp_path, catalogue, clips) -> None:
    lib = make_library(tmp_path, catalogue, clips)
    lib.render_all()
    started = time.perf_counter()
    for _ in range(10_000):
        lib.prompt("intro")
        lib.digits("123456")
        lib.amount(12300)
        lib.silence(500)
    per_round = (time.perf_counter() - started) / 10_000
    assert per_round < 100e-6  # ~5 µs measured; 20x margin for slow CI


def test_render_all_reports_progress_and_counts(tmp_path, catalogue, clips) -> None:
    seen: list[tuple[int, int, str]] = []
    report = make_library(tmp_path, catalogue, clips).render_all(
        lambda done, total, entry: seen.append((done, total, entry))
    )
    total = 2 + len(CLIP_IDS)
    assert [s[0] for s in seen] == list(range(1, total + 1))
    assert {s[1] for s in seen} == {total}
    assert [s[2] for s in seen[:2]] == ["intro", "goodbye"]
    assert report.ok and report.total == total
    unique_texts = len(set(CLIP_TEXT.values())) + 2
    assert (report.rendered, report.cached) == (unique_texts, total - unique_texts)
    assert report.recorded == 0

    again = make_library(tmp_path, catalogue, clips, FakeTts()).render_all()
    assert (again.rendered, again.cached) == (0, total)


def test_render_all_lists_failures_and_goes_on(tmp_path, catalogue, clips) -> None:
    report = make_library(tmp_path, catalogue, clips, BrokenTts()).render_all()
    assert not report.ok
    assert len(report.failed) == report.total
    assert report.failed[0] == ("intro", "service unavailable")


def test_clip_catalogue_must_have_every_clip(tmp_path, catalogue) -> None:
    with pytest.raises(MediaError, match="lacks 1 clips: won"):
        make_library(
            tmp_path,
            catalogue,
            Catalogue.from_mapping({k: v for k, v in CLIP_TEXT.items() if k != "won"}),
        )


def test_ulaw_and_alaw_are_cached_encodings(tmp_path, catalogue, clips) -> None:
    lib = make_library(tmp_path, catalogue, clips)
    clip = lib.prompt("intro")
    assert lib.ulaw(clip) == ulaw_encode(clip.pcm) and lib.ulaw(clip) is lib.ulaw(clip)
    assert lib.alaw(clip) == alaw_encode(clip.pcm) and lib.alaw(clip) is lib.alaw(clip)
    assert len(lib.ulaw(Clip.from_pcm(bytes(320)))) == 160


def test_default_uses_repo_files_and_env_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ARS_MEDIA_CACHE", str(tmp_path / "envcache"))
    lib = MediaLibrary.default()
    assert lib.cache_dir == tmp_path / "envcache"
    assert lib.recorded_dir == REPO / "prompts" / "recorded"
    assert isinstance(lib.tts_engine, EspeakNg)
    assert MediaLibrary.default(cache_dir=tmp_path / "x").cache_dir == tmp_path / "x"
    monkeypatch.delenv("ARS_MEDIA_CACHE")
    assert MediaLibrary.default(root=REPO).cache_dir == REPO / "prompts" / ".cache"


# --- TTS wrappers ----------------------------------------------------------------------------


def test_fallback_warns_once_per_failure_and_files_audio_under_the_fallback(
    tmp_path, catalogue, clips, caplog
) -> None:
    now = [0.0]
    primary, fallback = BrokenTts("gTTS", "gtts/ko"), FakeTts("espeak-ng", "espeak/ko")
    engine = FallbackTts(primary, fallback, retry_after=60.0, clock=lambda: now[0])
    assert engine.cache_tag == "gtts/ko"
    lib = make_library(tmp_path, catalogue, clips, engine)
    with caplog.at_level(logging.WARNING):
        lib.prompt("intro")
        lib.prompt("goodbye")  # primary is skipped while it is down
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["gTTS failed (service unavailable); falling back to espeak-ng"]
    assert primary.calls == ["안녕하세요."] and fallback.calls == ["안녕하세요.", "감사합니다."]
    assert engine.cache_tag == "espeak/ko"

    # The espeak audio was cached under espeak's key: a plain espeak library finds it.
    plain = FakeTts("espeak-ng", "espeak/ko")
    make_library(tmp_path, catalogue, clips, plain).prompt("intro")
    assert plain.calls == []

    now[0] = 61.0  # retry window over: the primary is asked again
    assert engine.cache_tag == "gtts/ko"
    engine.synthesize("다시")
    assert primary.calls[-1] == "다시" and engine.failures == 2


def test_make_tts_uses_gtts_only_when_online(monkeypatch) -> None:
    assert isinstance(make_tts("espeak-ng", online=True), EspeakNg)
    assert isinstance(make_tts("gtts", online=False), EspeakNg)
    monkeypatch.setattr(tts_module.importlib.util, "find_spec", lambda name: object())
    engine = make_tts("gtts", online=True)
    assert isinstance(engine, FallbackTts) and isinstance(engine.primary, GttsEngine)
    monkeypatch.setattr(tts_module.importlib.util, "find_spec", lambda name: None)
    assert isinstance(make_tts("gtts", online=True), EspeakNg)
    with pytest.raises(MediaError):
        make_tts("festival")


def test_espeak_gets_the_text_on_stdin_never_on_argv(monkeypatch) -> None:
    seen = {}

    def fake_run(argv, **kwargs):
        seen["argv"], seen["input"] = argv, kwargs["input"]
        return subprocess.CompletedProcess(argv, 1, b"", b"boom")

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(TtsError, match="espeak-ng failed"):
        EspeakNg().synthesize("인증번호 안내")
    assert seen["input"] == "인증번호 안내".encode()
    assert all("인증번호" not in arg for arg in seen["argv"])


def test_missing_espeak_is_a_clear_tts_error() -> None:
    with pytest.raises(TtsError, match="not installed"):
        EspeakNg(executable="/nonexistent/espeak-ng").synthesize("안녕")


def test_gtts_has_a_timeout_and_its_errors_become_tts_errors(monkeypatch) -> None:
    seen = {}

    class FakeGtts:
        def __init__(self, text, **kwargs):
            seen.update(kwargs)

        def write_to_fp(self, fp):
            raise ConnectionError("network down")

    monkeypatch.setitem(sys.modules, "gtts", types.SimpleNamespace(gTTS=FakeGtts))
    with pytest.raises(TtsError, match="gTTS request failed: ConnectionError"):
        GttsEngine(timeout=3.0).synthesize("안녕")
    assert seen["timeout"] == 3.0 and seen["lang"] == "ko"


def test_gtts_missing_package_is_a_tts_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "gtts", None)  # import raises ImportError
    with pytest.raises(TtsError, match="not installed"):
        GttsEngine().synthesize("안녕")
