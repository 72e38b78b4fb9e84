"""Audio values passed between the media layer, the interpreter and the channels.

All audio inside the engine is 8 kHz mono signed 16-bit little-endian PCM ("slin"). Codecs
(G.711 μ-law/A-law) are derived from it at the edge.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

SAMPLE_RATE = 8000
SAMPLE_WIDTH = 2  # bytes, signed 16-bit little-endian
BYTES_PER_MS = SAMPLE_RATE * SAMPLE_WIDTH // 1000  # 16


def pcm_key(pcm: bytes) -> str:
    """Content hash of PCM audio: the cache and file-name key of a clip."""
    return hashlib.sha256(pcm).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Clip:
    """A piece of 8 kHz mono s16le audio, named by its content hash.

    A clip carries no text: a digit clip must not reveal which digit it is in logs or file names.
    """

    key: str
    pcm: bytes = field(repr=False)

    @classmethod
    def from_pcm(cls, pcm: bytes) -> Clip:
        if len(pcm) % SAMPLE_WIDTH:
            pcm = pcm[:-1]
        return cls(pcm_key(pcm), pcm)

    @property
    def duration_ms(self) -> int:
        return len(self.pcm) // BYTES_PER_MS

    def __repr__(self) -> str:
        return f"Clip({self.key}, {self.duration_ms} ms)"


@dataclass(frozen=True, slots=True)
class PromptAudio:
    """What one play step says: its clips in order and the text, secrets already masked.

    ``text`` is what goes into timelines and evidence manifests; it never holds a secret.
    ``prompt_ids`` lists the catalogue ids used (for cues such as "after prompt X ended").
    """

    text: str
    clips: tuple[Clip, ...]
    prompt_ids: tuple[str, ...] = ()
    duration_ms: int = field(default=-1, compare=False)

    def __post_init__(self) -> None:
        if self.duration_ms < 0:
            object.__setattr__(self, "duration_ms", sum(c.duration_ms for c in self.clips))

    def pcm(self) -> bytes:
        return b"".join(c.pcm for c in self.clips)

    def __repr__(self) -> str:
        return f"PromptAudio({self.text!r}, {len(self.clips)} clips, {self.duration_ms} ms)"
