"""Evidence bundles for recorded calls (type E consent recordings are legal evidence of an
automatic-debit consent and are submitted to payment networks).

A bundle is a directory ``<out_dir>/<call_id>/``: the WAV the engine recorded (byte for byte), an
mp3 derivative small enough for submission (≤ 300 KB) and ``manifest.json`` (the exact prompt
texts, the key presses with secret ones masked, SHA-256 and size of both audio files), signed with
HMAC-SHA256 under the engine's evidence key. Each file is written to a temporary name and moved
into place (``os.replace``), the manifest last: a crash never leaves half a manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import EvidenceError
from ..scenario.timeline import TimelineEvent

log = logging.getLogger(__name__)

FORMAT = "ars-evidence/1"
SIGNATURE_ALG = "HMAC-SHA256"
MANIFEST_NAME = "manifest.json"
AUDIO_NAME = "recording.wav"
DERIVATIVE_NAME = "recording.mp3"
DEFAULT_RETENTION_DAYS = 1826  # 5 years
# "≤ 300 KB" read as 300 000 bytes: within the limit whether the reader means kB or KiB.
DERIVATIVE_MAX_BYTES = 300_000
DERIVATIVE_BITRATES_KBPS = (32, 16, 8)  # the best that fits wins
DERIVATIVE_SAMPLE_RATE = 8000  # MPEG-2.5 Layer III: 8 kHz allows 8…160 kbps
# ID3 tag, the Xing/Info frame and the encoder's padding frames, plus the last partial frame.
_MP3_OVERHEAD_BYTES = 4096
_MP3_SLACK_S = 0.2
_FFMPEG_TIMEOUT_S = 300.0


@dataclass(frozen=True, slots=True)
class EvidenceInput:
    """What is known about a finished, recorded call. ``timeline`` and ``result`` come from the
    scenario run and are already masked; ``audio`` is the 8 kHz PCM WAV the engine recorded."""

    call_id: str
    tenant_id: str
    scenario: str
    scenario_sha256: str
    destination: str  # E.164
    outcome: str
    result: Mapping[str, Any]
    started_at: datetime  # aware
    ended_at: datetime  # aware
    timeline: Sequence[TimelineEvent]
    audio: Path


@dataclass(frozen=True, slots=True)
class EvidenceBundle:
    """A bundle written by :func:`write_evidence`."""

    directory: Path
    manifest_path: Path
    audio_path: Path
    derivative_path: Path
    manifest: dict[str, Any]


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The result of :func:`verify_evidence`: each check as (name, passed, detail)."""

    ok: bool
    checks: list[tuple[str, bool, str]]

    def describe(self) -> str:
        """One line per check: ``✓ audio: sha256 and size match``."""
        return "\n".join(f"{'✓' if passed else '✗'} {name}: {detail}"
                         for name, passed, detail in self.checks)


def canonical_json(value: object) -> bytes:
    """The bytes that are signed: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def sign_manifest(unsigned: Mapping[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of the canonical JSON of a manifest without its ``signature``."""
    return hmac.new(key, canonical_json(unsigned), hashlib.sha256).hexdigest()


def evidence_key_id(key: bytes) -> str:
    """The public name of an evidence key, as ``MasterKey.evidence_key_id`` computes it."""
    return hashlib.sha256(key).hexdigest()[:16]


def choose_bitrate(duration_ms: int, max_bytes: int = DERIVATIVE_MAX_BYTES) -> int:
    """The highest mp3 bitrate (kbps) whose file for ``duration_ms`` of audio stays within
    ``max_bytes``; EvidenceError naming the duration when even the lowest does not fit."""
    for kbps in DERIVATIVE_BITRATES_KBPS:
        if _mp3_size_estimate(duration_ms, kbps) <= max_bytes:
            return kbps
    lowest = DERIVATIVE_BITRATES_KBPS[-1]
    longest_ms = int(((max_bytes - _MP3_OVERHEAD_BYTES) / (lowest * 125) - _MP3_SLACK_S) * 1000)
    raise EvidenceError(
        f"the recording lasts {duration_ms / 1000:.1f} s: even at {lowest} kbps its mp3 would be "
        f"about {_mp3_size_estimate(duration_ms, lowest) // 1000} KB, over the "
        f"{max_bytes // 1000} KB limit (recordings up to {longest_ms // 1000} s fit)")


