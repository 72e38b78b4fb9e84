"""An in-memory :class:`Channel` on a virtual clock: the simulator, the demo and the benchmark.

Nothing waits in real time. Playing a prompt advances the clock by its length (or to the key that
interrupts it); collecting advances it to the next key or the timeout. The callee's behaviour is a
:class:`KeyScript`: keys typed when a gather waits, at fixed offsets, or after a given prompt ends,
and an optional hang-up time. What the callee heard (prompts and the silence between them) can be
captured and written to a WAV file; a recording also holds, on the callee's channel, the DTMF tone
of every key they pressed meanwhile.
"""

from __future__ import annotations

import heapq
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CalleeHangup
from ..media.audio import write_wav
from ..media.clip import BYTES_PER_MS, SAMPLE_RATE, PromptAudio
from .channel import (
    DTMF_KEYS,
    Channel,
    CollectResult,
    CollectSpec,
    KeyCollector,
    PlayResult,
    RecordingInfo,
)

ON_GATHER_DELAY = 0.8  # seconds between a gather starting to wait and the first scripted key
KEY_GAP = 0.25  # seconds between scripted keys
KEY_TONE_MS = 80  # length of a pressed key's tone on the callee's channel of a recording


@dataclass(frozen=True, slots=True)
class KeyCue:
    """Keys the callee types: on the next gather (``at`` and ``after_prompt`` None), at an
    offset in seconds, or after a prompt ends. Empty ``keys`` at a gather means silence."""

    keys: str
    at: float | None = None
    after_prompt: str | None = None

    def __repr__(self) -> str:  # scripted keys may be a secret
        where = f"@{self.at}" if self.at is not None else (
            f"after {self.after_prompt}" if self.after_prompt else "at gather")
        return f"KeyCue({len(self.keys)} keys {where})"


_CUE = re.compile(
    r"^(?:@(?P<at>\d+(?:\.\d+)?)=|after:(?P<after>[a-z0-9_]+)=)?(?P<keys>[0-9*#A-D]*)$")


def parse_cue(text: str) -> KeyCue:
    """``123456`` (next gather), ``''`` (stay silent at the next gather), ``@12.5=1`` (at 12.5 s),
    ``after:prompt_id=1`` (after that prompt ended). Errors never echo the keys."""
    match = _CUE.match(text.strip())
    if not match:
        raise ValueError("a key cue is KEYS, @SECONDS=KEYS or after:PROMPT_ID=KEYS, with keys "
                         "from 0-9 * # A-D")
    at = match.group("at")
    return KeyCue(match.group("keys"), float(at) if at else None, match.group("after"))


@dataclass(slots=True)
class KeyScript:
    """What the simulated callee does."""

    cues: list[KeyCue] = field(default_factory=list)
    hangup_at: float | None = None
    key_gap: float = KEY_GAP
    gather_delay: float = ON_GATHER_DELAY

    @classmethod
    def parse(cls, cues: list[str], hangup_at: float | None = None) -> KeyScript:
        return cls([parse_cue(c) for c in cues], hangup_at)


