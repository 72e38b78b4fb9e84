"""Bugs the fuzz targets (fuzz/targets.py, docs/fuzzing.md) found, each reduced to its cause."""

from __future__ import annotations

import pytest

from ars_engine.errors import ProtocolError, ScenarioInvalid
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.telephony.ami import AmiConnection, Received

BANNER = b"Asterisk Call Manager/11.0.0\r\n"


# -- scenario: a start step named when there are no steps ------------------------------------------
@pytest.mark.parametrize(("text", "code"), [
    ("scenario: t\nstart: intro\n", "missing-key"),  # the fuzzer's input: a truncated file
    ("scenario: t\nstart: intro\nsteps: {}\n", "invalid-value"),
    ("scenario: t\nstart: intro\nsteps: [a]\n", "wrong-type"),
    ("scenario: t\nstart: intro\nsteps:\n", "wrong-type"),
])
def test_start_without_any_step_is_reported_not_a_key_error(text: str, code: str) -> None:
    # The reachability check looked the start step up although no step existed (KeyError).
    with pytest.raises(ScenarioInvalid) as info:
        load_scenario_text(text)
    assert [e.code for e in info.value.errors] == [code]


# -- AMI: the message size bound gave another verdict depending on the chunking ------------------
def feed(data: bytes, size: int, max_message_size: int
         ) -> tuple[list[Received], tuple[int, str] | None]:
    conn = AmiConnection(max_message_size=max_message_size)
    got: list[Received] = []
    try:
        for pos in range(0, len(data), size):
            got += conn.receive_data(data[pos:pos + size])
        got += conn.receive_data(b"")
    except ProtocolError as exc:
        return got, (exc.offset, exc.message.removeprefix("stream already failed: "))
    return got, None


def same_in_any_chunking(data: bytes, max_message_size: int
                         ) -> tuple[list[Received], tuple[int, str] | None]:
    whole = feed(data, len(data), max_message_size)
    for size in (1, 2, 3, 5, 16, 40):
        assert feed(data, size, max_message_size) == whole, f"chunks of {size}"
    return whole


def test_stray_carriage_returns_ending_a_message_count_in_any_chunking() -> None:
    # Fed whole, the CRs were stripped before the size check (45 bytes: fine); in pieces,
    # the incomplete message was measured with them (55 bytes: too long).
    message = b"Event: Foo\r\nKey: " + b"v" * 28
    data = BANNER + message + b"\r" * 10 + b"\r\n\r\n"
    got, error = same_in_any_chunking(data, 50)
    assert error == (len(BANNER), "message longer than 50 bytes")
    got, error = same_in_any_chunking(BANNER + message + b"\r\n\r\n", 50)
    assert error is None and len(got) == 3  # banner, the event, closed


def test_a_run_of_empty_lines_ends_the_message_at_its_first_crlf_crlf() -> None:
    # A read ending inside "\r\n\r\n\r\n" was cut at the last CRLF CRLF, leaving "\r\n" in
    # the message, so its size depended on where the reads ended.
    message = b"Event: Foo\r\nKey: " + b"v" * 32  # 49 bytes, the bound is 50
    data = BANNER + message + b"\r\n\r\n\r\nEvent: Bar\r\n\r\n"
    got, error = same_in_any_chunking(data, 50)
    assert error is None
    assert [type(x).__name__ for x in got] == ["Banner", "Event", "Event", "ConnectionClosed"]


# -- scenario: a pattern re.compile refuses with something else than re.error --------------------
HUGE = "^[0-9]{1" + "1" * 40 + ",2}$"  # the fuzzer's: a repetition count beyond re's limit
PATTERN_CASES = [
    (f"scenario: t\nparams:\n  day: {{type: digits, pattern: '{HUGE}'}}\n"
     "steps:\n  s: {finish: {outcome: success}}\n", "parameter 'day'.pattern", 3),
    ("scenario: t\nsteps:\n  s:\n    check: {value: '1', pattern: '" + HUGE + "'}\n"
     "    on: {match: f, no_match: f}\n  f: {finish: {outcome: success}}\n",
     "step 's': check.pattern", 4),
]


@pytest.mark.parametrize(("text", "what", "line"), PATTERN_CASES)
def test_a_pattern_re_cannot_compile_is_an_error_at_its_place(text: str, what: str,
                                                              line: int) -> None:
    # re.compile raised OverflowError ("the repetition number is too large"), not re.error.
    with pytest.raises(ScenarioInvalid) as info:
        load_scenario_text(text)
    errors = [e for e in info.value.errors if "not a regular expression" in e.message]
    assert len(errors) == 1 and what in errors[0].message and errors[0].line == line
    assert "repetition number is too large" in errors[0].message
