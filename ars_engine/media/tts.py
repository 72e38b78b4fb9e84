"""Text-to-speech engines: espeak-ng (offline, always there), gTTS (online), and a fallback pair.

Every engine returns 8 kHz mono slin. Engines are only ever given catalogue or inline prompt
text, which never holds a secret: codes, PINs and amounts are spoken from pre-rendered clips
(see ``speech.py``), so no secret reaches a TTS process or service.

``cache_tag`` names the engine, voice and our rendering version; it is part of every cache key,
so changing voice or speed re-renders, and audio from the fallback engine is cached apart from
audio of the primary.
"""

from __future__ import annotations

import importlib.util
import io
import logging
import subprocess
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..errors import MediaError, TtsError
from .audio import convert_to_slin, wav_bytes_to_slin

log = logging.getLogger(__name__)

_ESPEAK_TIMEOUT_S = 30.0


@runtime_checkable
class TtsEngine(Protocol):
    """What the media library needs from a TTS engine."""

    @property
    def name(self) -> str:
        """Human name for logs ("espeak-ng", "gTTS")."""
        ...

    @property
    def cache_tag(self) -> str:
        """Engine + voice + version; part of cache keys. Read it again after ``synthesize``."""
        ...

    def synthesize(self, text: str) -> bytes:
        """Speak ``text``; return 8 kHz mono slin. Raises ``TtsError``."""
        ...


