"""The media library: every clip a scenario plays, rendered once and cached.

Sources, in order: a recorded file ``recorded_dir/<id>.wav`` (any WAV format), else TTS of the
catalogue text. Everything comes out 8 kHz mono slin, silence-trimmed and loudness-normalised.

Two cache levels:

* memory: prompt id / clip id / inline text → ``Clip``; after warm-up ``prompt()``, ``digits()``
  and ``amount()`` are dict lookups (the interpreter runs thousands of scenarios per second);
* disk: ``cache_dir/<sha256>.wav``, the hash over (render settings, engine ``cache_tag``, text)
  or (render settings, recorded file's bytes hash). Editing a text or a recording changes the key,
  so it re-renders; writes go to a temp file then ``os.replace``, so a reader in another process
  sees the old file, the new file or none, never half of one.

Secrets: ``digits()`` joins the ten digit clips, which are all rendered together in a fixed order,
so no TTS call, log line, file name or exception depends on the digits asked for; and digit
sequences are never cached.

Rendering blocks (a TTS process, ffmpeg): call ``render_all()`` at start-up, or the first miss of
each prompt runs in the caller's thread (use ``asyncio.to_thread`` from async code).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ..errors import MediaError
from . import speech
from .audio import (
    alaw_encode,
    convert_to_slin,
    normalize_loudness,
    silence,
    slin_from_wav,
    trim_silence,
    ulaw_encode,
    wav_bytes_to_slin,
    write_wav,
)
from .catalogue import PROMPT_ID, Catalogue, UnknownPrompt
from .clip import Clip
from .tts import TtsEngine, make_tts

log = logging.getLogger(__name__)

# Bump when trimming/normalising changes in a way the settings below do not capture.
RENDER_VERSION = "1"
_MAX_INLINE = 1024  # inline TTS texts kept in memory (texts with variables are unbounded)
_MAX_CODED = 4096  # μ-law/A-law encodings kept in memory
K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class RenderReport:
    """What ``render_all`` did: counts, and (id, error) for each entry that failed."""

    total: int
    rendered: int  # produced now (TTS run or file converted)
    cached: int  # found in memory or on disk
    recorded: int  # of all, how many came from a recorded file
    failed: tuple[tuple[str, str], ...]
    seconds: float

    @property
    def ok(self) -> bool:
        """True when every prompt and clip rendered."""
        return not self.failed


def _bounded_put(cache: dict[K, V], key: K, value: V, limit: int) -> None:
    if len(cache) >= limit:
        del cache[next(iter(cache))]  # oldest first: dicts keep insertion order
    cache[key] = value


class MediaLibrary:
    """Prompts, inline TTS, recorded files, digits, amounts and silences as ``Clip``s."""

    def __init__(
        self,
        catalogue: Catalogue,
        clips: Catalogue,
        tts: TtsEngine,
        cache_dir: Path,
        recorded_dir: Path,
        gap_ms: int = 120,
        *,
        digit_gap_ms: int = 150,
        target_dbfs: float = -20.0,
        peak_dbfs: float = -1.0,
        trim_threshold_dbfs: float = -45.0,
        keep_ms: int = 30,
    ) -> None:
        missing = [clip_id for clip_id in speech.CLIP_IDS if clip_id not in clips]
        if missing:
            raise MediaError(f"clip catalogue lacks {len(missing)} clips: {', '.join(missing)}")
        self.catalogue = catalogue
        self.clips = clips
        self.tts_engine = tts
        self.cache_dir = Path(cache_dir)
        self.recorded_dir = Path(recorded_dir)
        self.gap_ms = gap_ms  # between the words of an amount
        self.digit_gap_ms = digit_gap_ms  # between digits, so each is heard apart
        self._target_dbfs = target_dbfs
        self._peak_dbfs = peak_dbfs
        self._trim_dbfs = trim_threshold_dbfs
        self._keep_ms = keep_ms
        self._settings = (
            f"v{RENDER_VERSION}/rms{target_dbfs}/peak{peak_dbfs}/trim{trim_threshold_dbfs}"
            f"/keep{keep_ms}"
        )
        self._lock = threading.RLock()  # only taken on a miss
        self._content: dict[str, Clip] = {}  # content key → clip
        self._prompts: dict[str, Clip] = {}
        self._clip_ids: dict[str, Clip] = {}
        self._digit: dict[str, Clip] = {}  # "0".."9" → clip, filled all at once
        self._inline: dict[str, Clip] = {}
        self._files: dict[tuple[str, int, int], Clip] = {}
        self._silences: dict[int, Clip] = {}
        self._ulaw: dict[str, bytes] = {}
        self._alaw: dict[str, bytes] = {}
        self._cache_write_failed = False

    @classmethod
    def default(
        cls,
        root: Path | None = None,
        online: bool = False,
        cache_dir: Path | None = None,
    ) -> MediaLibrary:
        """The library of a checkout: ``<root>/prompts/{ko,clips_ko}.yaml`` and ``recorded/``.

        ``root`` defaults to the checkout holding this package (else the current directory). The
        cache is ``cache_dir``, else ``$ARS_MEDIA_CACHE``, else ``<root>/prompts/.cache``. TTS is
        gTTS with espeak-ng fallback when ``online``, else espeak-ng.
        """
        if root is None:
            here = Path(__file__).resolve().parents[2]
            root = here if (here / "prompts" / "clips_ko.yaml").is_file() else Path.cwd()
        prompts = Path(root) / "prompts"
        if cache_dir is None:
            env = os.environ.get("ARS_MEDIA_CACHE")
            cache_dir = Path(env) if env else prompts / ".cache"
        return cls(
            Catalogue.load(prompts / "ko.yaml"),
            Catalogue.load(prompts / "clips_ko.yaml"),
            make_tts("gtts" if online else "espeak-ng", online=online),
            cache_dir,
            prompts / "recorded",
        )

    # --- hot path: dict lookups once warm -------------------------------------------------------

    def prompt(self, prompt_id: str) -> Clip:
        """The audio of a catalogue prompt (a recorded ``<id>.wav`` overrides its TTS)."""
        clip = self._prompts.get(prompt_id)
        if clip is None:
            clip = self._load_entry(prompt_id, self.catalogue, self._prompts)[0]
        return clip

    def digits(self, digits: str) -> tuple[Clip, ...]:
        """``digits`` read one by one with a short pause between; ValueError names a position only.

        The result is never cached: digits are often secrets.
        """
        table = self._digit or self._ensure_clips()
        gap = self.silence(self.digit_gap_ms)
        out: list[Clip] = []
        for position, ch in enumerate(digits, 1):
            clip = table.get(ch)
            if clip is None:
                raise speech.not_a_digit(position)
            if out:
                out.append(gap)
            out.append(clip)
        return tuple(out)

    def amount(self, won: int) -> tuple[Clip, ...]:
        """An amount in won, read in Korean ("일만 이천삼백 원"), a pause between words."""
        words = speech.amount_clip_groups(won)
        if not self._digit:
            self._ensure_clips()
        clips = self._clip_ids
        gap = self.silence(self.gap_ms)
        out: list[Clip] = []
        for word in words:
            if out:
                out.append(gap)
            out.extend(clips[clip_id] for clip_id in word)
        return tuple(out)

    def silence(self, ms: int) -> Clip:
        """``ms`` milliseconds of silence."""
        clip = self._silences.get(ms)
        if clip is None:
            clip = self._silences[ms] = Clip.from_pcm(silence(ms))
        return clip

    def tts(self, text: str) -> Clip:
        """Inline text (already templated, never a secret) spoken by the TTS engine."""
        clip = self._inline.get(text)
        if clip is None:
            if not text.strip():
                raise MediaError("inline TTS text is empty")
            with self._lock:
                clip, how = self._render_text(text)
                _bounded_put(self._inline, text, clip, _MAX_INLINE)
            log.debug("inline text (%d chars): %s, %s", len(text), how, clip)
        return clip

    def file(self, path: Path | str) -> Clip:
        """A recorded file given by path (any format ffmpeg reads), converted and normalised."""
        path = Path(path)
        try:
            st = path.stat()
        except OSError as exc:
            raise MediaError(f"{path}: cannot read audio file: {exc.strerror}") from exc
        memo = (str(path), st.st_mtime_ns, st.st_size)
        clip = self._files.get(memo)
        if clip is None:
            with self._lock:
                clip, how = self._render_file(path)
                self._files[memo] = clip
            log.debug("file %s: %s, %s", path, how, clip)
        return clip

    def ulaw(self, clip: Clip) -> bytes:
        """``clip`` encoded as G.711 μ-law (cached by the clip's content key)."""
        coded = self._ulaw.get(clip.key)
        if coded is None:
            coded = ulaw_encode(clip.pcm)
            _bounded_put(self._ulaw, clip.key, coded, _MAX_CODED)
        return coded

    def alaw(self, clip: Clip) -> bytes:
        """``clip`` encoded as G.711 A-law (cached by the clip's content key)."""
        coded = self._alaw.get(clip.key)
        if coded is None:
            coded = alaw_encode(clip.pcm)
            _bounded_put(self._alaw, clip.key, coded, _MAX_CODED)
        return coded

    # --- questions ------------------------------------------------------------------------------

    def has_prompt(self, prompt_id: str) -> bool:
        """True if ``prompt()`` can play this id (catalogue text or recorded file)."""
        return prompt_id in self.catalogue or self.has_recorded(prompt_id)

    def has_recorded(self, prompt_id: str) -> bool:
        """True if ``recorded_dir/<id>.wav`` exists (it overrides TTS)."""
        return self._recorded_path(prompt_id) is not None

    def recorded_ids(self) -> list[str]:
        """Ids of the recorded files in ``recorded_dir``, sorted."""
        if not self.recorded_dir.is_dir():
            return []
        return sorted(
            p.stem for p in self.recorded_dir.glob("*.wav") if PROMPT_ID.fullmatch(p.stem)
        )

    # --- pre-rendering --------------------------------------------------------------------------

    def render_all(self, progress: Callable[[int, int, str], None] | None = None) -> RenderReport:
        """Render every catalogue prompt, recorded-only prompt and number clip; report failures.

        ``progress(done, total, id)`` is called after each entry (for a progress bar).
        """
        started = time.perf_counter()
        entries = [(i, self.catalogue, self._prompts) for i in self.catalogue.ids()]
        entries += [
            (i, self.catalogue, self._prompts)
            for i in self.recorded_ids()
            if i not in self.catalogue
        ]
        entries += [(i, self.clips, self._clip_ids) for i in speech.CLIP_IDS]
        rendered = cached = recorded = 0
        failed: list[tuple[str, str]] = []
        for done, (entry_id, catalogue, memo) in enumerate(entries, 1):
            try:
                _clip, how = self._load_entry(entry_id, catalogue, memo)
            except (MediaError, OSError) as exc:
                failed.append((entry_id, str(exc)))
            else:
                rendered += how.endswith("rendered")
                cached += not how.endswith("rendered")
                recorded += how.startswith("recorded")
            if progress is not None:
                progress(done, len(entries), entry_id)
        if not any(self._clip_ids.get(i) is None for i in speech.CLIP_IDS):
            self._ensure_clips()  # all clips in memory: build the digit table now
        seconds = time.perf_counter() - started
        return RenderReport(len(entries), rendered, cached, recorded, tuple(failed), seconds)

    # --- rendering ------------------------------------------------------------------------------

    def _ensure_clips(self) -> dict[str, Clip]:
        """Render all number clips, always all of them in a fixed order (see module doc)."""
        with self._lock:
            if not self._digit:
                for clip_id in speech.CLIP_IDS:
                    if clip_id not in self._clip_ids:
                        self._load_entry(clip_id, self.clips, self._clip_ids, quiet=True)
                self._digit = {ch: self._clip_ids[i] for ch, i in speech.DIGIT_CLIP_IDS.items()}
                log.debug("number clips ready (%d clips)", len(self._clip_ids))
        return self._digit

    def _recorded_path(self, entry_id: str) -> Path | None:
        if not PROMPT_ID.fullmatch(entry_id):  # also keeps "../x" out of the path
            return None
        path = self.recorded_dir / f"{entry_id}.wav"
        return path if path.is_file() else None

    def _load_entry(
        self, entry_id: str, catalogue: Catalogue, memo: dict[str, Clip], quiet: bool = False
    ) -> tuple[Clip, str]:
        with self._lock:
            clip = memo.get(entry_id)
            if clip is not None:
                return clip, "memory"
            recorded = self._recorded_path(entry_id)
            if recorded is not None:
                clip, how = self._render_file(recorded)
                how = f"recorded {how}"
            elif entry_id in catalogue:
                clip, how = self._render_text(catalogue.text(entry_id))
            else:
                raise UnknownPrompt(entry_id)
            memo[entry_id] = clip
        if not quiet:
            kind = "clip" if catalogue is self.clips else "prompt"
            log.debug("%s %s: %s, %s", kind, entry_id, how, clip)
        return clip, how

    def _key(self, *parts: str) -> str:
        return hashlib.sha256("\0".join((self._settings, *parts)).encode()).hexdigest()

    def _render_text(self, text: str) -> tuple[Clip, str]:
        key = self._key("tts", self.tts_engine.cache_tag, text)
        hit = self._lookup(key)
        if hit is not None:
            return hit
        pcm = self.tts_engine.synthesize(text)
        # A FallbackTts may have spoken with its fallback: file the audio under that engine.
        key = self._key("tts", self.tts_engine.cache_tag, text)
        return self._store(key, pcm, f"TTS ({self.tts_engine.cache_tag})"), "rendered"

    def _render_file(self, path: Path) -> tuple[Clip, str]:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MediaError(f"{path}: cannot read audio file: {exc.strerror}") from exc
        key = self._key("file", hashlib.sha256(data).hexdigest())
        hit = self._lookup(key)
        if hit is not None:
            return hit
        is_wav = data[:4] == b"RIFF" and data[8:12] == b"WAVE"
        pcm = wav_bytes_to_slin(data) if is_wav else convert_to_slin(path)
        return self._store(key, pcm, str(path)), "rendered"

    def _lookup(self, key: str) -> tuple[Clip, str] | None:
        clip = self._content.get(key)
        if clip is not None:
            return clip, "memory"
        path = self.cache_dir / f"{key}.wav"
        try:
            pcm = slin_from_wav(path)
        except OSError:
            return None  # not cached yet (or unreadable: render again)
        if not pcm:
            return None
        clip = self._content[key] = Clip.from_pcm(pcm)
        return clip, "disk"

    def _store(self, key: str, pcm: bytes, what: str) -> Clip:
        trimmed = trim_silence(pcm, self._trim_dbfs, self._keep_ms)
        if not trimmed:
            raise MediaError(f"{what}: no audible audio (all below {self._trim_dbfs} dBFS)")
        clip = Clip.from_pcm(normalize_loudness(trimmed, self._target_dbfs, self._peak_dbfs))
        self._content[key] = clip
        self._write_cache(key, clip.pcm)
        return clip

    def _write_cache(self, key: str, pcm: bytes) -> None:
        tmp: str | None = None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.cache_dir, prefix=".tmp-", suffix=".wav")
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o644)  # mkstemp makes 0600; other workers read it too
                write_wav(f, pcm)
            os.replace(tmp, self.cache_dir / f"{key}.wav")
            tmp = None
        except OSError as exc:
            # A read-only cache only costs speed: keep serving from memory, warn once.
            if not self._cache_write_failed:
                self._cache_write_failed = True
                log.warning(
                    "media cache %s is not writable (%s); caching in memory only",
                    self.cache_dir,
                    exc.strerror or exc,
                )
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)

    def __repr__(self) -> str:
        return (
            f"MediaLibrary({len(self.catalogue)} prompts, tts={self.tts_engine.name}, "
            f"cache={self.cache_dir})"
        )