def write_evidence(data: EvidenceInput, out_dir: Path, *, key: bytes, key_id: str,
                   now: datetime | None = None) -> EvidenceBundle:
    """Write the evidence bundle of ``data`` into ``out_dir/<call_id>/`` and return it.

    The source WAV is copied, not moved; ``now`` (aware, default: the clock) is ``created_at``.
    Nothing is written for unusable input (a naive time, an unreadable WAV), and a bundle whose
    manifest exists is never overwritten. A recording too long for a ≤ 300 KB mp3 still gets its
    bundle, without the derivative: ``derivative.not_made`` says why.
    """
    if not key:
        raise EvidenceError("the evidence key is empty")
    if not data.call_id or data.call_id.startswith(".") or len(data.call_id) > 200 or \
            any(c in data.call_id for c in "/\\\0"):
        raise EvidenceError(f"call_id {data.call_id!r}: not usable as a directory name")
    try:
        canonical_json(dict(data.result))
    except (TypeError, ValueError) as exc:
        raise EvidenceError(f"call {data.call_id}: the result is not plain JSON: {exc}") from exc
    times = {name: _utc_text(value, name) for name, value in
             (("started_at", data.started_at), ("ended_at", data.ended_at),
              ("created_at", now or datetime.now(UTC)))}
    directory = out_dir / data.call_id
    manifest_path = directory / MANIFEST_NAME
    if manifest_path.exists():
        raise EvidenceError(f"{manifest_path}: an evidence bundle already exists for this call")
    sample_rate, duration_ms = _wav_info(data.audio)
    try:
        kbps: int | None = choose_bitrate(duration_ms)
        too_long = ""
    except EvidenceError as exc:
        # Keep the evidence (WAV + signed manifest) all the same: losing a consent recording
        # because no submission-sized mp3 fits would be worse. The manifest says why.
        kbps, too_long = None, str(exc)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvidenceError(f"{directory}: cannot create the bundle directory: {exc}") from exc
    audio_path, derivative_path = directory / AUDIO_NAME, directory / DERIVATIVE_NAME
    audio_sha, audio_bytes = _copy_file(data.audio, audio_path)
    derivative: dict[str, Any] = {"file": None, "format": "mp3", "not_made": too_long}
    if kbps is not None:
        derivative_sha, derivative_bytes, kbps = _write_derivative(audio_path, derivative_path,
                                                                   kbps)
        derivative = {"file": DERIVATIVE_NAME, "sha256": derivative_sha,
                      "bytes": derivative_bytes, "bitrate_kbps": kbps, "format": "mp3"}
    manifest: dict[str, Any] = {
        "format": FORMAT, "call_id": data.call_id, "tenant_id": data.tenant_id,
        "scenario": {"name": data.scenario, "sha256": data.scenario_sha256},
        "destination": data.destination, "outcome": data.outcome, "result": dict(data.result),
        "started_at": times["started_at"], "ended_at": times["ended_at"],
        "prompts": [{"t_ms": e.t_ms, "step": e.step, "text": str(e.detail.get("text", ""))}
                    for e in data.timeline if e.kind == "prompt_started"],
        "dtmf": [{"t_ms": e.t_ms, "step": e.step, "key": str(e.detail.get("key", ""))}
                 for e in data.timeline if e.kind == "key"],
        "audio": {"file": AUDIO_NAME, "sha256": audio_sha, "bytes": audio_bytes,
                  "duration_ms": duration_ms, "sample_rate": sample_rate},
        "derivative": derivative,
        "created_at": times["created_at"],
    }
    manifest["signature"] = {"alg": SIGNATURE_ALG, "key_id": key_id,
                             "value": sign_manifest(manifest, key)}
    with _replacing(manifest_path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    with contextlib.suppress(OSError):  # some filesystems cannot sync a directory
        _fsync(directory)
    return EvidenceBundle(directory, manifest_path, audio_path, derivative_path, manifest)


def verify_evidence(path: Path, *, key: bytes | None,
                    key_id: str | None = None) -> VerifyReport:
    """Check a bundle given by its manifest, its directory or one of its audio files.

    Checks: the manifest parses; its signature matches under ``key`` and names the key's id
    (``key_id``, default: :func:`evidence_key_id` of ``key``) — not checked when ``key`` is
    None; the audio and derivative files have the SHA-256 and size the manifest records.
    """
    manifest_path = path / MANIFEST_NAME if path.is_dir() else \
        path if path.name == MANIFEST_NAME else path.parent / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_bytes().decode("utf-8"))
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise ValueError(f"not an {FORMAT} manifest")
    except (OSError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        return VerifyReport(False, [("manifest", False, f"{manifest_path}: unreadable: {exc}")])
    checks = [("manifest", True, f"{manifest_path} ({FORMAT})"),
              _check_signature(manifest, key, key_id),
              *(_check_file(manifest_path.parent, name, manifest.get(name))
                for name in ("audio", "derivative"))]
    return VerifyReport(all(passed for _, passed, _ in checks), checks)


def purge_evidence(root: Path, *, older_than_days: int, now: datetime,
                   dry_run: bool = False) -> list[Path]:
    """Delete the bundles under ``root`` whose call ended more than ``older_than_days`` before
    ``now``; return them (``dry_run``: the ones that would go, deleting nothing). A directory
    whose manifest is missing or unreadable is kept with a logged warning, never deleted blindly.
    """
    if older_than_days < 1:
        raise EvidenceError(f"older_than_days: expected at least 1, got {older_than_days}")
    if now.tzinfo is None:
        raise EvidenceError("now: expected an aware datetime")
    cutoff = now - timedelta(days=older_than_days)
    purged: list[Path] = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        if not directory.is_dir() or directory.is_symlink() or directory.name.startswith("."):
            continue
        try:
            ended = _manifest_end(directory)
        except EvidenceError as exc:
            log.warning("evidence purge: keeping %s: %s", directory, exc)
            continue
        if ended < cutoff and (dry_run or _remove_bundle(directory)):
            purged.append(directory)
    return purged


# -- writing ---------------------------------------------------------------------------------------
def _utc_text(value: datetime, name: str) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise EvidenceError(f"{name}: expected an aware datetime, got a naive one")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _mp3_size_estimate(duration_ms: int, kbps: int) -> int:
    return int((duration_ms / 1000 + _MP3_SLACK_S) * kbps * 125) + _MP3_OVERHEAD_BYTES


def _wav_info(path: Path) -> tuple[int, int]:
    """(sample rate, duration in ms) of a PCM WAV; EvidenceError naming the file otherwise."""
    try:
        with wave.open(str(path), "rb") as w:
            rate, frame_bytes, frames = w.getframerate(), w.getsampwidth() * w.getnchannels(), 0
            # Count what is there: a truncated file's header claims more than it holds.
            while chunk := w.readframes(65536):
                frames += len(chunk) // frame_bytes
    except FileNotFoundError as exc:
        raise EvidenceError(f"{path}: no such recording") from exc
    except (OSError, wave.Error, EOFError) as exc:
        raise EvidenceError(f"{path}: not a readable PCM WAV: {exc}") from exc
    if rate <= 0:
        raise EvidenceError(f"{path}: the WAV header gives no sample rate")
    return rate, round(frames * 1000 / rate)


@contextlib.contextmanager
def _replacing(target: Path) -> Iterator[Path]:
    """A temporary path next to ``target``, synced and moved over it when the block succeeds,
    removed when it fails: ``target`` is never seen half-written."""
    try:
        fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
    except OSError as exc:
        raise EvidenceError(f"{target}: cannot create a temporary file: {exc}") from exc
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, target)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise EvidenceError(f"{target}: cannot write: {exc}") from exc
        raise


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy_file(source: Path, target: Path) -> tuple[str, int]:
    """Copy ``source`` byte for byte; (SHA-256, size) of the file written."""
    with _replacing(target) as tmp:  # an OSError names the source and becomes EvidenceError
        shutil.copyfile(source, tmp)
        digest, size = _sha256_file(tmp), tmp.stat().st_size
    return digest, size


