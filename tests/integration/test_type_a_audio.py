"""Acceptance: the WAV of a type A simulation contains the digit clips in the right order, at 8 kHz
mono.

The scenario runs with the real espeak-ng prompts; the heard audio is written to a WAV, read back,
and each digit clip is located in it by normalised cross-correlation (gain-independent, so it
would survive a level change on the way; here the channel copies PCM, so matches are exact). The
code is the stretch between the end of the ``code_is`` prompt ("인증번호는") and the start of
``suffix_imnida`` ("입니다"): decoding that stretch with the ten digit clips must give back the
code, each digit a digit-gap apart.
"""

from __future__ import annotations

import itertools
import wave
from pathlib import Path

import numpy as np
import pytest

from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE_RATE = 8000
# NCC of a clip with an exact (or rescaled) copy of itself is 1.0. The bar is high because some
# clips share sounds: with espeak-ng the tail of "칠" (7) scores 0.98 against "일" (1).
MATCH = 0.995
ABSENT = 0.9  # digits not in the code stay far below this (about 0.5 with espeak-ng)


def normalised_cross_correlation(signal: np.ndarray, template: np.ndarray) -> np.ndarray:
    """NCC of ``template`` at every offset of ``signal`` (valid offsets only), in [-1, 1].

    Both are mean-removed per window, so a gain or DC change does not move the score.
    """
    n = len(template)
    signal = signal.astype(np.float64)
    t = template.astype(np.float64) - template.mean()
    t_norm = np.linalg.norm(t)
    size = 1 << int(np.ceil(np.log2(len(signal) + n)))
    corr = np.fft.irfft(np.fft.rfft(signal, size) * np.conj(np.fft.rfft(t, size)), size)
    corr = corr[: len(signal) - n + 1]  # t is zero-mean: sum(s * t) == sum((s - mean(s)) * t)
    c1 = np.concatenate(([0.0], np.cumsum(signal)))
    c2 = np.concatenate(([0.0], np.cumsum(signal * signal)))
    sums = c1[n:] - c1[:-n]
    energy = (c2[n:] - c2[:-n]) - sums * sums / n
    denominator = np.sqrt(np.maximum(energy, 0.0)) * t_norm
    ncc = np.zeros_like(corr)
    audible = denominator > 1e-6 * n
    ncc[audible] = corr[audible] / denominator[audible]
    return ncc


def find(signal: np.ndarray, template: np.ndarray, threshold: float = MATCH) -> list[int]:
    """Offsets where ``template`` occurs in ``signal`` (peaks above ``threshold``, one per
    occurrence), ascending."""
    ncc = normalised_cross_correlation(signal, template)
    found: list[int] = []
    for start in np.flatnonzero(ncc >= threshold):
        if found and start - found[-1] < len(template) // 2:
            if ncc[start] > ncc[found[-1]]:
                found[-1] = int(start)
            continue
        found.append(int(start))
    return found


def samples(clip_pcm: bytes) -> np.ndarray:
    return np.frombuffer(clip_pcm, dtype="<i2")


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        assert w.getframerate() == SAMPLE_RATE
        assert w.getnchannels() == 1
        assert w.getsampwidth() == 2
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


async def heard_type_a(media: MediaLibrary, code: str, wav: Path) -> np.ndarray:
    scenario = load_scenario(ROOT / "scenarios" / "type_a.yaml", prompts=media.catalogue)
    channel = SimulatedChannel(KeyScript.parse([""]), call_id="audio-a")  # no repeat
    result = await Interpreter(scenario, media).run(channel, {"code": code})
    assert result.outcome == "success", result.describe()
    channel.write_heard_wav(wav)
    return read_wav(wav)


