"""Prompt audio as files Asterisk can play: ``STREAM FILE`` takes a file, not audio.

A prompt's 8 kHz s16le PCM is written as a signed-linear ``.sln`` file (Asterisk's format_pcm
reads ``.sln`` as raw 8 kHz native-endian slin; no conversion, no header) and played by its
absolute path without the extension. Two kinds of file:

* **static**: the audio is the same for every call. Cached once, named by its content hash,
  ``<sounds_dir>/static/<sha256>.sln``, never deleted (their number is bounded by the catalogue).
* **per call**: anything else. Written to ``<sounds_dir>/calls/<128 random bits>.sln`` and
  deleted when the call ends (:meth:`CallSounds.close`); :meth:`SoundFiles.sweep` removes those a
  crashed process left behind.

Why two kinds: Asterisk logs every file it plays (``Playing '/…/name.sln' (language 'en')``,
verbose level 3). A file named after its content, or kept across calls, would let anyone holding
that log and the digit clips tell which code a type A prompt read out. A name that says nothing,
for a file that lives only while its call does, leaves nothing to match.

Which prompts are static: the Channel sees only :class:`~ars_engine.media.clip.PromptAudio`.
The interpreter renders one clip per part and one ``prompt_ids`` entry per catalogue part
(``scenario.context.render_parts``), so ``len(prompt_ids) == len(clips)`` holds exactly when
every part is a catalogue prompt, whose text is fixed. Every other prompt (TTS text, digits,
amounts, files, silences) is treated as per call: that costs a file write per play of, say, a
fixed text part, never a leak.

Files are written atomically (a temporary name in the same folder, ``os.replace``), so Asterisk
never opens half a file. ``calls/`` is ``0o711``: Asterisk (another user in production) can open
a file whose name it is told but nobody can list the folder to find one.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ...media.clip import PromptAudio

__all__ = ["CallSounds", "SoundFiles", "is_static_prompt"]

log = logging.getLogger("ars_engine.agi.sounds")

EXTENSION = ".sln"  # 8 kHz signed linear, raw (Asterisk format_pcm)
STALE_AFTER = 6 * 3600.0  # seconds: a per-call file older than any call is a leftover


def is_static_prompt(prompt: PromptAudio) -> bool:
    """True when every clip of ``prompt`` is a catalogue prompt (same audio on every call)."""
    return bool(prompt.clips) and len(prompt.prompt_ids) == len(prompt.clips)


@dataclass(frozen=True, slots=True)
class SoundFiles:
    """Where prompt files go. One per process; Asterisk must read ``sounds_dir`` at the same
    path (same host, or a shared mount)."""

    sounds_dir: Path
    file_mode: int = 0o644

    @property
    def static_dir(self) -> Path:
        return self.sounds_dir / "static"

    @property
    def calls_dir(self) -> Path:
        return self.sounds_dir / "calls"

    def prepare(self) -> None:
        """Create the folders if missing (blocking; once at start-up, or through a thread)."""
        for folder, mode in ((self.static_dir, 0o755), (self.calls_dir, 0o711)):
            if not folder.is_dir():
                folder.mkdir(parents=True, exist_ok=True)
                os.chmod(folder, mode)  # mkdir's mode is masked by the umask

    def static(self, pcm: bytes) -> Path:
        """The static file holding ``pcm``, written if missing; the path has no extension."""
        base = self.static_dir / hashlib.sha256(pcm).hexdigest()
        path = base.with_suffix(EXTENSION)
        if not path.is_file():
            self.prepare()
            _write_atomic(path, pcm, self.file_mode)
        return base

    def per_call(self, pcm: bytes) -> Path:
        """A new per-call file holding ``pcm`` under a random name; no extension."""
        self.prepare()
        base = self.calls_dir / secrets.token_hex(16)
        _write_atomic(base.with_suffix(EXTENSION), pcm, self.file_mode)
        return base

    def sweep(self, older_than: float = STALE_AFTER) -> int:
        """Delete per-call files older than ``older_than`` seconds (left by a crash); return
        how many. Blocking."""
        if not self.calls_dir.is_dir():
            return 0
        limit = time.time() - older_than
        removed = 0
        for path in self.calls_dir.iterdir():
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class CallSounds:
    """The prompt files of one call: static ones shared, per-call ones deleted on close."""

    def __init__(self, files: SoundFiles) -> None:
        self.files = files
        self._mine: dict[str, Path] = {}  # content hash → per-call file (memory only)
        self._closed = False

    @property
    def paths(self) -> list[Path]:
        """This call's per-call files (with extension), for tests and cleanup checks."""
        return [p.with_suffix(EXTENSION) for p in self._mine.values()]

    async def publish(self, prompt: PromptAudio) -> Path:
        """A file Asterisk can play for ``prompt``: its path without extension."""
        if self._closed:
            raise RuntimeError("the call's sounds were already released")
        pcm = prompt.pcm()
        if is_static_prompt(prompt):
            return await asyncio.to_thread(self.files.static, pcm)
        key = hashlib.sha256(pcm).hexdigest()  # a repeated prompt reuses its file
        base = self._mine.get(key)
        if base is None:
            base = await asyncio.to_thread(self.files.per_call, pcm)
            self._mine[key] = base
        return base

    async def close(self) -> None:
        """Delete this call's per-call files (idempotent)."""
        self._closed = True
        paths, self._mine = self.paths, {}
        if paths:
            await asyncio.to_thread(_unlink_all, paths)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("could not delete a per-call prompt file: %s", exc.strerror)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to ``path`` so that a reader sees the whole file or none."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)  # mkstemp makes 0600: Asterisk may be another user
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