def _write_derivative(wav: Path, target: Path, kbps: int) -> tuple[str, int, int]:
    """Encode ``wav`` as mono 8 kHz mp3 at ``kbps`` or lower; (SHA-256, size, bitrate)."""
    rates = [r for r in DERIVATIVE_BITRATES_KBPS if r <= kbps]
    with _replacing(target) as tmp:
        for rate in rates:
            _ffmpeg_mp3(wav, tmp, rate)
            size = tmp.stat().st_size
            if size <= DERIVATIVE_MAX_BYTES:
                break
        else:
            raise EvidenceError(f"{target}: the mp3 is {size} bytes even at {rates[-1]} kbps, "
                                f"over the {DERIVATIVE_MAX_BYTES} byte limit")
        digest = _sha256_file(tmp)
    return digest, size, rate


def _ffmpeg_mp3(wav: Path, out: Path, kbps: int) -> None:
    # "file:" + an absolute path: no name is read as a protocol (a colon) or an option ("-").
    argv = ["ffmpeg", "-nostdin", "-loglevel", "error", "-hide_banner", "-y",
            "-i", f"file:{wav.resolve()}", "-vn", "-map_metadata", "-1",
            "-ac", "1", "-ar", str(DERIVATIVE_SAMPLE_RATE),
            "-codec:a", "libmp3lame", "-b:a", f"{kbps}k", "-f", "mp3", f"file:{out.resolve()}"]
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=_FFMPEG_TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise EvidenceError("ffmpeg is not installed; it makes the evidence mp3") from exc
    except subprocess.TimeoutExpired as exc:
        raise EvidenceError(f"{wav}: ffmpeg took over {_FFMPEG_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise EvidenceError(f"{wav}: ffmpeg failed: {' | '.join(err) or done.returncode}")


def _sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


# -- verifying and purging -------------------------------------------------------------------------
def _check_signature(manifest: dict[str, Any], key: bytes | None,
                     key_id: str | None) -> tuple[str, bool, str]:
    sig = manifest.get("signature")
    if not isinstance(sig, dict) or sig.get("alg") != SIGNATURE_ALG or \
            not isinstance(sig.get("value"), str) or not isinstance(sig.get("key_id"), str):
        return "signature", False, f"missing or not {SIGNATURE_ALG}"
    if key is None:
        return "signature", True, f"NOT CHECKED (no key given; key id {sig['key_id']})"
    try:
        expected = sign_manifest({k: v for k, v in manifest.items() if k != "signature"}, key)
    except ValueError:  # NaN or Infinity in a tampered manifest
        return "signature", False, "the manifest holds values that cannot be signed"
    if not hmac.compare_digest(expected.encode(), sig["value"].encode("utf-8", "replace")):
        return "signature", False, f"{SIGNATURE_ALG} does not match (key id {sig['key_id']})"
    wanted_id = key_id if key_id is not None else evidence_key_id(key)
    if sig["key_id"] != wanted_id:
        return "signature", False, f"key id {sig['key_id']!r} is not this key's ({wanted_id})"
    return "signature", True, f"{SIGNATURE_ALG} matches (key id {wanted_id})"


def _check_file(directory: Path, name: str, entry: object) -> tuple[str, bool, str]:
    if name == "derivative" and isinstance(entry, dict) and entry.get("file") is None and \
            isinstance(entry.get("not_made"), str) and entry["not_made"]:
        # no mp3 could fit the size limit; the (signed) manifest says why
        return name, True, f"none: {entry['not_made']}"
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) or \
            not isinstance(entry.get("sha256"), str) or type(entry.get("bytes")) is not int:
        return name, False, "missing or malformed in the manifest"
    file = entry["file"]
    if Path(file).name != file or file in ("", ".", ".."):  # only files in the bundle
        return name, False, f"{file!r} is not a file name inside the bundle"
    path = directory / file
    try:
        size = path.stat().st_size
        digest = _sha256_file(path)
    except OSError as exc:
        return name, False, f"{path}: unreadable: {exc.strerror or exc}"
    if size != entry["bytes"] or digest != entry["sha256"]:
        return name, False, (f"{file}: {size} bytes, SHA-256 {digest}; the manifest says "
                             f"{entry['bytes']} bytes, {entry['sha256']}")
    return name, True, f"{file}: SHA-256 and size ({size} bytes) match"


def _manifest_end(directory: Path) -> datetime:
    """The ``ended_at`` of a bundle's manifest; EvidenceError when it cannot be read."""
    path = directory / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
        ended = datetime.fromisoformat(manifest["ended_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EvidenceError(f"{path}: missing or unreadable: {exc!r}") from exc
    if manifest.get("format") != FORMAT or manifest.get("call_id") != directory.name or \
            ended.tzinfo is None:
        raise EvidenceError(f"{path}: not the {FORMAT} manifest of call {directory.name!r} "
                            "with an aware ended_at")
    return ended


def _remove_bundle(directory: Path) -> bool:
    """Delete a bundle, its manifest last: a crash midway leaves a manifest that still says
    the bundle is due, so the next purge finishes the job. False (logged) when it fails."""
    try:  # sorted: the manifest (True) comes last
        for entry in sorted(directory.iterdir(), key=lambda e: e.name == MANIFEST_NAME):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        directory.rmdir()
    except OSError as exc:
        log.error("evidence purge: cannot delete %s: %s", directory, exc)
        return False
    return True
