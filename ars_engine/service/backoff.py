"""When to try again: webhook delivery backoff and a scenario's call retry policy (pure).

Randomness and time come in as arguments, so every decision is a function with a table test.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import FieldError
from ..telephony.outcomes import Outcome

__all__ = ["RETRYABLE_OUTCOMES", "RetryPolicy", "webhook_delay"]


def webhook_delay(attempt: int, rand: float, *, base: float = 5.0, cap: float = 3600.0) -> float:
    """Seconds to wait after the ``attempt``-th failed webhook delivery (``attempt`` ≥ 1).

    Exponential backoff with "equal jitter": ``d = min(cap, base * 2**(attempt - 1))``, then
    ``d/2 + rand * d/2``, between ``d/2`` and ``d``, for ``rand`` in ``[0, 1)`` (passed in to
    keep this pure; a ``rand`` a hair below 1 may round to exactly ``d``). Half
    of ``d`` is guaranteed so a failing receiver is never hammered; the random half spreads the
    retries of many deliveries that failed together.

    With the defaults (5 s, capped at 1 h) the delays reach the cap at attempt 11, after about
    1.2 h in all; from then on each retry adds 30–60 min. A delivery retried for 24 h is thus
    attempted about 41 times on average (33 if every jitter is at its longest, 57 at its
    shortest), counting the first try.
    """
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError("attempt must be an integer >= 1")
    if not 0.0 <= rand < 1.0:
        raise ValueError("rand must be in [0, 1)")
    if not (math.isfinite(base) and math.isfinite(cap) and 0 < base <= cap):
        raise ValueError("base and cap must be finite with 0 < base <= cap")
    exponent = attempt - 1
    # Compare exponents rather than compute 2**exponent: attempt 2000 must give the cap, not an
    # OverflowError from float(2**1999).
    d = cap if exponent > math.log2(cap / base) else min(cap, base * 2.0**exponent)
    return d / 2 + rand * d / 2


# -- a scenario's call retries ---------------------------------------------------------------------
# Only outcomes where the person exists and may pick up later are worth another call
# (telephony/outcomes.py): calling a refused or unallocated number again is harassment or waste.
RETRYABLE_OUTCOMES = frozenset({Outcome.BUSY.value, Outcome.NO_ANSWER.value})
MAX_ATTEMPTS_RANGE = (1, 5)
INTERVAL_RANGE = (10.0, 3600.0)
_RETRY_FIELDS = ("max_attempts", "retry_on", "interval_seconds")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often a call is attempted: up to ``max_attempts`` (1 = no retry), again after
    ``interval_seconds`` when the attempt ended with an outcome in ``retry_on``."""

    max_attempts: int = 1
    retry_on: frozenset[str] = field(default_factory=frozenset)
    interval_seconds: float = 60.0

    def __post_init__(self) -> None:
        # Direct construction is checked as strictly as from_json, and normalised (a list or set
        # for retry_on, an int interval) so equal policies compare equal.
        object.__setattr__(self, "max_attempts",
                           _check_max_attempts(self.max_attempts, "retry.max_attempts"))
        object.__setattr__(self, "retry_on", _check_retry_on(self.retry_on, "retry.retry_on"))
        object.__setattr__(self, "interval_seconds",
                           _check_interval(self.interval_seconds, "retry.interval_seconds"))

    @classmethod
    def from_json(cls, data: object | None, field: str = "retry") -> RetryPolicy:
        """A policy from parsed JSON; ``None`` → the default (one attempt, no retry).

        FieldError names the member (``retry.max_attempts``, ``retry.retry_on[0]``) with code
        ``invalid_type``, ``out_of_range``, ``unknown_outcome`` or ``unknown_field``.
        """
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise FieldError(field, "invalid_type", "expected an object")
        for key in data:
            if key not in _RETRY_FIELDS:
                raise FieldError(f"{field}.{key}", "unknown_field",
                                 f"unknown field; expected one of {', '.join(_RETRY_FIELDS)}")
        defaults = cls()
        return cls(
            max_attempts=_check_max_attempts(data.get("max_attempts", defaults.max_attempts),
                                             f"{field}.max_attempts"),
            retry_on=_check_retry_on(data.get("retry_on", []), f"{field}.retry_on"),
            interval_seconds=_check_interval(
                data.get("interval_seconds", defaults.interval_seconds),
                f"{field}.interval_seconds"),
        )

    def as_json(self) -> dict[str, object]:
        """The JSON form read by :meth:`from_json` (``retry_on`` sorted, for stable output)."""
        return {
            "max_attempts": self.max_attempts,
            "retry_on": sorted(self.retry_on),
            "interval_seconds": self.interval_seconds,
        }

    def next_attempt_delay(self, attempts_made: int, outcome: str | Outcome) -> float | None:
        """Seconds until the next attempt after ``attempts_made`` attempts (≥ 1), the last of
        which ended with ``outcome`` (a name such as ``"busy"`` or an :class:`Outcome`);
        ``None`` when the call must not be attempted again."""
        if isinstance(attempts_made, bool) or not isinstance(attempts_made, int):
            raise TypeError("attempts_made must be an integer")
        if attempts_made < 1:
            raise ValueError("attempts_made must be >= 1 (the first attempt counts)")
        name = outcome.value if isinstance(outcome, Outcome) else outcome
        if name not in self.retry_on or attempts_made >= self.max_attempts:
            return None
        return self.interval_seconds


def _check_max_attempts(value: object, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FieldError(field, "invalid_type", "expected an integer")
    low, high = MAX_ATTEMPTS_RANGE
    if not low <= value <= high:
        raise FieldError(field, "out_of_range", f"expected {low} to {high}")
    return value


def _check_retry_on(value: object, field: str) -> frozenset[str]:
    # Only collections: a str ("busy") or a JSON object would iterate into nonsense.
    if not isinstance(value, list | tuple | set | frozenset):
        raise FieldError(field, "invalid_type", "expected a list of outcomes")
    names: set[str] = set()
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise FieldError(f"{field}[{index}]", "invalid_type", "expected a string")
        if item not in RETRYABLE_OUTCOMES:
            raise FieldError(f"{field}[{index}]", "unknown_outcome",
                             f"only {' and '.join(sorted(RETRYABLE_OUTCOMES))} can be retried")
        names.add(item)
    return frozenset(names)


def _check_interval(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FieldError(field, "invalid_type", "expected a number of seconds")
    low, high = INTERVAL_RANGE
    # NaN fails every comparison, so test for the range the way NaN cannot pass.
    if not (math.isfinite(value) and low <= value <= high):
        raise FieldError(field, "out_of_range", f"expected {low:g} to {high:g} seconds")
    return float(value)
