"""Rate limits as pure objects (time passed in): the dispatcher asks how many calls it may start
now and how long to wait for the next one."""

from __future__ import annotations

from dataclasses import dataclass

EPSILON = 1e-9


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up. Starts full."""

    rate: float
    burst: float
    tokens: float = -1.0
    stamp: float | None = None

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst ≥ 1")
        if self.tokens < 0:
            self.tokens = self.burst

    def _refill(self, now: float) -> None:
        if self.stamp is not None and now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        if self.stamp is None or now > self.stamp:
            self.stamp = now

    def available(self, now: float) -> int:
        """Whole tokens that may be taken at ``now``."""
        self._refill(now)
        return int(self.tokens + EPSILON)  # 0.9999999 after float refills is a whole token

    def take(self, count: int, now: float) -> None:
        self._refill(now)
        if count > self.tokens + EPSILON:
            raise ValueError(f"took {count} tokens, {self.tokens:.2f} available")
        self.tokens -= count

    def wait(self, now: float) -> float:
        """Seconds until one token is available (0 when one is)."""
        self._refill(now)
        return 0.0 if self.tokens + EPSILON >= 1 else (1 - self.tokens) / self.rate
