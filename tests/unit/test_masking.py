"""Masking: values, parameter dumps, the secret registry, and the logging filter that keeps
registered secrets out of log output (message, arguments and tracebacks)."""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ars_engine.scenario.secrets import Secret
from ars_engine.service.masking import (
    DEFAULT_REGISTRY,
    MIN_SECRET_LENGTH,
    ScrubbingFilter,
    SecretRegistry,
    SecretToken,
    install,
    mask_params,
    mask_value,
)

CODE = "918273"


@pytest.mark.parametrize(("value", "masked"), [
    ("", ""),
    ("1", "*"),
    (CODE, "******"),
    ("비밀번호", "****"),
    ("a b", "***"),
])
def test_mask_value_keeps_the_length_only(value: str, masked: str) -> None:
    assert mask_value(value) == masked


def test_mask_params_masks_only_the_named_values() -> None:
    params: dict[str, object] = {"name": "홍길동", "code": CODE, "pin": 4321, "amount": 15000,
                                 "otp": None, "secret_obj": Secret("abcdefgh")}
    masked = mask_params(params, ["code", "pin", "otp", "secret_obj", "not_there"])
    assert masked == {"name": "홍길동", "code": "******", "pin": "****", "amount": 15000,
                      "otp": None, "secret_obj": "********"}
    assert params["code"] == CODE  # the input is not changed
    assert mask_params(params, iter(())) == params


# -- SecretRegistry --------------------------------------------------------------------------------
@pytest.mark.parametrize(("secrets", "text", "scrubbed"), [
    ([], "code 918273", "code 918273"),
    ([CODE], "code 918273", "code ******"),
    ([CODE], "918273918273 and 918273", "************ and ******"),
    ([CODE], "no secret here: 91827", "no secret here: 91827"),
    (["123", "1"], "code 123 at 1", "code 123 at 1"),  # too short to register
    (["1234"], "1234", "****"),  # MIN_SECRET_LENGTH exactly
    (["abcd", "abcdefgh"], "x abcdefgh y abcd", "x ******** y ****"),  # longest first
    (["abcdefgh", "abcd"], "abcdefgh", "********"),  # order of registration is irrelevant
    (["a.b*c", "(x|y)"], "a.b*c (x|y) aXbbc x", "***** ***** aXbbc x"),  # no regex leaks
    (["비밀번호1234"], "입력: 비밀번호1234.", "입력: ********."),
])
def test_scrub_table(secrets: list[str], text: str, scrubbed: str) -> None:
    registry = SecretRegistry()
    for value in secrets:
        registry.add(value)
    assert registry.scrub(text) == scrubbed


def test_short_values_are_ignored_and_their_token_is_inert() -> None:
    registry = SecretRegistry()
    token = registry.add("1" * (MIN_SECRET_LENGTH - 1))
    assert len(registry) == 0
    registry.remove(token)  # harmless
    assert registry.scrub("111") == "111"


def test_registrations_are_counted_per_token() -> None:
    registry = SecretRegistry()
    call_a = registry.add(CODE)
    call_b = registry.add(CODE)  # another call with the same value
    registry.remove(call_a)
    assert registry.scrub(CODE) == "******"  # still live for call b
    registry.remove(call_a)  # removing twice does not take b's registration
    assert CODE in registry
    registry.remove(call_b)
    assert CODE not in registry
    assert registry.scrub(CODE) == CODE


def test_removing_a_value_removes_every_registration() -> None:
    registry = SecretRegistry()
    first = registry.add(CODE)
    registry.add(CODE)
    registry.add("other-secret")
    registry.remove(CODE)
    assert registry.scrub(f"{CODE} other-secret") == f"{CODE} ************"
    registry.remove(first)  # its registration is gone already: nothing happens
    registry.remove("never-added")
    assert len(registry) == 1


def test_tokens_and_repr_hold_no_value() -> None:
    registry = SecretRegistry()
    token = registry.add(CODE)
    assert isinstance(token, SecretToken)
    assert CODE not in repr(token)
    assert CODE not in repr(registry)
    with pytest.raises(TypeError):
        registry.add(918273)  # type: ignore[arg-type]


@given(st.lists(st.text(min_size=MIN_SECRET_LENGTH, max_size=12), max_size=5),
       st.text(max_size=40))
