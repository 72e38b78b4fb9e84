"""Webhook backoff (exponential, equal jitter) and a scenario's call retry policy."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.errors import FieldError
from ars_engine.service.backoff import RETRYABLE_OUTCOMES, RetryPolicy, webhook_delay
from ars_engine.telephony.outcomes import Outcome


# -- webhook_delay ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("attempt", "rand", "expected"), [
    (1, 0.0, 2.5),  # d = 5: [2.5, 5)
    (1, 0.5, 3.75),
    (2, 0.0, 5.0),  # d = 10
    (3, 0.0, 10.0),  # d = 20
    (4, 0.5, 30.0),  # d = 40: 20 + 10
    (10, 0.0, 1280.0),  # d = 2560
    (11, 0.0, 1800.0),  # 5 * 1024 = 5120 > cap: d = 3600
    (11, 0.5, 2700.0),
    (30, 0.0, 1800.0),
    (2000, 0.0, 1800.0),  # no OverflowError far past the cap
    (10**6, 0.25, 2250.0),
])
def test_webhook_delay_table(attempt: int, rand: float, expected: float) -> None:
    assert webhook_delay(attempt, rand) == pytest.approx(expected)


@pytest.mark.parametrize(("attempt", "base", "cap", "expected_d"), [
    (1, 1.0, 8.0, 1.0),
    (4, 1.0, 8.0, 8.0),  # exactly the cap
    (5, 1.0, 8.0, 8.0),
    (3, 2.0, 100.0, 8.0),
    (1, 10.0, 10.0, 10.0),
])
def test_webhook_delay_base_and_cap(attempt: int, base: float, cap: float,
                                    expected_d: float) -> None:
    assert webhook_delay(attempt, 0.0, base=base, cap=cap) == pytest.approx(expected_d / 2)


@given(st.integers(1, 5000), st.floats(0.0, 1.0, exclude_max=True))
def test_webhook_delay_stays_in_half_to_full_of_the_capped_step(attempt: int,
                                                                rand: float) -> None:
    d = min(3600.0, 5.0 * 2.0 ** min(attempt - 1, 20))
    delay = webhook_delay(attempt, rand)
    assert d / 2 <= delay <= d
    assert delay <= 3600.0


@given(st.integers(1, 60), st.floats(0.0, 1.0, exclude_max=True))
def test_webhook_delay_never_shrinks_with_more_attempts(attempt: int, rand: float) -> None:
    assert webhook_delay(attempt + 1, rand) >= webhook_delay(attempt, rand)


def attempts_within(seconds: float, rand: float) -> int:
    """Deliveries made (first try included) before the total wait reaches ``seconds``."""
    total, attempt = 0.0, 0
    while total < seconds:
        attempt += 1
        total += webhook_delay(attempt, rand)
    return attempt


def test_a_day_of_retries_is_33_to_57_attempts_as_documented() -> None:
    day = 24 * 3600
    assert attempts_within(day, 0.999999) == 33
    assert attempts_within(day, 0.5) == 41
    assert attempts_within(day, 0.0) == 57


@pytest.mark.parametrize(("attempt", "rand", "kwargs"), [
    (0, 0.0, {}),
    (-1, 0.0, {}),
    (True, 0.0, {}),
    (1, 1.0, {}),  # rand is in [0, 1)
    (1, -0.1, {}),
    (1, math.nan, {}),
    (1, 0.0, {"base": 0.0}),
    (1, 0.0, {"base": 10.0, "cap": 5.0}),
    (1, 0.0, {"cap": math.inf}),
])
def test_webhook_delay_refuses_bad_arguments(attempt: int, rand: float,
                                             kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        webhook_delay(attempt, rand, **kwargs)


# -- RetryPolicy -----------------------------------------------------------------------------------
BUSY_3 = RetryPolicy(max_attempts=3, retry_on=frozenset({"busy"}), interval_seconds=120)
BOTH_2 = RetryPolicy(max_attempts=2, retry_on=frozenset({"busy", "no_answer"}))


@pytest.mark.parametrize(("policy", "attempts_made", "outcome", "expected"), [
    (RetryPolicy(), 1, "busy", None),  # default: one attempt, no retry
    (RetryPolicy(), 1, "no_answer", None),
    (BUSY_3, 1, "busy", 120.0),
    (BUSY_3, 2, "busy", 120.0),
    (BUSY_3, 3, "busy", None),  # the third attempt was the last
    (BUSY_3, 4, "busy", None),
    (BUSY_3, 1, "no_answer", None),  # not in retry_on
    (BUSY_3, 1, "answered", None),
    (BUSY_3, 1, "rejected", None),
    (BUSY_3, 1, Outcome.BUSY, 120.0),  # the enum works as well as its name
    (BUSY_3, 1, Outcome.NO_ANSWER, None),
    (BOTH_2, 1, "no_answer", 60.0),
    (BOTH_2, 1, Outcome.NO_ANSWER, 60.0),
    (BOTH_2, 2, "no_answer", None),
    (BOTH_2, 1, "unreachable", None),
])
def test_next_attempt_delay_table(policy: RetryPolicy, attempts_made: int,
                                  outcome: str | Outcome, expected: float | None) -> None:
    assert policy.next_attempt_delay(attempts_made, outcome) == expected


def test_next_attempt_delay_refuses_a_count_below_one() -> None:
    with pytest.raises(ValueError):
        BUSY_3.next_attempt_delay(0, "busy")
    with pytest.raises(TypeError):
        BUSY_3.next_attempt_delay(True, "busy")


def test_retryable_outcomes_are_the_engine_outcome_names() -> None:
    assert {"busy", "no_answer"} == RETRYABLE_OUTCOMES
    assert {o.value for o in Outcome} >= RETRYABLE_OUTCOMES


def test_retry_policy_from_json_and_back() -> None:
    data = {"max_attempts": 3, "retry_on": ["no_answer", "busy"], "interval_seconds": 90}
    policy = RetryPolicy.from_json(data)
    assert policy == RetryPolicy(3, frozenset({"busy", "no_answer"}), 90.0)
    assert policy.as_json() == {"max_attempts": 3, "retry_on": ["busy", "no_answer"],
                                "interval_seconds": 90.0}
    assert RetryPolicy.from_json(policy.as_json()) == policy


@pytest.mark.parametrize(("data", "expected"), [
    (None, RetryPolicy()),
    ({}, RetryPolicy()),
    ({"max_attempts": 5}, RetryPolicy(max_attempts=5)),
    ({"retry_on": []}, RetryPolicy()),
    ({"retry_on": ["busy", "busy"]}, RetryPolicy(retry_on=frozenset({"busy"}))),
    ({"interval_seconds": 10}, RetryPolicy(interval_seconds=10.0)),
    ({"interval_seconds": 3600.0}, RetryPolicy(interval_seconds=3600.0)),
    ({"max_attempts": 1, "retry_on": ["busy"]}, RetryPolicy(1, frozenset({"busy"}))),
])
def test_retry_policy_from_json_defaults_and_bounds(data: object,
                                                    expected: RetryPolicy) -> None:
    assert RetryPolicy.from_json(data) == expected


@pytest.mark.parametrize(("data", "field", "code"), [
    ([], "retry", "invalid_type"),
    (3, "retry", "invalid_type"),
    ({"max_attempts": "3"}, "retry.max_attempts", "invalid_type"),
    ({"max_attempts": 2.0}, "retry.max_attempts", "invalid_type"),
    ({"max_attempts": True}, "retry.max_attempts", "invalid_type"),
    ({"max_attempts": 0}, "retry.max_attempts", "out_of_range"),
    ({"max_attempts": 6}, "retry.max_attempts", "out_of_range"),
    ({"retry_on": "busy"}, "retry.retry_on", "invalid_type"),
    ({"retry_on": {"busy": True}}, "retry.retry_on", "invalid_type"),
    ({"retry_on": ["busy", 7]}, "retry.retry_on[1]", "invalid_type"),
    ({"retry_on": ["busy", "rejected"]}, "retry.retry_on[1]", "unknown_outcome"),
    ({"retry_on": ["BUSY"]}, "retry.retry_on[0]", "unknown_outcome"),
    ({"retry_on": None}, "retry.retry_on", "invalid_type"),
    ({"interval_seconds": "60"}, "retry.interval_seconds", "invalid_type"),
    ({"interval_seconds": False}, "retry.interval_seconds", "invalid_type"),
    ({"interval_seconds": 9.99}, "retry.interval_seconds", "out_of_range"),
    ({"interval_seconds": 3600.5}, "retry.interval_seconds", "out_of_range"),
    ({"interval_seconds": math.nan}, "retry.interval_seconds", "out_of_range"),
    ({"interval_seconds": math.inf}, "retry.interval_seconds", "out_of_range"),
    ({"max_attempt": 3}, "retry.max_attempt", "unknown_field"),
])
def test_retry_policy_from_json_names_the_bad_member(data: object, field: str,
                                                     code: str) -> None:
    with pytest.raises(FieldError) as info:
        RetryPolicy.from_json(data)
    assert (info.value.field, info.value.code) == (field, code)


def test_retry_policy_from_json_uses_the_callers_field_name() -> None:
    with pytest.raises(FieldError) as info:
        RetryPolicy.from_json({"max_attempts": 9}, field="steps[2].retry")
    assert info.value.field == "steps[2].retry.max_attempts"


def test_retry_policy_built_in_code_is_checked_and_normalised() -> None:
    with pytest.raises(FieldError) as info:
        RetryPolicy(max_attempts=9)
    assert info.value.field == "retry.max_attempts"
    with pytest.raises(FieldError):
        RetryPolicy(retry_on=frozenset({"failed"}))
    with pytest.raises(FieldError):
        RetryPolicy(interval_seconds=1)
    policy = RetryPolicy(retry_on={"busy"}, interval_seconds=60)  # type: ignore[arg-type]
    assert policy == RetryPolicy(retry_on=frozenset({"busy"}), interval_seconds=60.0)
    assert isinstance(policy.retry_on, frozenset)
    assert isinstance(policy.interval_seconds, float)


@given(st.integers(1, 5), st.sets(st.sampled_from(sorted(RETRYABLE_OUTCOMES))),
       st.floats(10.0, 3600.0))
def test_retry_policy_round_trips_through_json(max_attempts: int, retry_on: set[str],
                                               interval: float) -> None:
    policy = RetryPolicy(max_attempts, frozenset(retry_on), interval)
    assert RetryPolicy.from_json(policy.as_json()) == policy


@given(st.integers(1, 5), st.sampled_from(sorted(RETRYABLE_OUTCOMES)))
def test_a_retried_outcome_gives_exactly_max_attempts_calls(max_attempts: int,
                                                            outcome: str) -> None:
    policy = RetryPolicy(max_attempts, frozenset({outcome}), 30.0)
    made = 1
    while policy.next_attempt_delay(made, outcome) is not None:
        made += 1
    assert made == max_attempts
