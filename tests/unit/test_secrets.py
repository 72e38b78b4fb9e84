"""Secrets and salted hashes: masking, pickling, constant-time comparison, hash formats, and
parameter binding whose errors never contain the value."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import logging
import pickle
import textwrap

import pytest

from ars_engine.demo_cases import make_hash as demo_make_hash
from ars_engine.errors import ParameterError
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.scenario.model import Param
from ars_engine.scenario.secrets import (
    Secret,
    constant_time_equals,
    hash_format_problem,
    make_hash,
    reveal,
    verify_hash,
)

VALUE = "918273"
MASKED = "******"


# -- masking ---------------------------------------------------------------------------------------
def test_secret_masks_itself_in_str_repr_and_format() -> None:
    s = Secret(VALUE)
    assert str(s) == MASKED
    assert repr(s) == MASKED
    assert format(s) == MASKED
    assert format(s, ">10") == MASKED
    assert f"{s}|{s!r}|{s!s}|{s:>12}" == f"{MASKED}|{MASKED}|{MASKED}|{MASKED}"
    assert "%s %r" % (s, s) == f"{MASKED} {MASKED}"  # noqa: UP031 - logging uses %-formatting
    assert "{} {!r}".format(s, s) == f"{MASKED} {MASKED}"  # noqa: UP032
    assert s.masked() == MASKED and len(s) == 6


def test_secret_masks_itself_inside_containers_and_json() -> None:
    s = Secret(VALUE)
    assert VALUE not in str([s]) and VALUE not in repr({"code": s}) and VALUE not in str((s,))
    assert json.dumps({"code": s}, default=str) == f'{{"code": "{MASKED}"}}'
    with pytest.raises(TypeError) as caught:
        json.dumps({"code": s})  # without default=str it is refused, not revealed
    assert VALUE not in str(caught.value)


def test_secret_masks_itself_in_exception_messages_and_logs(
        caplog: pytest.LogCaptureFixture) -> None:
    s = Secret(VALUE)
    for exc in (ValueError(s), ValueError(f"bad code {s}"), KeyError(s), RuntimeError("x", s)):
        assert VALUE not in str(exc) and VALUE not in repr(exc)
    caplog.set_level(logging.DEBUG)
    logging.getLogger("test.secrets").debug("code %s / %r / %d chars", s, s, len(s))
    assert MASKED in caplog.text and VALUE not in caplog.text
    try:
        raise ValueError(f"code {s}")
    except ValueError:
        logging.getLogger("test.secrets").exception("failed with %s", s)
    assert VALUE not in caplog.text


def test_reveal_gives_the_value_and_leaves_plain_values_alone() -> None:
    assert Secret(VALUE).reveal() == VALUE
    assert reveal(Secret(VALUE)) == VALUE
    assert reveal("123") == "123" and reveal(42) == "42"


def test_empty_secret_masks_to_empty() -> None:
    assert str(Secret("")) == "" and len(Secret("")) == 0


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_cannot_be_pickled(protocol: int) -> None:
    with pytest.raises(TypeError, match="cannot be pickled") as caught:
        pickle.dumps(Secret(VALUE), protocol=protocol)
    assert VALUE not in str(caught.value)
    with pytest.raises(TypeError):
        pickle.dumps({"nested": [Secret(VALUE)]}, protocol=protocol)


def test_secret_cannot_be_copied_through_the_pickle_protocol() -> None:
    with pytest.raises(TypeError):
        copy.deepcopy(Secret(VALUE))


def test_secrets_compare_by_value_but_hash_by_identity() -> None:
    a, b = Secret(VALUE), Secret(VALUE)
    assert a == b
    assert a != Secret("918274")
    assert a != VALUE  # a secret never equals its clear text by ==
    assert hash(a) != hash(b)  # not a hash of the value (two equal secrets, two hashes)
    assert hash(a) != hash(VALUE)


# -- constant-time comparison ----------------------------------------------------------------------
@pytest.mark.parametrize(("a", "b", "equal"), [
    (Secret(VALUE), VALUE, True),
    (VALUE, Secret(VALUE), True),
    (Secret(VALUE), Secret(VALUE), True),
    (Secret(VALUE), "918274", False),
    (Secret(VALUE), "91827", False),  # a prefix
    (Secret(VALUE), "9182730", False),  # longer
    (Secret(""), "", True),
    (Secret(VALUE), "", False),
    (Secret("１２"), "12", False),  # fullwidth digits are other characters
])
def test_constant_time_equals(a: object, b: object, equal: bool) -> None:
    assert constant_time_equals(a, b) is equal


# -- salted hashes ---------------------------------------------------------------------------------
def test_sha256_hash_is_hmac_of_the_value_keyed_by_the_salt() -> None:
    stored = make_hash("1234", "abc")
    digest = hmac.new(b"abc", b"1234", hashlib.sha256).hexdigest()
    assert stored == f"sha256$abc${digest}"
    assert verify_hash("1234", stored)
    assert verify_hash(Secret("1234"), stored)
    assert verify_hash("1234", Secret(stored))
    assert not verify_hash("1235", stored)
    assert not verify_hash("", stored)
    assert hash_format_problem(stored) is None


def test_demo_hash_helper_makes_the_same_format() -> None:
    # demo_cases keeps its own make_hash; the engine must verify what it makes.
    assert demo_make_hash("37", "demo-d-5f1c9a") == make_hash("37", "demo-d-5f1c9a")
    assert verify_hash("37", demo_make_hash("37", "demo-d-5f1c9a"))


def test_pbkdf2_hash_verifies_with_its_own_iteration_count() -> None:
    stored = make_hash("4821", "salty", scheme="pbkdf2_sha256", iterations=1000)
    digest = hashlib.pbkdf2_hmac("sha256", b"4821", b"salty", 1000).hex()
    assert stored == f"pbkdf2_sha256$1000$salty${digest}"
    assert hash_format_problem(stored) is None
    assert verify_hash("4821", stored)
    assert not verify_hash("4822", stored)
    tampered = stored.replace("$1000$", "$1001$")
    assert not verify_hash("4821", tampered)


def test_random_salts_differ_and_both_verify() -> None:
    a, b = make_hash(VALUE), make_hash(VALUE)
    assert a != b
    assert verify_hash(VALUE, a) and verify_hash(VALUE, b)
    assert VALUE not in a


def test_make_hash_refuses_a_dollar_in_the_salt_and_unknown_schemes() -> None:
    with pytest.raises(ValueError, match=r"\$"):
        make_hash(VALUE, "a$b")
    with pytest.raises(ValueError, match="scheme") as caught:
        make_hash(VALUE, "abc", scheme="md5")
    assert VALUE not in str(caught.value)


GOOD_DIGEST = "0" * 64
MALFORMED_HASHES = [
    ("empty", "", "expected sha256$"),
    ("no_scheme", GOOD_DIGEST, "expected sha256$"),
    ("unknown_scheme", f"md5$abc${GOOD_DIGEST}", "expected sha256$"),
    ("sha256_missing_salt", f"sha256${GOOD_DIGEST}", "expected sha256$"),
    ("sha256_extra_part", f"sha256$a$b${GOOD_DIGEST}", "expected sha256$"),
    ("sha256_short_digest", "sha256$abc$" + "0" * 63, "64 hex digits"),
    ("sha256_not_hex", "sha256$abc$" + "g" * 64, "64 hex digits"),
    ("pbkdf2_missing_iterations", f"pbkdf2_sha256$abc${GOOD_DIGEST}", "expected sha256$"),
    ("pbkdf2_iterations_not_a_number", f"pbkdf2_sha256$many$abc${GOOD_DIGEST}", "iteration"),
    ("pbkdf2_zero_iterations", f"pbkdf2_sha256$0$abc${GOOD_DIGEST}", "iteration"),
    ("pbkdf2_too_many_iterations", f"pbkdf2_sha256$99999999$abc${GOOD_DIGEST}", "iteration"),
    ("pbkdf2_short_digest", "pbkdf2_sha256$1000$abc$" + "0" * 10, "64 hex digits"),
]


@pytest.mark.parametrize(("stored", "explained"), [m[1:] for m in MALFORMED_HASHES],
                         ids=[m[0] for m in MALFORMED_HASHES])
def test_malformed_hash_never_verifies_and_the_problem_is_explained(
        stored: str, explained: str) -> None:
    assert verify_hash("1234", stored) is False
    assert verify_hash("", stored) is False
    problem = hash_format_problem(stored)
    assert problem is not None and explained in problem


def test_well_formed_hash_of_another_value_does_not_verify() -> None:
    assert hash_format_problem(f"sha256$abc${GOOD_DIGEST}") is None
    assert not verify_hash("1234", f"sha256$abc${GOOD_DIGEST}")


# -- parameter binding -----------------------------------------------------------------------------
PARAMS = textwrap.dedent("""
    scenario: p
    params:
      code: {type: secret, pattern: '^[0-9]{6}$'}
      pin_hash: {type: hash}
      amount: {type: amount}
      day: {type: digits, pattern: '^[0-9]{1,2}$'}
      note: {type: text, required: false}
      company: {type: text, default: 에이알에스}
    steps:
      done:
        finish: {outcome: success}
    """)


@pytest.fixture(scope="module")
def params() -> dict[str, Param]:
    return load_scenario_text(PARAMS).params


def bind_error(param: Param, raw: object) -> str:
    with pytest.raises(ParameterError) as caught:
        param.bind(raw)
    message = f"{caught.value} {caught.value!r}"
    assert f"'{param.name}'" in message  # names the parameter
    return message


def test_secret_parameter_binds_to_a_secret(params: dict[str, Param]) -> None:
    bound = params["code"].bind(VALUE)
    assert isinstance(bound, Secret) and bound.reveal() == VALUE
    again = params["code"].bind(Secret(VALUE))  # a Secret given in is accepted
    assert isinstance(again, Secret) and again.reveal() == VALUE


@pytest.mark.parametrize("raw", ["91827x", "9182731", "91827", "９１８２７３", "918 273", "-18273"],
                         ids=["letter", "too_long", "too_short", "fullwidth", "space", "sign"])
def test_refused_secret_parameter_error_holds_neither_value_nor_pattern(
        params: dict[str, Param], raw: str) -> None:
    message = bind_error(params["code"], raw)
    assert raw not in message
    assert raw[:4] not in message
    assert "[0-9]{6}" not in message  # the pattern would tell the shape of the secret


def test_missing_required_secret_says_it_is_required(params: dict[str, Param]) -> None:
    assert "required" in bind_error(params["code"], None)


def test_hash_parameter_binds_to_a_secret_and_verifies(params: dict[str, Param]) -> None:
    stored = make_hash("37", "s1")
    bound = params["pin_hash"].bind(stored)
    assert isinstance(bound, Secret) and str(bound) == "*" * len(stored)
    assert verify_hash("37", bound)


@pytest.mark.parametrize("raw", ["sha256$s1$" + "f" * 63, "plain-pin-37", "md5$s$" + "a" * 64])
def test_malformed_hash_parameter_error_explains_without_the_value(
        params: dict[str, Param], raw: str) -> None:
    message = bind_error(params["pin_hash"], raw)
    assert "salted hash" in message
    assert raw not in message
    assert raw.rsplit("$", 1)[-1] not in message


@pytest.mark.parametrize(("raw", "won"), [("12000", 12000), ("12,000", 12000), (" 500 ", 500),
                                          (4821, 4821), ("0", 0)])
def test_amount_parameter_binds_to_whole_won(params: dict[str, Param], raw: object,
                                             won: int) -> None:
    assert params["amount"].bind(raw) == won


@pytest.mark.parametrize("raw", ["12.5", "-100", "1만", "abc", ""])
def test_refused_amount_error_does_not_echo_the_value(params: dict[str, Param],
                                                      raw: str) -> None:
    message = bind_error(params["amount"], raw)
    assert "whole number" in message
    if raw:
        assert raw not in message.replace(f"'{params['amount'].name}'", "")


@pytest.mark.parametrize("raw", ["²", "12²"], ids=["superscript", "trailing_superscript"])
def test_amount_with_digit_like_characters_is_a_parameter_error(params: dict[str, Param],
                                                                raw: str) -> None:
    """PRODUCT BUG (fails today): Param.bind checks an amount with str.isdigit(), which is True
    for "²", then int() raises a bare ValueError whose message echoes the value (and the CLI
    prints a traceback) instead of a ParameterError naming the parameter."""
    message = bind_error(params["amount"], raw)
    assert raw not in message.replace(f"'{params['amount'].name}'", "")


def test_digits_parameter_keeps_leading_zeros(params: dict[str, Param]) -> None:
    assert params["day"].bind("05") == "05"
    assert params["day"].bind(7) == "7"


@pytest.mark.parametrize("raw", ["5x", "١٢", "123"], ids=["letter", "arabic_indic", "pattern"])
def test_refused_digits_error_does_not_echo_the_value(params: dict[str, Param],
                                                      raw: str) -> None:
    message = bind_error(params["day"], raw)
    assert raw not in message


def test_text_parameters_take_defaults_or_empty(params: dict[str, Param]) -> None:
    assert params["company"].bind(None) == "에이알에스"
    assert params["note"].bind(None) == ""
    assert params["note"].bind("메모") == "메모"


def test_unknown_parameter_is_named_without_echoing_any_value() -> None:
    scenario = load_scenario_text(PARAMS)
    with pytest.raises(ParameterError) as caught:
        scenario.bind_params({"code": VALUE, "cdoe": "777777", "pin_hash": make_hash("1", "s"),
                              "amount": "1", "day": "1"})
    message = str(caught.value)
    assert "cdoe" in message
    assert VALUE not in message and "777777" not in message
