"""Structured logs: the JSON line's fields, the call/tenant/request context across asyncio tasks,
and secrets masked in JSON output (message, arguments, tracebacks) like in text output."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ars_engine.service.logs import (
    JsonFormatter,
    configure_logging,
    current_context,
    log_context,
)
from ars_engine.service.masking import DEFAULT_REGISTRY, ScrubbingFilter

SECRET = "583920"
LOGGERS = itertools.count()
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def json_log() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A new private logger configured as ``serve`` does with log_format = "json", writing to a
    buffer (not the root logger: pytest's own handlers stay as they are). New each time:
    pytest attaches its capture handlers to every existing non-propagating logger."""
    logger = logging.getLogger(f"ars_test_logs.json{next(LOGGERS)}")
    logger.propagate = False
    buffer = io.StringIO()
    configure_logging("json", "DEBUG", logger=logger, stream=buffer)
    try:
        yield logger, buffer
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


@pytest.fixture
def live_secret() -> Iterator[str]:
    """SECRET registered as a live call's secret, as the dispatcher does while a call runs."""
    token = DEFAULT_REGISTRY.add(SECRET)
    try:
        yield SECRET
    finally:
        DEFAULT_REGISTRY.remove(token)


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_record_is_one_json_line_with_every_field(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    logger.warning("call %s: %d tries\nsecond line", "call_1", 3)
    [entry] = lines(buffer)
    assert TS.fullmatch(entry.pop("ts"))
    assert entry == {"level": "WARNING", "logger": logger.name,
                     "msg": "call call_1: 3 tries\nsecond line", "call_id": None,
                     "tenant": None}, "no request_id or exc when there is none"


def test_timestamp_is_utc_with_milliseconds() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.created = 1_767_225_600.1239  # 2026-01-01T00:00:00.123 UTC
    assert json.loads(JsonFormatter().format(record))["ts"] == "2026-01-01T00:00:00.123Z"


def test_context_fields_are_written_and_restored_on_exit(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    with log_context(call_id="call_a", tenant="bank"):
        with log_context(request_id="req_1"):  # nested: adds a field, keeps the others
            logger.info("inner")
        logger.info("outer")
    logger.info("outside")
    inner, outer, outside = lines(buffer)
    assert (inner["call_id"], inner["tenant"], inner["request_id"]) == ("call_a", "bank", "req_1")
    assert (outer["call_id"], outer["tenant"]) == ("call_a", "bank")
    assert "request_id" not in outer
    assert (outside["call_id"], outside["tenant"]) == (None, None)
    assert current_context() == {}


def test_a_records_own_fields_win_over_the_context(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    with log_context(call_id="call_ctx", tenant="bank"):
        logger.info("x", extra={"call_id": "call_extra"})
    [entry] = lines(buffer)
    assert (entry["call_id"], entry["tenant"]) == ("call_extra", "bank")


async def test_context_follows_each_task_and_never_leaks_between_tasks(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    both_set = asyncio.Barrier(2)
    both_children = asyncio.Barrier(2)

    async def call(call_id: str, tenant: str) -> None:
        with log_context(call_id=call_id, tenant=tenant):
            await both_set.wait()  # both contexts are set before either logs

            async def child() -> None:  # a task the call starts (a dial, a ringing update)
                logger.info("child of %s", call_id)

            await asyncio.create_task(child())
            await both_children.wait()  # the other task has logged in between
            logger.info("end of %s", call_id)

    await asyncio.gather(call("call_1", "bank"), call("call_2", "shop"))
    logger.info("after")
    entries = lines(buffer)
    assert len(entries) == 5
    for entry in entries[:4]:
        call_id = entry["msg"].rsplit(" ", 1)[1]
        assert entry["call_id"] == call_id
        assert entry["tenant"] == {"call_1": "bank", "call_2": "shop"}[call_id]
    assert (entries[4]["call_id"], entries[4]["tenant"]) == (None, None)


def test_a_live_secret_is_masked_in_message_and_arguments(
        json_log: tuple[logging.Logger, io.StringIO], live_secret: str) -> None:
    logger, buffer = json_log
    logger.error("code is %s", live_secret)
    logger.error(f"code was {live_secret}")
    logger.error("code %s", {"code": live_secret}, extra={"request_id": live_secret})
    text = buffer.getvalue()
    assert live_secret not in text
    entries = lines(buffer)
    assert [e["msg"] for e in entries] == ["code is ******", "code was ******",
                                           "code {'code': '******'}"]
    assert entries[2]["request_id"] == "******"


def test_a_live_secret_in_a_traceback_is_masked(
        json_log: tuple[logging.Logger, io.StringIO], live_secret: str) -> None:
    logger, buffer = json_log
    try:
        try:
            raise KeyError(live_secret)
        except KeyError as inner:
            raise ValueError(f"bad input {live_secret}") from inner
    except ValueError:
        logger.exception("check failed")
    [entry] = lines(buffer)
    assert live_secret not in buffer.getvalue()
    assert "ValueError: bad input ******" in entry["exc"]
    assert "KeyError: '******'" in entry["exc"], "the chained exception is there, masked"
    assert entry["msg"] == "check failed"


def test_the_formatter_masks_even_on_a_handler_without_the_filter(live_secret: str) -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "pin %s", (live_secret,), None)
    try:
        raise RuntimeError(live_secret)
    except RuntimeError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    record.stack_info = f"Stack (most recent call last):\n  {live_secret}"
    line = JsonFormatter().format(record)
    assert live_secret not in line
    entry = json.loads(line)
    assert entry["msg"] == "pin ******" and "RuntimeError: ******" in entry["exc"]
    assert "******" in entry["stack"]


def test_a_broken_format_string_is_logged_not_raised(
        json_log: tuple[logging.Logger, io.StringIO]) -> None:
    logger, buffer = json_log
    logger.error("%d items", "many")
    [entry] = lines(buffer)
    assert entry["msg"].startswith("%d items (arguments:")


def test_configure_logging_adds_one_handler_and_one_filter_even_twice() -> None:
    logger = logging.getLogger(f"ars_test_logs.configure{next(LOGGERS)}")
    logger.propagate = False
    buffer = io.StringIO()
    try:
        configure_logging("text", logging.INFO, logger=logger, stream=buffer)
        configure_logging("json", "WARNING", logger=logger, stream=buffer)
        [handler] = logger.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert [type(f) for f in handler.filters] == [ScrubbingFilter]
        assert logger.level == logging.WARNING
        logger.info("dropped")
        logger.warning("kept")
        assert [e["msg"] for e in lines(buffer)] == ["kept"]
    finally:
        for handler in list(logger.handlers):
            logger.removeHandler(handler)


def test_text_format_keeps_the_handlers_formatter_and_still_masks(live_secret: str) -> None:
    logger = logging.getLogger(f"ars_test_logs.text{next(LOGGERS)}")
    logger.propagate = False
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    try:
        configure_logging("text", logger=logger)
        logger.warning("code %s", live_secret)
        assert buffer.getvalue() == "WARNING code ******\n"
    finally:
        logger.removeHandler(handler)


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        configure_logging("xml", logger=logging.getLogger("ars_test_logs.refused"))
