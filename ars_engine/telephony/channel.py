"""The one seam between scenarios and telephony.

The interpreter talks to a call only through :class:`Channel`. Each backend (simulated, embedded
SIP, Asterisk) implements it. A backend knows nothing about scenarios; the interpreter knows nothing
about SIP or Asterisk.

Rules every implementation keeps:

* Time is seconds since the call was answered, from :meth:`Channel.now` (virtual in simulation).
* Keys the callee presses are buffered in arrival order. A ``play`` with ``barge_in=True`` stops at
  the first key and leaves that key in the buffer for the next ``collect``; keys during a
  ``play`` without barge-in stay buffered too; the interpreter calls :meth:`flush_digits` when a
  gather must ignore them.
* Once the callee hangs up, every operation raises :class:`~ars_engine.errors.CalleeHangup`.
"""

from __future__ import annotations

import abc
import enum
from dataclasses import dataclass
from pathlib import Path

from ..media.clip import PromptAudio

DTMF_KEYS = frozenset("0123456789*#ABCD")


@dataclass(frozen=True, slots=True)
class PlayResult:
    """How a play ended: ``played_ms`` of audio reached the callee; ``interrupted`` by a key."""

    played_ms: int
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class CollectSpec:
    """What to collect. Timeouts are seconds; ``total_timeout`` bounds the whole gather."""

    max_digits: int
    min_digits: int = 1
    finish_key: str | None = None
    first_digit_timeout: float = 5.0
    inter_digit_timeout: float = 3.0
    total_timeout: float | None = None


class CollectEnd(enum.Enum):
    """Why a collect ended."""

    MAX_DIGITS = "max_digits"
    FINISH_KEY = "finish_key"
    FIRST_DIGIT_TIMEOUT = "first_digit_timeout"
    INTER_DIGIT_TIMEOUT = "inter_digit_timeout"
    TOTAL_TIMEOUT = "total_timeout"


@dataclass(frozen=True, slots=True)
class CollectResult:
    """Digits collected (finish key excluded) and the time of every key, ms since answer.

    ``key_times_ms`` has one entry per key received, the finish key included.
    """

    digits: str
    end: CollectEnd
    key_times_ms: tuple[int, ...] = ()

    def __repr__(self) -> str:  # digits may be a secret: never in a repr
        return f"CollectResult({len(self.digits)} digits, {self.end.value})"


class KeyCollector:
    """The collect rules every channel shares: which timeout runs next, and when a key ends
    the collect. The channel supplies time (real or virtual) and the keys."""

    def __init__(self, spec: CollectSpec, start: float) -> None:
        self.spec = spec
        self.last = start
        self.total = start + spec.total_timeout if spec.total_timeout else None
        self.digits: list[str] = []
        self.times: list[int] = []

    def deadline(self) -> tuple[float, CollectEnd]:
        """When the wait for the next key ends, and how the collect ends if it does."""
        if self.digits:
            deadline = self.last + self.spec.inter_digit_timeout
            end = CollectEnd.INTER_DIGIT_TIMEOUT
        else:
            deadline = self.last + self.spec.first_digit_timeout
            end = CollectEnd.FIRST_DIGIT_TIMEOUT
        if self.total is not None and self.total < deadline:
            return self.total, CollectEnd.TOTAL_TIMEOUT
        return deadline, end

    def key(self, key: str, now: float, t_ms: int) -> CollectResult | None:
        """Take one key (received at ``t_ms`` since answer, handled at ``now``); the result
        when it ends the collect."""
        self.last = now
        self.times.append(t_ms)
        if self.spec.finish_key and key == self.spec.finish_key:
            return self.result(CollectEnd.FINISH_KEY)
        self.digits.append(key)
        if len(self.digits) >= self.spec.max_digits:
            return self.result(CollectEnd.MAX_DIGITS)
        return None

    def result(self, end: CollectEnd) -> CollectResult:
        return CollectResult("".join(self.digits), end, tuple(self.times))


@dataclass(frozen=True, slots=True)
class RecordingInfo:
    """A finished recording: where it is and how long it lasted."""

    path: Path
    duration_ms: int


class Channel(abc.ABC):
    """An answered call as the interpreter sees it."""

    call_id: str

    @abc.abstractmethod
    def now(self) -> float:
        """Seconds since the call was answered."""

    @property
    @abc.abstractmethod
    def is_up(self) -> bool:
        """False once either side has hung up."""

    @abc.abstractmethod
    async def play(self, prompt: PromptAudio, *, barge_in: bool = False) -> PlayResult:
        """Play ``prompt`` to the callee; return when it ended or a key interrupted it."""

    @abc.abstractmethod
    async def collect(self, spec: CollectSpec) -> CollectResult:
        """Collect keys (buffered ones first) until the spec says stop."""

    @abc.abstractmethod
    def flush_digits(self) -> None:
        """Drop every buffered key."""

    @abc.abstractmethod
    async def start_recording(self, name: str) -> None:
        """Start recording both directions under ``name`` (no extension)."""

    @abc.abstractmethod
    async def stop_recording(self) -> RecordingInfo | None:
        """Stop the current recording; None when none was running."""

    @abc.abstractmethod
    async def hangup(self) -> None:
        """Hang up (idempotent)."""

    async def close(self) -> None:
        """End the call if it is still up and release what the backend holds for it (sockets,
        per-call prompt files). The runner calls it once the scenario is over; idempotent. The
        default hangs up."""
        await self.hangup()
