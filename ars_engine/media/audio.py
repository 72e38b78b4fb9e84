"""Audio helpers on 8 kHz mono signed 16-bit little-endian PCM ("slin"), numpy underneath.

* G.711 μ-law and A-law, exactly as the ITU-T G.711 reference (Sun ``g711.c``): encoding is a
  65 536-entry lookup table indexed by the 16-bit sample, decoding a 256-entry table, so a 20 ms
  RTP frame costs one numpy ``take``.
* WAV in and out (stdlib ``wave`` when the file is already slin), conversion of anything else
  through sox (WAV, fast) or ffmpeg (everything, mp3 included).
* Loudness normalisation and silence trimming, so every prompt plays at the same level and starts
  at once after answer.

Levels are dBFS relative to a full-scale square wave (32768), so a full-scale sine is -3 dBFS.
"""

from __future__ import annotations

import io
import math
import shutil
import subprocess
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import MediaError
from .clip import BYTES_PER_MS, SAMPLE_RATE, SAMPLE_WIDTH

FULL_SCALE = 32768.0
_FRAME = SAMPLE_RATE // 100  # 10 ms analysis frames for trimming
# Below this RMS a clip counts as silence: normalising it would only amplify noise or dither.
SILENCE_FLOOR_DBFS = -60.0
_CONVERT_TIMEOUT_S = 60.0


# --- G.711 -------------------------------------------------------------------------------------


def _build_ulaw_tables() -> tuple[np.ndarray, np.ndarray]:
    # ITU-T G.711 μ-law, as Sun g711.c linear2ulaw/ulaw2linear (14-bit magnitude, bias 0x84).
    x = np.arange(65536, dtype=np.int64)
    x = np.where(x >= 32768, x - 65536, x)  # index is the int16 sample viewed as uint16
    v = x >> 2
    mask = np.where(v < 0, 0x7F, 0xFF)
    v = np.minimum(np.abs(v), 8159) + 0x21
    seg = np.searchsorted(np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]), v)
    uval = np.where(seg >= 8, 0x7F, (seg << 4) | ((v >> (seg + 1)) & 0xF))
    encode = (uval ^ mask).astype(np.uint8)

    u = ~np.arange(256, dtype=np.int64) & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    decode = np.where(u & 0x80, 0x84 - t, t - 0x84).astype("<i2")
    return encode, decode


def _build_alaw_tables() -> tuple[np.ndarray, np.ndarray]:
    # ITU-T G.711 A-law, as Sun g711.c linear2alaw/alaw2linear (13-bit magnitude, even bits
    # inverted by the 0x55 mask).
    x = np.arange(65536, dtype=np.int64)
    x = np.where(x >= 32768, x - 65536, x)
    v = x >> 3
    mask = np.where(v >= 0, 0xD5, 0x55)
    v = np.where(v >= 0, v, -v - 1)
    seg = np.searchsorted(np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF]), v)
    quant = np.where(seg < 2, v >> 1, v >> np.maximum(seg, 1)) & 0x0F
    aval = np.where(seg >= 8, 0x7F, (seg << 4) | quant)
    encode = (aval ^ mask).astype(np.uint8)

    a = np.arange(256, dtype=np.int64) ^ 0x55
    seg = (a & 0x70) >> 4
    t = (a & 0x0F) << 4
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    decode = np.where(a & 0x80, t, -t).astype("<i2")
    return encode, decode


_ULAW_ENC, _ULAW_DEC = _build_ulaw_tables()
_ALAW_ENC, _ALAW_DEC = _build_alaw_tables()