def test_no_registered_secret_survives_scrubbing(secrets: list[str], noise: str) -> None:
    registry = SecretRegistry()
    for value in secrets:
        registry.add(value)
    text = noise.join(secrets) + noise
    scrubbed = registry.scrub(text)
    assert len(scrubbed) == len(text)
    for value in secrets:
        # A secret may only reappear if the stars or the noise spell it (e.g. a secret "****").
        if "*" not in value and value not in noise:
            assert value not in scrubbed


def test_registry_is_thread_safe() -> None:
    registry = SecretRegistry()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                value = f"secret-{n}-{i}"
                token = registry.add(value)
                assert registry.scrub(f"<{value}>") == "<" + "*" * len(value) + ">"
                registry.remove(token)
        except BaseException as exc:  # collected and re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(registry) == 0


# -- the logging filter ----------------------------------------------------------------------------
@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO, SecretRegistry]]:
    """A logger with one stream handler, scrubbed through a fresh registry."""
    registry = SecretRegistry()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger = logging.getLogger("test_masking.captured")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    install(logger, registry)
    yield logger, stream, registry
    logger.handlers = []


def test_secret_in_percent_s_arguments_never_reaches_the_output(
    captured: tuple[logging.Logger, io.StringIO, SecretRegistry],
) -> None:
    logger, stream, registry = captured
    registry.add(CODE)
    logger.info("caller entered %s for %s", CODE, "call c_1")
    logger.warning("mapping %(code)s", {"code": CODE})
    logger.error(f"f-string {CODE}")
    output = stream.getvalue()
    assert CODE not in output
    assert "INFO caller entered ****** for call c_1" in output
    assert "WARNING mapping ******" in output
    assert "ERROR f-string ******" in output


def test_secret_in_a_traceback_never_reaches_the_output(
    captured: tuple[logging.Logger, io.StringIO, SecretRegistry],
) -> None:
    logger, stream, registry = captured
    registry.add(CODE)

    def check(code: str) -> None:
        raise ValueError(f"wrong code {code}")

    try:
        check(CODE)
    except ValueError:
        logger.exception("verification failed")
    output = stream.getvalue()
    assert "Traceback (most recent call last)" in output  # the traceback is still there
    assert "ValueError: wrong code ******" in output
    assert CODE not in output


def test_secret_in_a_chained_exception_and_stack_info_is_scrubbed(
    captured: tuple[logging.Logger, io.StringIO, SecretRegistry],
) -> None:
    logger, stream, registry = captured
    registry.add(CODE)
    try:
        try:
            raise KeyError(CODE)
        except KeyError as exc:
            raise RuntimeError("lookup failed") from exc
    except RuntimeError:
        logger.error("failed", exc_info=True, stack_info=True)
    output = stream.getvalue()
    assert "KeyError: '******'" in output
    assert "Stack (most recent call last)" in output
    assert CODE not in output


def test_records_without_secrets_are_left_alone(
    captured: tuple[logging.Logger, io.StringIO, SecretRegistry],
) -> None:
    logger, _stream, registry = captured
    registry.add(CODE)
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    keep = Keep()
    keep.addFilter(ScrubbingFilter(registry))
    logger.addHandler(keep)
    try:
        raise ValueError("nothing secret")
    except ValueError:
        logger.exception("answered %s", "c_1")
    record = seen[0]
    assert (record.msg, record.args) == ("answered %s", ("c_1",))  # template kept
    assert record.exc_info is not None  # other handlers still get the exception


def test_a_bad_format_string_does_not_raise_and_is_scrubbed(
    captured: tuple[logging.Logger, io.StringIO, SecretRegistry],
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger, stream, registry = captured
    registry.add(CODE)
    logger.info("two %s %s", CODE)  # one argument short: formatting fails
    output = stream.getvalue() + capsys.readouterr().err
    assert CODE not in output
    assert "******" in output


def test_filter_never_drops_a_record() -> None:
    registry = SecretRegistry()
    registry.add(CODE)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "code %s", (CODE,), None)
    assert ScrubbingFilter(registry).filter(record) is True
    assert record.getMessage() == "code ******"


def test_install_adds_one_filter_to_every_handler_of_the_root_logger() -> None:
    root = logging.getLogger()
    saved = root.handlers[:]
    first, second = logging.NullHandler(), logging.NullHandler()
    root.handlers = [first, second]
    try:
        scrubber = install()
        assert scrubber.registry is DEFAULT_REGISTRY
        assert first.filters == [scrubber] and second.filters == [scrubber]
        install()  # idempotent for the same registry
        assert first.filters == [scrubber]
    finally:
        root.handlers = saved
