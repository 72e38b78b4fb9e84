"""In-band DTMF: a tone generator and a sans-I/O Goertzel detector, on 8 kHz mono s16le.

Keys are the 16 dual tones of ITU-T Q.23: one frequency from the low group (rows) plus one from
the high group (columns). The detector is the standard block Goertzel receiver (the approach of
Asterisk ``dsp.c`` and spandsp ``dtmf.c``): 102-sample blocks (12.75 ms), the power at the eight
frequencies per block, a per-block decision, and a key reported once when two consecutive blocks
agree. The limits follow the ITU-T Q.24 receiver values most administrations use (Bellcore):
normal twist ≤ 8 dB, reverse twist ≤ 4 dB; a tone of ≥ 40 ms is accepted and one of ≤ 23 ms
rejected, which here means ≥ 40 ms always found, ≤ 20 ms never, 21-39 ms depending on how the tone
falls across the blocks.

No I/O and no clock: :meth:`GoertzelDetector.feed` takes bytes and returns events, with times
counted in samples from the first byte fed. A key may be a secret digit, so neither errors nor
``repr`` ever show it.

Levels are dBFS relative to a full-scale square wave, as in :mod:`ars_engine.media.audio`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .clip import SAMPLE_RATE, SAMPLE_WIDTH

__all__ = ["BLOCK_SAMPLES", "DTMF_FREQUENCIES", "DtmfEvent", "GoertzelDetector", "block_powers",
           "tone"]

# ITU-T Q.23: the keypad is a 4 × 4 grid; the row picks the low-group frequency and the column
# the high-group one (Hz).
LOW_GROUP = (697, 770, 852, 941)
HIGH_GROUP = (1209, 1336, 1477, 1633)
_KEYPAD = ("123A", "456B", "789C", "*0#D")
DTMF_FREQUENCIES: dict[str, tuple[int, int]] = {
    key: (LOW_GROUP[row], HIGH_GROUP[col])
    for row, keys in enumerate(_KEYPAD) for col, key in enumerate(keys)
}
_KEY_AT = "".join(_KEYPAD)  # index row * 4 + col → key

_FULL_SCALE = 32768.0
_RAMP_MS = 5  # raised-cosine on/off ramps: a hard edge splatters energy across the band (clicks)

# -- detector tuning ------------------------------------------------------------------------------
# 102 samples put the neighbouring row frequencies (73-89 Hz apart) near the first null of the
# block's rectangular window (8000 / 102 = 78 Hz), so a row tone hardly leaks into the next row;
# the same size as Asterisk and spandsp.
BLOCK_SAMPLES = 102
_BLOCK_BYTES = BLOCK_SAMPLES * SAMPLE_WIDTH
# Weakest tone accepted, per frequency: about -42 dBm0 (a G.711 full-scale sine is about
# +3 dBm0), spandsp's threshold. Keys at -30 dBFS are found, at -50 dBFS not (tests).
MIN_TONE_DBFS = -48.0
# Q.24 twist limits (power ratios): "normal" twist is the high group weaker than the low group
# (lines lose more at high frequencies), "reverse" twist the high group stronger.
NORMAL_TWIST = 10 ** (8.0 / 10)  # 8 dB
REVERSE_TWIST = 10 ** (4.0 / 10)  # 4 dB
# The other frequencies of each group must be this far below the strongest (8 dB), so speech or
# music with energy spread over several frequencies is not taken for a key.
RELATIVE_PEAK = 10 ** (8.0 / 10)
# The two tones must hold this share of the block's energy. A block only partly covered by a tone
# scores about the covered fraction, so two consecutive hits need ≥ 2 × 82 samples of tone: a
# ≤ 20 ms tone is never reported however it falls across blocks (Q.24: reject ≤ 23 ms).
TONE_ENERGY_SHARE = 0.8
# A press starts when two consecutive blocks show the same key (≥ 25.5 ms of tone), and ends
# after this many consecutive blocks without it.
AGREE_BLOCKS = 2

# A sine of amplitude a (fraction of full scale) over a block has |X(f)|² ≈ (a · N / 2)², and an
# amplitude a is 20·log10(a) - 3 dBFS on our scale.
_MIN_AMPLITUDE = 10 ** ((MIN_TONE_DBFS + 3.0) / 20)
_MIN_POWER = (_MIN_AMPLITUDE * BLOCK_SAMPLES / 2) ** 2
_FREQS = np.array(LOW_GROUP + HIGH_GROUP, dtype=np.float64)
_PHASE = 2 * np.pi * np.outer(np.arange(BLOCK_SAMPLES), _FREQS) / SAMPLE_RATE  # (N, 8)
# cos and sin side by side: one matrix product gives the real and imaginary parts for all blocks.
_BASIS = np.ascontiguousarray(np.hstack([np.cos(_PHASE), np.sin(_PHASE)]))


def _check_key(key: object) -> tuple[int, int]:
    if not isinstance(key, str) or key not in DTMF_FREQUENCIES:
        raise ValueError("not a DTMF key")  # never the key itself: it may be a secret digit
    return DTMF_FREQUENCIES[key]


def tone(key: str, ms: int = 100, level_dbfs: float = -10.0) -> bytes:
    """The dual tone of ``key`` (0-9 * # A-D) for ``ms`` milliseconds, as 8 kHz mono s16le.

    Both frequencies have the same amplitude, each 6 dB below ``level_dbfs`` (peak), so the sum
    peaks at ``level_dbfs`` and never clips up to 0 dBFS; its RMS level is about ``level_dbfs -
    6`` dBFS. 5 ms raised-cosine ramps open and close the tone without clicks. Raises ValueError
    for anything but one DTMF key (the message never contains it).
    """
    low, high = _check_key(key)
    if ms < 0:
        raise ValueError("a tone cannot be shorter than 0 ms")
    n = ms * SAMPLE_RATE // 1000
    amplitude = _FULL_SCALE * 10 ** (level_dbfs / 20) / 2
    t = np.arange(n, dtype=np.float64) / SAMPLE_RATE
    x = amplitude * (np.sin(2 * np.pi * low * t) + np.sin(2 * np.pi * high * t))
    ramp = min(_RAMP_MS * SAMPLE_RATE // 1000, n // 2)
    if ramp:
        window = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        x[:ramp] *= window
        x[n - ramp:] *= window[::-1]
    return np.clip(np.rint(x), -32768, 32767).astype("<i2").tobytes()


def block_powers(blocks: npt.NDArray[np.int16]) -> npt.NDArray[np.float64]:
    """Goertzel powers of the eight DTMF frequencies for each row of ``blocks`` (n × 102 int16),
    samples scaled to ±1: an n × 8 array, low group first.

    The Goertzel recurrence is a per-sample way of computing one DFT term at any frequency,
    ``|Σ x[k]·e^(-jωk)|²``; with numpy the same value comes from one matrix product over all
    blocks at once, which is the fast form here (tests check both agree).
    """
    return _powers(blocks.astype(np.float64) / _FULL_SCALE)


def _powers(x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    parts = x @ _BASIS  # (n, 16): Re for the 8 frequencies, then Im
    powers: npt.NDArray[np.float64] = parts[:, :8] ** 2 + parts[:, 8:] ** 2
    return powers


def _decide(blocks: npt.NDArray[np.int16]) -> list[str | None]:
    """The key each block shows, or None: powers and energies for all blocks at once (numpy),
    then the checks block by block (plain Python on eight numbers beats numpy's call costs)."""
    x = blocks.astype(np.float64) / _FULL_SCALE
    energies: list[float] = np.einsum("ij,ij->i", x, x).tolist()
    powers: list[list[float]] = _powers(x).tolist()
    return [_key_of(p, e) for p, e in zip(powers, energies, strict=True)]


def _key_of(powers: list[float], energy: float) -> str | None:
    """The Q.24 acceptance checks on one block's eight powers and its energy."""
    rows, cols = powers[:4], powers[4:]
    row_power, col_power = max(rows), max(cols)
    if row_power < _MIN_POWER or col_power < _MIN_POWER:
        return None
    if row_power > col_power * NORMAL_TWIST or col_power > row_power * REVERSE_TWIST:
        return None
    # The second strongest of each group (a tie with the strongest fails too).
    if sorted(rows)[2] * RELATIVE_PEAK > row_power or sorted(cols)[2] * RELATIVE_PEAK > col_power:
        return None
    # For a pure dual tone, row + col power = (N / 2) × block energy.
    if row_power + col_power < TONE_ENERGY_SHARE * (BLOCK_SAMPLES / 2) * energy:
        return None
    return _KEY_AT[rows.index(row_power) * 4 + cols.index(col_power)]


@dataclass(frozen=True, slots=True)
class DtmfEvent:
    """A key press seen in the audio: the key and when its tone started (ms from the first
    sample fed to the detector, to the block: ±13 ms)."""

    key: str
    start_ms: int

    def __repr__(self) -> str:  # the key may be a secret digit
        return f"DtmfEvent(*, {self.start_ms} ms)"


class GoertzelDetector:
    """Sans-I/O in-band DTMF receiver: ``feed(pcm) -> list[DtmfEvent]``, one event per press.

    Audio is 8 kHz mono s16le in chunks of any size (bytes, an odd trailing byte included, wait
    for the next call). Every full 102-sample block is decided on its own (:func:`block_powers`
    and the Q.24 checks); a key is reported when two consecutive blocks show it (≥ 25.5 ms of
    tone). A press ends when two consecutive blocks show something else (silence, noise or
    another key), so a single bad block inside a long press does not split it, and a key held
    for seconds is one event.
    """

    __slots__ = ("_buffer", "_held", "_last_hit", "_misses", "_samples")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._samples = 0  # samples decided so far (the start of the next block)
        self._last_hit: str | None = None  # what the previous block showed
        self._held: str | None = None  # the key of the press in progress, already reported
        self._misses = 0  # consecutive blocks, during a press, not showing its key

    def feed(self, pcm: bytes) -> list[DtmfEvent]:
        """Take more audio; return the presses that started in the blocks it completed."""
        buffer = self._buffer
        buffer += pcm
        count = len(buffer) // _BLOCK_BYTES
        if not count:
            return []
        used = count * _BLOCK_BYTES
        blocks = np.frombuffer(bytes(buffer[:used]), dtype="<i2").reshape(count, BLOCK_SAMPLES)
        del buffer[:used]
        events: list[DtmfEvent] = []
        for hit in _decide(blocks):
            if hit is not None and hit == self._last_hit and hit != self._held:
                # The press began with the previous block.
                start = self._samples - BLOCK_SAMPLES
                events.append(DtmfEvent(hit, start * 1000 // SAMPLE_RATE))
                self._held, self._misses = hit, 0
            elif self._held is not None and hit != self._held:
                self._misses += 1
                if self._misses >= AGREE_BLOCKS:
                    self._held, self._misses = None, 0
            else:
                self._misses = 0
            self._last_hit = hit
            self._samples += BLOCK_SAMPLES
        return events

    @property
    def time_ms(self) -> float:
        """Milliseconds of audio decided so far (whole blocks)."""
        return self._samples * 1000 / SAMPLE_RATE