def _samples_u16(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<u2", count=len(pcm) // SAMPLE_WIDTH)


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode slin to G.711 μ-law, one byte per sample (a trailing odd byte is dropped)."""
    return _ULAW_ENC.take(_samples_u16(pcm)).tobytes()


def ulaw_decode(data: bytes) -> bytes:
    """Decode G.711 μ-law bytes to slin."""
    return _ULAW_DEC.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


def alaw_encode(pcm: bytes) -> bytes:
    """Encode slin to G.711 A-law, one byte per sample (a trailing odd byte is dropped)."""
    return _ALAW_ENC.take(_samples_u16(pcm)).tobytes()


def alaw_decode(data: bytes) -> bytes:
    """Decode G.711 A-law bytes to slin."""
    return _ALAW_DEC.take(np.frombuffer(data, dtype=np.uint8)).tobytes()


# --- levels --------------------------------------------------------------------------------------


def _samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2", count=len(pcm) // SAMPLE_WIDTH)


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of slin in dBFS; ``-inf`` for empty or all-zero audio."""
    x = _samples(pcm).astype(np.float64)
    if x.size == 0:
        return -math.inf
    ms = float(np.dot(x, x)) / x.size
    return 10.0 * math.log10(ms / FULL_SCALE**2) if ms > 0 else -math.inf


def peak_dbfs(pcm: bytes) -> float:
    """Peak sample level of slin in dBFS; ``-inf`` for empty or all-zero audio."""
    x = _samples(pcm)
    if x.size == 0:
        return -math.inf
    peak = int(np.abs(x.astype(np.int32)).max())
    return 20.0 * math.log10(peak / FULL_SCALE) if peak else -math.inf


def normalize_loudness(pcm: bytes, target_dbfs: float = -20.0, peak_dbfs: float = -1.0) -> bytes:
    """Scale slin to an RMS of ``target_dbfs``, with less gain if a peak would pass ``peak_dbfs``.

    Audio quieter than ``SILENCE_FLOOR_DBFS`` (silence, dither) is returned unchanged.
    """
    x = _samples(pcm).astype(np.float64)
    level = rms_dbfs(pcm)
    if x.size == 0 or level < SILENCE_FLOOR_DBFS:
        return pcm[: x.size * SAMPLE_WIDTH]
    gain = 10.0 ** ((target_dbfs - level) / 20.0)
    peak = float(np.abs(x).max())
    peak_limit = FULL_SCALE * 10.0 ** (peak_dbfs / 20.0)
    if peak * gain > peak_limit:
        gain = peak_limit / peak
    y: np.ndarray = np.clip(np.rint(x * gain), -32768, 32767).astype("<i2")
    return y.tobytes()


def trim_silence(pcm: bytes, threshold_dbfs: float = -45.0, keep_ms: int = 30) -> bytes:
    """Cut leading and trailing silence, keeping ``keep_ms`` of it on each side.

    Speech is any 10 ms frame whose RMS is above ``threshold_dbfs`` (frames, not samples, so one
    click does not count as speech). Audio with no speech at all comes back empty.
    """
    x = _samples(pcm)
    n_frames = -(-x.size // _FRAME)
    if n_frames == 0:
        return b""
    padded = np.zeros(n_frames * _FRAME, dtype=np.float64)
    padded[: x.size] = x
    frames = padded.reshape(n_frames, _FRAME)
    energy = np.einsum("ij,ij->i", frames, frames) / _FRAME
    threshold = (FULL_SCALE * 10.0 ** (threshold_dbfs / 20.0)) ** 2
    loud = np.flatnonzero(energy > threshold)
    if loud.size == 0:
        return b""
    keep = keep_ms * SAMPLE_RATE // 1000
    start = max(0, int(loud[0]) * _FRAME - keep)
    end = min(x.size, (int(loud[-1]) + 1) * _FRAME + keep)
    return x[start:end].tobytes()


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of digital silence as slin."""
    if ms < 0:
        raise ValueError("silence length must be >= 0 ms")
    return bytes(ms * BYTES_PER_MS)


# --- WAV and conversion ------------------------------------------------------------------------


def write_wav(
    path: str | Path | BinaryIO, pcm: bytes, rate: int = SAMPLE_RATE, channels: int = 1
) -> None:
    """Write 16-bit PCM as a WAV file (not atomic: callers that need that write a temp file)."""
    with wave.open(path if not isinstance(path, str | Path) else str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(SAMPLE_WIDTH)
        w.setframerate(rate)
        w.writeframes(pcm)


def slin_from_wav(source: str | Path | BinaryIO) -> bytes | None:
    """PCM of a WAV that is already 8 kHz mono 16-bit, or None if it needs converting.

    ``source`` is a path or a binary file object. Errors other than "not a plain WAV" (a missing
    file) propagate.
    """
    try:
        with wave.open(source if not isinstance(source, str | Path) else str(source), "rb") as w:
            if (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getcomptype()) != (
                SAMPLE_RATE,
                1,
                SAMPLE_WIDTH,
                "NONE",
            ):
                return None
            # readframes stops at end of data, so streamed WAVs (espeak-ng --stdout writes a
            # 0x7fffffff length) read correctly too.
            pcm = w.readframes(w.getnframes())
    except (wave.Error, EOFError):
        return None  # float, extensible or odd WAVs: let sox/ffmpeg deal with them
    return pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH]


def read_wav(path: str | Path) -> bytes:
    """Read any WAV file (any rate, channels, sample format) as 8 kHz mono slin."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path}: no such audio file")
    pcm = slin_from_wav(path)
    return pcm if pcm is not None else convert_to_slin(path)


def _run_converter(argv: list[str], stdin: bytes | None, what: str) -> bytes:
    try:
        done = subprocess.run(
            argv,
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=_CONVERT_TIMEOUT_S,
            check=False,
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{argv[0]} is not installed; it is needed to convert {what}") from exc
    except subprocess.TimeoutExpired as exc:
        raise MediaError(f"{argv[0]} took over {_CONVERT_TIMEOUT_S:.0f} s on {what}") from exc
    if done.returncode != 0:
        err = done.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        raise MediaError(f"{argv[0]} failed on {what}: {' | '.join(err) or done.returncode}")
    out = done.stdout
    return out[: len(out) // SAMPLE_WIDTH * SAMPLE_WIDTH]


# Output options: raw 8 kHz mono signed 16-bit little-endian on stdout.
_SOX_SLIN_OUT = f"-t raw -r {SAMPLE_RATE} -c 1 -b 16 -e signed-integer -L -".split()
_FFMPEG_SLIN_OUT = f"-vn -f s16le -acodec pcm_s16le -ar {SAMPLE_RATE} -ac 1 pipe:1".split()


def _sox_available() -> bool:
    return shutil.which("sox") is not None


def wav_bytes_to_slin(data: bytes) -> bytes:
    """Convert WAV bytes of any rate/channels to slin: directly if already slin, else sox.

    sox is used over ffmpeg because it is ~15x faster here (see ``tts.EspeakNg``); ffmpeg is the
    fallback when sox is missing or cannot read the file.
    """
    pcm = slin_from_wav(io.BytesIO(data))
    if pcm is not None:
        return pcm
    if _sox_available():
        # -D: no dither, so output is deterministic and silence stays exactly zero.
        argv = ["sox", "-D", "-V1", "-t", "wav", "-", *_SOX_SLIN_OUT]
        try:
            return _run_converter(argv, data, "WAV audio")
        except MediaError:
            pass  # e.g. a WAV codec sox lacks; ffmpeg reads more formats
    return convert_to_slin(data)


def convert_to_slin(source: bytes | str | Path) -> bytes:
    """Convert audio of any format ffmpeg reads (WAV, mp3, ogg, m4a…) to 8 kHz mono slin.

    ``source`` is the file's bytes (piped on stdin) or a path.
    """
    base = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if isinstance(source, bytes):
        return _run_converter([*base, "-i", "pipe:0", *_FFMPEG_SLIN_OUT], source, "audio data")
    path = Path(source).resolve()  # absolute: a name starting with "-" is never an option
    if not path.is_file():
        raise MediaError(f"{path}: no such audio file")
    # "file:" stops ffmpeg reading a colon in the name as a protocol (http:, concat:…).
    return _run_converter([*base, "-i", f"file:{path}", *_FFMPEG_SLIN_OUT], None, str(path))
