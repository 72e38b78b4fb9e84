"""TokenBucket: calls per second for the dispatcher (time passed in)."""

from __future__ import annotations

import pytest

from ars_engine.service.limits import TokenBucket


def test_bucket_starts_full_and_refills_at_its_rate() -> None:
    bucket = TokenBucket(rate=10, burst=5)
    assert bucket.available(100.0) == 5
    bucket.take(5, 100.0)
    assert bucket.available(100.0) == 0
    assert bucket.wait(100.0) == pytest.approx(0.1)
    assert bucket.available(100.25) == 2
    assert bucket.available(200.0) == 5  # never more than the burst


def test_bucket_refuses_to_overdraw_and_time_going_back_adds_nothing() -> None:
    bucket = TokenBucket(rate=1, burst=2)
    bucket.take(2, 10.0)
    with pytest.raises(ValueError):
        bucket.take(1, 10.5)
    assert bucket.available(9.0) == 0  # a clock going back never mints tokens
    assert bucket.available(11.0) == 1


def test_rate_over_a_long_run_is_the_configured_one() -> None:
    bucket = TokenBucket(rate=20, burst=1)
    taken = 0
    for ms in range(10_000):
        now = ms / 1000
        if bucket.available(now):
            bucket.take(1, now)
            taken += 1
    assert 199 <= taken <= 201  # 1 at the start + 20/s for 10 s, give or take a rounding


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 5), (1, 0.5)])
def test_bucket_rejects_nonsense_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)
