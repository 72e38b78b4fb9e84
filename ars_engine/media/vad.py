"""When did the other side's prompt end? An energy-based tracker of received audio, sans-I/O.

Rules (tuned for IVR prompts, not for conversation):

* audio is judged in 20 ms frames (160 samples at 8 kHz): a frame is *sound* when its RMS level
  is at or above :data:`SILENCE_DBFS` (-45 dBFS), *near-silence* below it;
* a prompt has *ended* when at least :data:`MIN_SILENCE_MS` (400 ms) of near-silence in a row
  follows at least :data:`MIN_SOUND_MS` (300 ms) of sound in all since the last end; the pauses
  between words (shorter than 400 ms) do not end a prompt;
* 400 ms of near-silence after less than 300 ms of sound (a click, a key tone) forgets that sound;
* each end is reported once, at the frame that completed the 400 ms, with its time in ms of audio
  fed so far (the caller maps it to its own clock).
"""

from __future__ import annotations

from dataclasses import dataclass

from .audio import rms_dbfs

__all__ = ["MIN_SILENCE_MS", "MIN_SOUND_MS", "SILENCE_DBFS", "PromptEnd", "PromptEndDetector"]

SILENCE_DBFS = -45.0
MIN_SOUND_MS = 300
MIN_SILENCE_MS = 400
FRAME_MS = 20
_FRAME_BYTES = 8 * FRAME_MS * 2  # 8 kHz, 16-bit


@dataclass(frozen=True, slots=True)
class PromptEnd:
    """A prompt ended: ``at_ms`` of audio fed (the end of the silence that proved it),
    ``sound_ms`` of sound it held."""

    at_ms: int
    sound_ms: int


class PromptEndDetector:
    """Feed 8 kHz s16le audio in any slices; :meth:`feed` returns the prompt ends it reveals."""

    __slots__ = ("_pending", "ends", "fed_ms", "silence_ms", "sound_ms")

    def __init__(self) -> None:
        self._pending = b""
        self.fed_ms = 0
        self.sound_ms = 0  # sound since the last end (or forgotten click)
        self.silence_ms = 0  # near-silence in a row
        self.ends = 0

    def feed(self, pcm: bytes) -> list[PromptEnd]:
        data = self._pending + pcm
        whole = len(data) - len(data) % _FRAME_BYTES
        self._pending = data[whole:]
        out: list[PromptEnd] = []
        for i in range(0, whole, _FRAME_BYTES):
            self.fed_ms += FRAME_MS
            if rms_dbfs(data[i:i + _FRAME_BYTES]) >= SILENCE_DBFS:
                self.sound_ms += FRAME_MS
                self.silence_ms = 0
                continue
            self.silence_ms += FRAME_MS
            if self.silence_ms == MIN_SILENCE_MS:
                if self.sound_ms >= MIN_SOUND_MS:
                    self.ends += 1
                    out.append(PromptEnd(self.fed_ms, self.sound_ms))
                self.sound_ms = 0
        return out

    def __repr__(self) -> str:
        return (f"PromptEndDetector({self.ends} ends, {self.fed_ms} ms fed, "
                f"sound {self.sound_ms} ms, silence {self.silence_ms} ms)")