class SimulatedChannel(Channel):
    """A call that exists only in memory. ``heard_pcm()`` is what the callee heard."""

    def __init__(self, script: KeyScript | None = None, *, call_id: str = "sim",
                 capture_audio: bool = True, recordings_dir: Path | None = None) -> None:
        self.call_id = call_id
        self.script = script or KeyScript()
        self._t = 0.0
        self._up = True
        self._pending: list[tuple[float, int, str]] = []  # (time, seq, key) min-heap
        self._seq = 0
        self._buffer: list[tuple[float, str]] = []
        self._gather_cues = [c for c in self.script.cues if c.at is None and not c.after_prompt]
        self._after_cues = [c for c in self.script.cues if c.after_prompt]
        for cue in self.script.cues:
            if cue.at is not None:
                self._schedule(cue.at, cue.keys)
        self._capture = capture_audio
        self._heard: list[bytes] = []
        self._heard_ms = 0
        self._recordings_dir = recordings_dir
        # (name, start offset in heard bytes, start time in virtual seconds)
        self._recording: tuple[str, int, float] | None = None
        # Keys that reached the line, (virtual seconds, key): the callee side of a recording.
        self._pressed: list[tuple[float, str]] = []
        self.played: list[PromptAudio] = []

    # -- Channel ------------------------------------------------------------------------------
    def now(self) -> float:
        return self._t

    @property
    def is_up(self) -> bool:
        return self._up

    async def play(self, prompt: PromptAudio, *, barge_in: bool = False) -> PlayResult:
        self._check_up()
        start = self._t
        end = start + prompt.duration_ms / 1000
        hangup = self.script.hangup_at
        stop = end if hangup is None or hangup >= end else hangup
        if barge_in:
            first = self._next_key_time()
            if self._buffer:
                first = start  # a key already typed ends a barge-in prompt at once
            if first is not None and first < stop:
                self._move_keys_until(first)
                played = int((first - start) * 1000)
                self._advance_to(first, prompt.pcm()[: played * BYTES_PER_MS])
                self.played.append(prompt)
                return PlayResult(played, interrupted=True)
        self._move_keys_until(stop, inclusive=False)
        played = int((stop - start) * 1000)
        self._advance_to(stop, prompt.pcm()[: played * BYTES_PER_MS] if stop < end else None,
                         prompt)
        self.played.append(prompt)
        if stop < end:
            self._hang_up_now()
        for cue in list(self._after_cues):
            if cue.after_prompt in prompt.prompt_ids:
                self._after_cues.remove(cue)
                self._schedule(self._t + self.script.gather_delay, cue.keys)
        return PlayResult(played)

    async def collect(self, spec: CollectSpec) -> CollectResult:
        self._check_up()
        if self._gather_cues and not self._buffer:
            cue = self._gather_cues.pop(0)
            self._schedule(self._t + self.script.gather_delay, cue.keys)
        collector = KeyCollector(spec, self._t)
        while True:
            deadline, end = collector.deadline()
            key_time, key = self._take_key(deadline)
            hangup = self.script.hangup_at
            if hangup is not None and hangup <= (key_time if key is not None else deadline):
                self._advance_to(max(hangup, self._t))
                self._hang_up_now()
            if key is None:
                self._advance_to(max(deadline, self._t))
                return collector.result(end)
            self._advance_to(max(key_time, self._t))
            done = collector.key(key, self._t, int(key_time * 1000))
            if done is not None:
                return done

    def flush_digits(self) -> None:
        self._buffer.clear()

    async def start_recording(self, name: str) -> None:
        self._check_up()
        self._recording = (name, sum(len(c) for c in self._heard), self._t)

    async def stop_recording(self) -> RecordingInfo | None:
        if self._recording is None:
            return None
        name, offset, start = self._recording
        self._recording = None
        pcm = b"".join(self._heard)[offset:]
        # A key belongs to the recording if it reached the line after the start (a key at the
        # very start instant ended a step before it) up to the stop. The last digit of a gather
        # ending right at the stop keeps its whole tone: the recording runs on until it ends,
        # the engine side padded with silence.
        keys = [(at - start, key) for at, key in self._pressed if start < at <= self._t]
        callee = key_tones(keys, len(pcm)) if keys else bytes(len(pcm))
        path = Path(f"{name}.wav")
        if self._recordings_dir is not None:
            path = self._recordings_dir / path
            write_stereo_recording(path, engine=pcm, callee=callee)
        return RecordingInfo(path, len(callee) // BYTES_PER_MS)

    async def hangup(self) -> None:
        self._up = False

    # -- heard audio --------------------------------------------------------------------------
    def heard_pcm(self) -> bytes:
        """Everything the callee heard, silence included, as 8 kHz mono s16le."""
        return b"".join(self._heard)

    def write_heard_wav(self, path: Path) -> Path:
        write_mono_wav(path, self.heard_pcm())
        return path

    # -- internals ----------------------------------------------------------------------------
    def _check_up(self) -> None:
        if not self._up:
            raise CalleeHangup("the call is no longer up")
        hangup = self.script.hangup_at
        if hangup is not None and self._t >= hangup:
            self._hang_up_now()

    def _hang_up_now(self) -> None:
        self._up = False
        raise CalleeHangup("the callee hung up")

    def _schedule(self, at: float, keys: str) -> None:
        for i, key in enumerate(keys):
            if key not in DTMF_KEYS:
                raise ValueError("scripted keys must be 0-9 * # A-D")
            self._seq += 1
            heapq.heappush(self._pending, (at + i * self.script.key_gap, self._seq, key))

    def _next_key_time(self) -> float | None:
        return self._pending[0][0] if self._pending else None

    def _move_keys_until(self, t: float, *, inclusive: bool = True) -> None:
        pending = self._pending
        while pending and (pending[0][0] <= t if inclusive else pending[0][0] < t):
            at, _, key = heapq.heappop(pending)
            self._buffer.append((at, key))
            self._pressed.append((at, key))

    def _take_key(self, deadline: float) -> tuple[float, str | None]:
        if self._buffer:
            at, key = self._buffer.pop(0)
            return max(at, self._t), key
        if self._pending and self._pending[0][0] <= deadline:
            at, _, key = heapq.heappop(self._pending)
            self._pressed.append((at, key))
            return at, key
        return deadline, None

    def _advance_to(self, t: float, pcm: bytes | None = None,
                    prompt: PromptAudio | None = None) -> None:
        """Move the clock to ``t``; the audio heard meanwhile is ``pcm``, the whole ``prompt``,
        or silence."""
        if self._capture:
            if pcm is None and prompt is not None:
                pcm = prompt.pcm()
            target_ms = round(t * 1000)
            if pcm is None:
                pcm = bytes(max(target_ms - self._heard_ms, 0) * BYTES_PER_MS)
            self._heard.append(pcm)
            self._heard_ms += len(pcm) // BYTES_PER_MS
        self._t = t


def write_mono_wav(path: Path, pcm: bytes) -> None:
    """Write 8 kHz mono s16le PCM as a WAV file (creating folders)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, pcm)


def key_tones(keys: list[tuple[float, str]], n_bytes: int) -> bytes:
    """The callee's side of a recording: 8 kHz s16le silence, at least ``n_bytes`` long, with
    the DTMF tone (ITU-T Q.23, :data:`KEY_TONE_MS` long) of each ``(seconds from the start,
    key)``; longer when the last tone ends later. Overlapping tones add up (saturating)."""
    import numpy as np

    from ..media import dtmf

    bursts = [(round(offset * SAMPLE_RATE), np.frombuffer(dtmf.tone(key, KEY_TONE_MS), "<i2"))
              for offset, key in keys if offset >= 0]
    n = max([n_bytes // 2, *(first + len(burst) for first, burst in bursts)])
    callee = np.zeros(n, dtype=np.int32)
    for first, burst in bursts:
        callee[first: first + len(burst)] += burst
    return np.clip(callee, -32768, 32767).astype("<i2").tobytes()


def write_stereo_recording(path: Path, *, engine: bytes, callee: bytes) -> None:
    """A call recording: callee on the left channel, engine on the right (8 kHz, 16-bit)."""
    import numpy as np

    n = max(len(engine), len(callee)) // 2
    left = np.zeros(n, dtype="<i2")
    right = np.zeros(n, dtype="<i2")
    left[: len(callee) // 2] = np.frombuffer(callee[: n * 2], dtype="<i2")
    right[: len(engine) // 2] = np.frombuffer(engine[: n * 2], dtype="<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, np.column_stack([left, right]).tobytes(), channels=2)
