"""Shared fixtures: media libraries (fake TTS for speed, real espeak-ng for integration)."""

from __future__ import annotations

import hashlib
import math
import shutil
import struct
from pathlib import Path

import pytest

from ars_engine.media.catalogue import Catalogue
from ars_engine.media.library import MediaLibrary

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "prompts"
SCENARIOS = ROOT / "scenarios"


class ToneTts:
    """A deterministic stand-in for a TTS engine: each text becomes its own tone, 60 ms per
    character, so tests run without espeak-ng and can tell prompts apart by their audio."""

    name = "tone"
    cache_tag = "tone-test-v1"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def synthesize(self, text: str) -> bytes:
        self.calls.append(text)
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:2], "big")
        freq = 300 + seed % 1500
        n = max(8 * 60 * len(text), 800)
        return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * freq * i / 8000)))
                        for i in range(n))


@pytest.fixture
def tone_media(tmp_path: Path) -> MediaLibrary:
    """The shipped catalogue rendered by :class:`ToneTts` into a temporary cache."""
    return MediaLibrary(Catalogue.load(PROMPTS / "ko.yaml"),
                        Catalogue.load(PROMPTS / "clips_ko.yaml"),
                        ToneTts(), tmp_path / "cache", tmp_path / "recorded")


@pytest.fixture(scope="session")
def real_media() -> MediaLibrary:
    """The shipped catalogue rendered by espeak-ng (the default offline engine), cached."""
    if shutil.which("espeak-ng") is None or shutil.which("ffmpeg") is None:
        pytest.skip("espeak-ng/ffmpeg are not installed: run `make setup` (installs them)")
    return MediaLibrary.default(ROOT)