class EspeakNg:
    """espeak-ng through a subprocess; the text goes on stdin, never on argv (argv shows in ps).

    espeak-ng writes 22.05 kHz WAV; it is resampled to 8 kHz with sox. Measured on the dev box
    (2 vCPU; a 5.6 s Korean sentence, mean of 20 runs through subprocess.run): espeak-ng 12 ms,
    sox resample 5.5 ms, ffmpeg resample 86 ms (its start-up dominates), so sox is ~15x faster
    and a prompt renders in ~20 ms. ffmpeg is used only when sox is missing.
    """

    # Bump when the rendering pipeline changes so that cached audio is re-rendered.
    VERSION = "1"

    def __init__(self, voice: str = "ko", speed: int = 150, executable: str = "espeak-ng") -> None:
        if not voice.replace("-", "").replace("+", "").isalnum():
            raise ValueError(f"bad espeak-ng voice name {voice!r}")
        self.voice = voice
        self.speed = int(speed)
        self.executable = executable
        self.name = "espeak-ng"
        # Not the binary's version: a machine with a pre-rendered cache and no espeak-ng must
        # still find its audio. Clear prompts/.cache after upgrading espeak-ng if it matters.
        self.cache_tag = f"espeak-ng/{voice}/s{self.speed}/v{self.VERSION}"

    def synthesize(self, text: str) -> bytes:
        """Speak ``text`` with espeak-ng; return 8 kHz mono slin."""
        if not text.strip():
            raise TtsError("espeak-ng: nothing to say (empty text)")
        argv = [
            self.executable,
            "-v",
            self.voice,
            "-s",
            str(self.speed),
            "-b",
            "1",
            "--stdin",
            "--stdout",
        ]
        try:
            done = subprocess.run(
                argv,
                input=text.encode("utf-8"),
                capture_output=True,
                timeout=_ESPEAK_TIMEOUT_S,
                check=False,
            )
        except FileNotFoundError as exc:
            raise TtsError(
                f"{self.executable} is not installed (apt-get install espeak-ng); "
                "it is the offline TTS engine"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise TtsError(f"espeak-ng took over {_ESPEAK_TIMEOUT_S:.0f} s") from exc
        if done.returncode != 0 or len(done.stdout) <= 44:
            err = done.stderr.decode("utf-8", "replace").strip()
            raise TtsError(
                f"espeak-ng failed (exit {done.returncode}, voice {self.voice!r}): "
                f"{err or 'no audio'}"
            )
        try:
            return wav_bytes_to_slin(done.stdout)
        except MediaError as exc:
            raise TtsError(f"espeak-ng audio could not be converted: {exc}") from exc

    def __repr__(self) -> str:
        return f"EspeakNg(voice={self.voice!r}, speed={self.speed})"


class GttsEngine:
    """Google Translate TTS through gTTS (optional extra ``online``), mp3 converted to slin."""

    VERSION = "1"

    def __init__(self, lang: str = "ko", timeout: float = 10.0, tld: str = "com") -> None:
        self.lang = lang
        # gTTS defaults to timeout=None, which can hang a render forever on a bad network.
        self.timeout = timeout
        self.tld = tld
        self.name = "gTTS"
        self.cache_tag = f"gtts/{lang}/{tld}/v{self.VERSION}"

    def synthesize(self, text: str) -> bytes:
        """Speak ``text`` with gTTS; return 8 kHz mono slin."""
        try:
            from gtts import gTTS  # lazy: optional dependency, and slow to import
        except ImportError as exc:
            raise TtsError("gTTS is not installed (pip install 'ars-engine[online]')") from exc
        buf = io.BytesIO()
        try:
            gTTS(text, lang=self.lang, tld=self.tld, timeout=self.timeout).write_to_fp(buf)
        except Exception as exc:  # gTTSError, requests errors, AssertionError on bad input...
            raise TtsError(f"gTTS request failed: {type(exc).__name__}: {exc}") from exc
        if not buf.getvalue():
            raise TtsError("gTTS returned no audio")
        try:
            return convert_to_slin(buf.getvalue())
        except MediaError as exc:
            raise TtsError(f"gTTS mp3 could not be converted: {exc}") from exc

    def __repr__(self) -> str:
        return f"GttsEngine(lang={self.lang!r}, timeout={self.timeout})"


class FallbackTts:
    """Try ``primary``; on any failure warn and use ``fallback``.

    After a primary failure the primary is skipped for ``retry_after`` seconds, so an outage costs
    one timeout per window rather than one per prompt. ``cache_tag`` is the tag of the engine that
    will speak next, and after ``synthesize`` of the engine that just spoke, so fallback audio is
    cached under the fallback's key and the primary is tried again once it is back.
    """

    def __init__(
        self,
        primary: TtsEngine,
        fallback: TtsEngine,
        retry_after: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.retry_after = retry_after
        self._clock = clock
        self._primary_down_until = -float("inf")
        self.name = f"{primary.name} (fallback {fallback.name})"
        self.failures = 0

    def _primary_down(self) -> bool:
        return self._clock() < self._primary_down_until

    @property
    def cache_tag(self) -> str:
        """Tag of the engine that will speak next (or just spoke)."""
        return self.fallback.cache_tag if self._primary_down() else self.primary.cache_tag

    def synthesize(self, text: str) -> bytes:
        """Speak with the primary unless it failed recently; else with the fallback."""
        if not self._primary_down():
            try:
                return self.primary.synthesize(text)
            except Exception as exc:  # any failure of the primary means: use the fallback
                self.failures += 1
                self._primary_down_until = self._clock() + self.retry_after
                log.warning(
                    "%s failed (%s); falling back to %s", self.primary.name, exc, self.fallback.name
                )
        return self.fallback.synthesize(text)

    def __repr__(self) -> str:
        return f"FallbackTts({self.primary!r}, {self.fallback!r})"


def make_tts(engine: str = "espeak-ng", online: bool = False) -> TtsEngine:
    """The TTS engine to use: gTTS (espeak-ng as fallback) only when ``online``, else espeak-ng."""
    if engine not in ("espeak-ng", "gtts"):
        raise MediaError(f"unknown TTS engine {engine!r} (expected 'espeak-ng' or 'gtts')")
    if engine == "gtts" and online:
        if importlib.util.find_spec("gtts") is None:
            log.warning("gTTS is not installed (pip install 'ars-engine[online]'); using espeak-ng")
            return EspeakNg()
        return FallbackTts(GttsEngine(), EspeakNg())
    return EspeakNg()