def code_region(heard: np.ndarray, media: MediaLibrary) -> tuple[int, int]:
    """Sample offsets (start, end) between "인증번호는" and the "입니다" that follows it."""
    intro = samples(media.prompt("code_is").pcm)
    suffix = samples(media.prompt("suffix_imnida").pcm)
    intro_at = find(heard, intro)
    assert len(intro_at) == 1, f"code_is heard {len(intro_at)} times"
    start = intro_at[0] + len(intro)
    suffix_at = [p for p in find(heard, suffix) if p >= start]
    assert suffix_at, "suffix_imnida not heard after the code"
    return start, suffix_at[0]


def decode_digits(region: np.ndarray, media: MediaLibrary) -> list[tuple[int, str]]:
    """(offset, digit) of every digit clip heard in ``region``, in time order.

    Candidates are taken best score first; one overlapping an accepted clip is dropped (two
    clips cannot be heard at the same time)."""
    candidates = []
    for digit in "0123456789":
        clip = samples(media.digits(digit)[0].pcm)
        ncc = normalised_cross_correlation(region, clip)
        candidates += [(float(ncc[at]), at, at + len(clip), digit) for at in find(region, clip)]
    accepted: list[tuple[int, int, str]] = []
    for _score, start, end, digit in sorted(candidates, reverse=True):
        if all(end <= s or start >= e for s, e, _ in accepted):
            accepted.append((start, end, digit))
    return sorted((start, digit) for start, _, digit in accepted)


@pytest.mark.parametrize("code", ["4071", "5505"])
async def test_type_a_wav_reads_the_code_digit_clips_in_order(
        real_media: MediaLibrary, tmp_path: Path, code: str) -> None:
    heard = await heard_type_a(real_media, code, tmp_path / "heard.wav")
    start, end = code_region(heard, real_media)
    region = heard[start:end]
    decoded = decode_digits(region, real_media)
    assert "".join(d for _, d in decoded) == code, decoded
    positions = [at for at, _ in decoded]
    assert positions == sorted(set(positions)), "digit positions must strictly increase"
    # Each digit follows the previous one after exactly the digit gap (a few samples of slack).
    gap = real_media.digit_gap_ms * SAMPLE_RATE // 1000
    for (at, digit), (next_at, _) in itertools.pairwise(decoded):
        clip_len = len(real_media.digits(digit)[0].pcm) // 2
        assert abs(next_at - (at + clip_len + gap)) <= 2, (at, digit, next_at)
    # The code starts right after "인증번호는" and "입니다" right after the last digit.
    first_at, _ = decoded[0]
    last_at, last_digit = decoded[-1]
    assert first_at <= 2
    assert abs(len(region) - (last_at + len(real_media.digits(last_digit)[0].pcm) // 2)) <= 2


async def test_type_a_wav_holds_no_clip_of_digits_not_in_the_code(
        real_media: MediaLibrary, tmp_path: Path) -> None:
    heard = await heard_type_a(real_media, "4071", tmp_path / "heard.wav")
    start, end = code_region(heard, real_media)
    region = heard[start:end]
    for digit in "0147":
        clip = samples(real_media.digits(digit)[0].pcm)
        assert len(find(region, clip)) == 1, f"digit {digit} must be heard exactly once"
    for digit in "235689":
        clip = samples(real_media.digits(digit)[0].pcm)
        best = normalised_cross_correlation(region, clip).max()
        assert best < ABSENT, f"digit {digit} looks present (NCC {best:.3f})"


def test_correlation_finds_a_clip_after_a_gain_change_and_noise(real_media: MediaLibrary) -> None:
    # The locator itself: a quieter copy with a little noise, at a known offset, is still found
    # there; a different digit is not.
    clip = samples(real_media.digits("7")[0].pcm).astype(np.float64)
    rng = np.random.default_rng(7)
    signal = rng.normal(0, 30, 3 * SAMPLE_RATE)
    signal[5000:5000 + len(clip)] += 0.4 * clip
    assert find(signal, clip, threshold=0.95) == [5000]
    other = samples(real_media.digits("2")[0].pcm)
    assert find(signal, other, threshold=ABSENT) == []
