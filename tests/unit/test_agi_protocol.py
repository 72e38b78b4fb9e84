"""FastAGI sans-I/O core (ars_engine/telephony/agi/): commands, events, session, reply meaning.

The three recorded Asterisk 22 FastAGI conversations in tests/transcripts/asterisk/agi_*.jsonl
are replayed read by read and write by write (and again one byte at a time): every write is
rebuilt from a command object whose bytes must equal what was sent. Then: reply parsing, the
check() error table, the outcome readers, quoting against a port of res_agi.c parse_args,
injection, masking, fuzzing (only ProtocolError may come out) and the sans-I/O import rule.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import mutated, records

from ars_engine.errors import (
    AgiCommandFailed,
    AgiDeadChannel,
    AgiError,
    AgiHangup,
    AgiInvalidCommand,
    AgiUsageError,
    CalleeHangup,
    ChannelError,
    LocalProtocolError,
    ProtocolError,
)
from ars_engine.telephony.agi import (
    MAX_COMMAND_BYTES,
    AgiClosed,
    AgiCommand,
    AgiEnvironment,
    AgiEvent,
    AgiReply,
    AgiSession,
    AgiState,
    Answer,
    AsyncHangup,
    ChannelStatus,
    ControlStreamFile,
    Exec,
    GatheredDigits,
    GetData,
    GetFullVariable,
    GetVariable,
    Hangup,
    Noop,
    RecordEnd,
    RecordFile,
    RecordOutcome,
    SayDigits,
    SetVariable,
    StreamFile,
    Verbose,
    WaitForDigit,
    check,
    gathered_digits,
    pressed_key,
    record_outcome,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"
NAMES = ["agi_local_callee_hangup", "agi_local_agi_hangup", "agi_pjsip_sipp"]


@dataclass(frozen=True, slots=True, repr=False)
class NotACommand(AgiCommand):
    """The recorder's deliberately unknown command (provokes 510)."""

    name: ClassVar[str] = "THIS IS NOT A COMMAND"


@dataclass(frozen=True, slots=True, repr=False)
class BareStreamFile(AgiCommand):
    """STREAM FILE without its required arguments (provokes 520, or 511 on a dead channel)."""

    name: ClassVar[str] = "STREAM FILE"


# Every line the recording server wrote, and the command object that must produce it.
SENT: dict[bytes, AgiCommand] = {
    b"ANSWER\n": Answer(),
    b'STREAM FILE hello-world "0123456789#"\n': StreamFile("hello-world", "0123456789#"),
    b'STREAM FILE beep "#"\n': StreamFile("beep", "#"),
    b'STREAM FILE beep ""\n': StreamFile("beep"),
    b"GET DATA beep 3000 4\n": GetData("beep", 3000, 4),
    b"WAIT FOR DIGIT 3000\n": WaitForDigit(3000),
    b"WAIT FOR DIGIT 20000\n": WaitForDigit(20000),
    b'SAY DIGITS 1234 ""\n': SayDigits("1234"),
    b'RECORD FILE /tmp/rec wav "#" 3000\n': RecordFile("/tmp/rec", "wav", "#", 3000),
    b"GET VARIABLE ARS_CALL_ID\n": GetVariable("ARS_CALL_ID"),
    b"GET VARIABLE X\n": GetVariable("X"),
    b"GET VARIABLE NOT_SET_ANYWHERE\n": GetVariable("NOT_SET_ANYWHERE"),
    b"GET FULL VARIABLE ${ARS_CALL_ID}/${CHANNEL}/${UNIQUEID}\n":
        GetFullVariable("${ARS_CALL_ID}/${CHANNEL}/${UNIQUEID}"),
    b"SET VARIABLE X 1\n": SetVariable("X", "1"),
    b"CHANNEL STATUS\n": ChannelStatus(),
    b"EXEC SendDTMF 1\n": Exec("SendDTMF", "1"),
    b"EXEC NoSuchApplication foo\n": Exec("NoSuchApplication", "foo"),
    b'VERBOSE "hello from fastagi" 1\n': Verbose("hello from fastagi", 1),
    b"NOOP\n": Noop(),
    b"THIS IS NOT A COMMAND\n": NotACommand(),
    b"STREAM FILE\n": BareStreamFile(),
    b"HANGUP\n": Hangup(),
}


def steps(name: str) -> list[tuple[str, bytes]]:
    """The transcript's reads ("rx") and writes ("tx") in order, with their exact chunking."""
    return records(name)


Log = list[AgiCommand | AgiEnvironment | AgiReply | AsyncHangup | AgiClosed]


def replay(name: str, *, one_byte: bool = False) -> Log:
    """Feed the reads to a session and send the writes through it; the log of both, in order."""
    session = AgiSession()
    log: Log = []
    sent: AgiCommand | None = None
    for direction, data in steps(name):
        if direction == "tx":
            sent = SENT[data]
            assert bytes(sent) == data
            assert session.send(sent) == data
            log.append(sent)
            continue
        chunks = [data[i:i + 1] for i in range(len(data))] if one_byte else [data]
        for chunk in chunks:
            for event in session.receive_data(chunk):
                if isinstance(event, AgiReply):
                    assert event.command is sent and session.pending is None
                log.append(event)
    log += session.receive_data(b"")
    assert session.state is AgiState.CLOSED and session.buffered == 0
    return log


def story(log: Log) -> list[str]:
    """The log as readable lines: '>> command', '<< reply', 'HANGUP'…"""
    lines = []
    for item in log:
        if isinstance(item, AgiCommand):
            lines.append(">> " + bytes(item).decode().rstrip("\n"))
        elif isinstance(item, AgiReply):
            usage = f" +{len(item.usage.splitlines())} usage lines" if item.usage else ""
            late = " (after HANGUP)" if item.after_hangup else ""
            lines.append(f"<< {item.status_line}{usage}{late}")
        else:
            lines.append(type(item).__name__)
    return lines


def one_reply(events: list[AgiEvent]) -> AgiReply:
    (reply,) = events
    assert isinstance(reply, AgiReply)
    return reply


def replies(log: Log) -> list[AgiReply]:
    return [item for item in log if isinstance(item, AgiReply)]


def verdict(reply: AgiReply) -> str:
    try:
        check(reply)
    except AgiError as exc:
        return type(exc).__name__
    return "ok"


# -- the transcripts -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_transcript_replays_identically_in_chunks_and_one_byte_at_a_time(name: str) -> None:
    chunked, bytewise = replay(name), replay(name, one_byte=True)
    assert chunked == bytewise
    rx = (TRANSCRIPTS / f"{name}.rx.bin").read_bytes()
    tx = (TRANSCRIPTS / f"{name}.tx.bin").read_bytes()
    events = [e for e in chunked if not isinstance(e, AgiCommand | AgiClosed)]
    assert b"".join(bytes(e) for e in events) == rx  # every received byte is in one event
    assert b"".join(bytes(e) for e in chunked if isinstance(e, AgiCommand)) == tx
    assert isinstance(chunked[0], AgiEnvironment) and isinstance(chunked[-1], AgiClosed)


@pytest.mark.parametrize("name", NAMES)
def test_environment_block_fields(name: str) -> None:
    env = replay(name)[0]
    assert isinstance(env, AgiEnvironment)
    assert len(env) == 22 and list(env)[:3] == ["agi_network", "agi_network_script",
                                                "agi_request"]
    assert env["agi_network"] == "yes" and env.network_script == "scenario"
    assert env.request == "agi://127.0.0.1:4573/scenario"
    assert env.script == "scenario" and env.query == {} and env.args == ()
    assert env["agi_accountcode"] == "" and env["agi_context"] == "ars-out"
    assert env["agi_version"] == "GIT-22-22.0.0-pre1-541-g69535d4837"
    assert AgiEnvironment.parse(bytes(env)) == env
    expected = {"agi_local_callee_hangup": ("Local/s@callee-00000005;1", "ars-abc-1", "5551000"),
                "agi_local_agi_hangup": ("Local/s@callee-long-00000002;1", "ars-abc-2",
                                         "unknown"),
                "agi_pjsip_sipp": ("PJSIP/softphone-00000001", "ars-sipp-1", "5551000")}[name]
    assert (env.channel, env.uniqueid, env.callerid) == expected


def test_callee_hangup_transcript_story() -> None:
    log = replay("agi_local_callee_hangup")
    dead = "<< 511 Command Not Permitted on a dead channel or intercept routine (after HANGUP)"
    assert story(log) == [
        "AgiEnvironment",
        ">> ANSWER", "<< 200 result=0",
        '>> STREAM FILE hello-world "0123456789#"', "<< 200 result=49 endpos=9760",
        ">> GET DATA beep 3000 4", "<< 200 result=2345",
        ">> WAIT FOR DIGIT 3000", "<< 200 result=54",
        '>> SAY DIGITS 1234 ""', "<< 200 result=0",
        '>> RECORD FILE /tmp/rec wav "#" 3000', "<< 200 result=-1 (hangup) endpos=0",
        ">> GET VARIABLE ARS_CALL_ID", "AsyncHangup", "<< 200 result=1 (abc) (after HANGUP)",
        ">> GET FULL VARIABLE ${ARS_CALL_ID}/${CHANNEL}/${UNIQUEID}",
        "<< 200 result=1 (abc/Local/s@callee-00000005;1/ars-abc-1) (after HANGUP)",
        ">> SET VARIABLE X 1", "<< 200 result=1 (after HANGUP)",
        ">> GET VARIABLE X", "<< 200 result=1 (1) (after HANGUP)",
        ">> GET VARIABLE NOT_SET_ANYWHERE", "<< 200 result=0 (after HANGUP)",
        ">> CHANNEL STATUS", dead,
        ">> EXEC SendDTMF 1", "<< 200 result=0 (after HANGUP)",
        ">> EXEC NoSuchApplication foo", "<< 200 result=-2 (after HANGUP)",
        '>> VERBOSE "hello from fastagi" 1', "<< 200 result=1 (after HANGUP)",
        ">> NOOP", "<< 200 result=0 (after HANGUP)",
        ">> THIS IS NOT A COMMAND", "<< 510 Invalid or unknown command (after HANGUP)",
        ">> STREAM FILE", dead,
        ">> WAIT FOR DIGIT 20000", dead,
        ">> GET VARIABLE ARS_CALL_ID", "<< 200 result=1 (abc) (after HANGUP)",
        '>> STREAM FILE beep ""', dead,
        ">> HANGUP", dead,
        "AgiClosed",
    ]
    assert [verdict(r) for r in replies(log)] == [
        "ok", "ok", "ok", "ok", "ok", "AgiHangup", "ok", "ok", "ok", "ok", "ok",
        "AgiDeadChannel", "ok", "AgiCommandFailed", "ok", "ok", "AgiInvalidCommand",
        "AgiDeadChannel", "AgiDeadChannel", "ok", "AgiDeadChannel", "AgiDeadChannel"]


def test_callee_hangup_transcript_outcomes() -> None:
    r = replies(replay("agi_local_callee_hangup"))
    assert (r[1].result, r[1].endpos, pressed_key(r[1])) == (49, 9760, "1")  # STREAM FILE
    assert gathered_digits(r[2]) == GatheredDigits("2345", timed_out=False)  # GET DATA
    assert r[2].result_text == "2345"
    assert pressed_key(r[3]) == "6"  # WAIT FOR DIGIT: result=54
    assert pressed_key(r[4]) is None  # SAY DIGITS ran to its end
    assert record_outcome(r[5]) == RecordOutcome(RecordEnd.HANGUP, None, 0)  # cut by hangup
    with pytest.raises(AgiHangup):
        check(r[5])
    assert (r[6].result, r[6].data) == (1, "abc") and not r[5].after_hangup
    assert r[6].after_hangup  # the HANGUP came between GET VARIABLE and its reply
    assert r[7].data == "abc/Local/s@callee-00000005;1/ars-abc-1"
    assert (r[9].result, r[9].data) == (1, "1") and (r[10].result, r[10].data) == (0, None)
    assert (r[13].result, r[13].command) == (-2, Exec("NoSuchApplication", "foo"))


def test_agi_hangup_transcript_story() -> None:
    log = replay("agi_local_agi_hangup")
    lines = story(log)
    assert lines[11:13] == ['>> RECORD FILE /tmp/rec wav "#" 3000',
                            "<< 200 result=0 (timeout) endpos=0"]
    assert lines[23:25] == [">> CHANNEL STATUS", "<< 200 result=6"]
    assert lines[33:] == [
        ">> THIS IS NOT A COMMAND", "<< 510 Invalid or unknown command",
        ">> STREAM FILE", "<< 520-Invalid command syntax.  Proper usage follows: +5 usage lines",
        ">> HANGUP", "<< 200 result=1", "AsyncHangup",
        ">> GET VARIABLE X", "<< 200 result=1 (1) (after HANGUP)",
        '>> STREAM FILE beep ""',
        "<< 511 Command Not Permitted on a dead channel or intercept routine (after HANGUP)",
        ">> ANSWER",
        "<< 511 Command Not Permitted on a dead channel or intercept routine (after HANGUP)",
        "AgiClosed"]
    r = replies(log)
    assert [verdict(x) for x in r] == [
        "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok", "ok",
        "AgiCommandFailed", "ok", "ok", "AgiInvalidCommand", "AgiUsageError", "ok", "ok",
        "AgiDeadChannel", "AgiDeadChannel"]
    assert record_outcome(r[5]) == RecordOutcome(RecordEnd.TIMEOUT, None, 0)
    usage = r[17].usage or ""
    assert usage.startswith("Send the given file, allowing playback to be interrupted")
    assert "<literal>0</literal>" in usage and usage.endswith("    <value>FAILED</value>")
    assert len(usage.splitlines()) == 5 and r[17].raw.endswith(b"\n520 End of proper usage.\n")
    with pytest.raises(AgiUsageError) as info:
        check(r[17])
    assert info.value.usage == usage and isinstance(info.value.reply.command, BareStreamFile)


@pytest.mark.parametrize("name", NAMES)
def test_after_hangup_only_runs_dead_commands_are_served(name: str) -> None:
    late = [r for r in replies(replay(name)) if r.after_hangup and r.code != 510]
    assert all(r.command is not None for r in late)
    assert [r.code == 511 for r in late] == [
        r.command is not None and not r.command.runs_dead for r in late]


def test_pjsip_transcript_story() -> None:
    log = replay("agi_pjsip_sipp")
    assert story(log)[1:] == [
        ">> ANSWER", "<< 200 result=0",
        '>> STREAM FILE beep "#"', "<< 200 result=0 endpos=3404",
        ">> GET VARIABLE ARS_CALL_ID", "<< 200 result=1 (sipp)",
        ">> CHANNEL STATUS", "<< 200 result=6",
        ">> HANGUP", "<< 200 result=1", "AsyncHangup", "AgiClosed"]
    assert pressed_key(replies(log)[1]) is None and replies(log)[1].endpos == 3404


# -- session rules ---------------------------------------------------------------------------------
ENV = (TRANSCRIPTS / "agi_pjsip_sipp.rx.bin").read_bytes()[:509]


def ready() -> AgiSession:
    session = AgiSession()
    assert isinstance(session.receive_data(ENV)[0], AgiEnvironment)
    assert session.state is AgiState.IDLE
    return session


def test_sending_while_a_reply_is_pending_is_a_local_error() -> None:
    session = ready()
    session.send(StreamFile("beep", "#"))
    with pytest.raises(LocalProtocolError, match="while STREAM FILE awaits its reply"):
        session.send(Noop())
    reply = one_reply(session.receive_data(b"200 result=0 endpos=3404\n"))
    assert reply.command == StreamFile("beep", "#")
    assert session.send(Noop()) == b"NOOP\n"


def test_sending_before_the_environment_or_after_close_is_a_local_error() -> None:
    session = AgiSession()
    with pytest.raises(LocalProtocolError, match="before the environment"):
        session.send(Answer())
    assert session.receive_data(ENV[:100]) == [] and session.buffered == 100
    session.receive_data(ENV[100:])
    assert session.receive_data(b"") == [AgiClosed()]
    with pytest.raises(LocalProtocolError, match="after the connection closed"):
        session.send(Answer())
    with pytest.raises(LocalProtocolError, match="after the end"):
        session.receive_data(b"200 result=0\n")


def test_a_reply_with_no_command_pending_is_a_protocol_error() -> None:
    session = ready()
    with pytest.raises(ProtocolError, match="no command awaiting") as info:
        session.receive_data(b"200 result=0\n")
    assert info.value.protocol == "agi" and info.value.offset == len(ENV)
    assert session.failed and session.state is AgiState.ERROR
    with pytest.raises(ProtocolError, match="already failed"):
        session.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after a protocol error"):
        session.send(Noop())


def test_events_before_a_bad_line_are_delivered_then_the_next_call_raises() -> None:
    session = ready()
    session.send(Noop())
    assert session.receive_data(b"200 result=0\nHANGUP\ngarbage\n") == [
        AgiReply(200, "0", raw=b"200 result=0\n", command=Noop()), AsyncHangup()]
    assert session.failed and session.hung_up
    with pytest.raises(ProtocolError, match="already failed: a line arrived"):
        session.receive_data(b"")


def test_async_hangup_between_a_command_and_its_reply() -> None:
    session = ready()
    session.send(GetVariable("ARS_CALL_ID"))
    assert session.receive_data(b"HANG") == []
    assert session.receive_data(b"UP\n") == [AsyncHangup()]
    assert session.pending == GetVariable("ARS_CALL_ID") and session.hung_up
    reply = one_reply(session.receive_data(b"200 result=1 (abc)\n"))
    assert reply.after_hangup and reply.data == "abc" and session.pending is None
    assert session.receive_data(b"HANGUP\n") == [AsyncHangup()]  # a second one is reported too


def test_incomplete_input_waits_and_long_lines_are_refused() -> None:
    session = AgiSession(max_line=64, max_environment=256)
    assert session.receive_data(b"agi_network: yes\nagi_request: agi://h/s") == []
    with pytest.raises(ProtocolError, match="longer than 64"):
        session.receive_data(b"x" * 64)
    session = AgiSession(max_line=64, max_environment=256)
    with pytest.raises(ProtocolError, match="environment block longer than 256"):
        session.receive_data(b"agi_x: 1\n" * 40)
    session = AgiSession(max_line=80)
    session.receive_data(ENV)
    session.send(BareStreamFile())
    with pytest.raises(ProtocolError, match="520 usage block longer than 80"):
        session.receive_data(b"520-Invalid command syntax.  Proper usage follows:\n" + b"u\n" * 40)


def test_environment_with_query_string_and_dialplan_arguments() -> None:
    block = (b"agi_network: yes\n"
             b"agi_network_script: scenario?call_id=abc&lang=%ED%95%9C&empty=\n"
             b"agi_request: agi://127.0.0.1:4573/scenario?call_id=abc&lang=%ED%95%9C&empty=\n"
             b"agi_channel: PJSIP/trunk-00000007\nagi_arg_1: first\nagi_arg_2: two words\n"
             b"agi_arg_4: not contiguous\n\n")
    (env,) = AgiSession().receive_data(block)
    assert isinstance(env, AgiEnvironment)
    assert env.script == "scenario" and env.network_script.startswith("scenario?call_id=abc")
    assert env.query == {"call_id": "abc", "lang": "한", "empty": ""}
    assert env.args == ("first", "two words") and env.uniqueid == ""
    assert bytes(env) == block and "PJSIP/trunk" in repr(env)


@pytest.mark.parametrize(("block", "reason"), [
    (b"\n", "without agi_request"),
    (b"agi_request agi://h/s\n\n", "not 'agi_name: value'"),
    (b"GET / HTTP/1.1\n\n", "not 'agi_name: value'"),
    (b"Host: example.com\n\n", "not 'agi_name: value'"),
    (b"agi_request: a\nagi_request: b\n\n", "repeated"),
    (b"agi_request: agi://[::1/s\n\n", "not a URL"),
])
def test_malformed_environment_blocks_raise_protocol_error(block: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        AgiSession().receive_data(block)


def test_non_utf8_bytes_never_crash() -> None:
    session = AgiSession()
    (env,) = session.receive_data(b"agi_request: agi://h/s\nagi_callerid: caf\xe9\xff\n\n")
    assert isinstance(env, AgiEnvironment) and env.callerid == "caf\ufffd\ufffd"
    session.send(GetVariable("X"))
    reply = one_reply(session.receive_data(b"200 result=1 (\xc3\x28)\n"))
    assert reply.data == "\ufffd(" and reply.raw == b"200 result=1 (\xc3\x28)\n"


# -- reply parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "code", "result", "data", "extra"), [
    (b"200 result=0\n", 200, "0", None, ()),
    (b"200 result=49 endpos=9760\n", 200, "49", None, (("endpos", "9760"),)),
    (b"200 result=2345\n", 200, "2345", None, ()),
    (b"200 result=1 (abc)\n", 200, "1", "abc", ()),
    (b"200 result=1 (a (b) c) endpos=2)\n", 200, "1", "a (b) c) endpos=2", ()),
    (b"200 result=1 ()\n", 200, "1", "", ()),
    (b"200 result=0 (timeout) endpos=0\n", 200, "0", "timeout", (("endpos", "0"),)),
    (b"200 result=-1 (hangup) endpos=0\n", 200, "-1", "hangup", (("endpos", "0"),)),
    (b"200 result=35 (dtmf) endpos=8000\n", 200, "35", "dtmf", (("endpos", "8000"),)),
    (b"200 result=-2\n", 200, "-2", None, ()),
    (b"200 result= (timeout)\n", 200, "", "timeout", ()),
    (b"200 result=12*3\n", 200, "12*3", None, ()),
    (b'200 result=1 (speech) endpos=0 results=1 text0="a b" grammar0=g\n', 200, "1", "speech",
     (("endpos", "0"), ("results", "1"), ("text0", '"a b"'), ("grammar0", "g"))),
    (b"510 Invalid or unknown command\n", 510, None, None, ()),
    (b"511 Command Not Permitted on a dead channel or intercept routine\n", 511, None, None, ()),
    (b"520 Invalid command syntax.  Proper usage not available.\n", 520, None, None, ()),
])
def test_reply_forms(raw: bytes, code: int, result: str | None, data: str | None,
                     extra: tuple[tuple[str, str], ...]) -> None:
    reply = AgiReply.parse(raw)
    assert (reply.code, reply.result_text, reply.data, reply.extra) == (code, result, data, extra)
    assert bytes(reply) == raw and reply.usage is None


def test_usage_block_whose_last_line_lacks_its_lf() -> None:
    reply = AgiReply.parse(b"520-Invalid command syntax.  Proper usage follows:\n"
                           b"Usage: X\n<para>more</para>520 End of proper usage.\n")
    assert reply.usage == "Usage: X\n<para>more</para>"


@pytest.mark.parametrize(("raw", "reason"), [
    (b"200 result=0", "LF"),
    (b"HELLO\n", "3-digit"),
    (b"200 rezult=0\n", "without result="),
    (b"200 result=0 (x)junk\n", "unclosed"),
    (b"200 result=0 (timeout\n", "unclosed"),
    (b"200 result=0 endpos\n", "key=value"),
    (b"200 result=0  endpos=1\n", "key=value"),
    (b"200-result=0\nx\n200 ok\n", "not 520"),
    (b"520-Invalid\nusage\n", "does not end"),
    (b"200 result=0\nextra\n", "holds a LF"),
])
def test_malformed_replies_raise_protocol_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        AgiReply.parse(raw)


def test_huge_numbers_do_not_become_ints() -> None:
    reply = AgiReply.parse(b"200 result=" + b"9" * 5000 + b" endpos=" + b"9" * 5000 + b"\n")
    assert reply.result is None and reply.endpos is None and len(reply.result_text or "") == 5000


# -- check(): the error table ----------------------------------------------------------------------
def answer(raw: bytes, command: AgiCommand | None, *, after_hangup: bool = False) -> AgiReply:
    session = ready()
    if after_hangup:
        session.receive_data(b"HANGUP\n")
    session.send(command or Noop())
    reply = one_reply(session.receive_data(raw))
    return reply if command is not None else AgiReply.parse(raw)


@pytest.mark.parametrize(("raw", "command", "after_hangup", "raises", "may_be_hangup"), [
    (b"200 result=0\n", Answer(), False, None, None),
    (b"200 result=49 endpos=9760\n", StreamFile("f", "1"), False, None, None),
    (b"200 result=-1 endpos=0\n", StreamFile("missing"), False, AgiCommandFailed, True),
    (b"200 result=-1 endpos=0\n", StreamFile("f"), True, AgiHangup, None),
    (b"200 result=-1\n", GetData("f", 3000, 4), False, AgiCommandFailed, True),
    (b"200 result=-1\n", GetData("f", 3000, 4), True, AgiHangup, None),
    (b"200 result=-1\n", WaitForDigit(3000), True, AgiHangup, None),
    (b"200 result=-1 (hangup) endpos=0\n", RecordFile("r", "wav", "#", 1), False, AgiHangup,
     None),
    (b"200 result=-1 (writefile)\n", RecordFile("r", "wav", "#", 1), False, AgiCommandFailed,
     True),
    (b"200 result=35 (randomerror) endpos=0\n", RecordFile("r", "wav", "#", 1, beep=True),
     False, AgiCommandFailed, False),
    (b"200 result=0 (timeout) endpos=0\n", RecordFile("r", "wav", "#", 1), False, None, None),
    (b"200 result=-2\n", Exec("Nope", "x"), False, AgiCommandFailed, False),
    (b"200 result=-2\n", Exec("Nope", "x"), True, AgiCommandFailed, False),
    (b"200 result=0\n", Exec("SendDTMF", "1"), True, None, None),
    (b"200 result=-1\n", ChannelStatus(), False, AgiCommandFailed, True),
    (b"200 result=0\n", GetVariable("UNSET"), False, None, None),
    (b"200 result= (timeout)\n", GetData("f", 3000, 4), False, None, None),
    (b"510 Invalid or unknown command\n", NotACommand(), False, AgiInvalidCommand, None),
    (b"511 Command Not Permitted on a dead channel or intercept routine\n", StreamFile("f"),
     True, AgiDeadChannel, None),
    (b"520 Invalid command syntax.  Proper usage not available.\n", BareStreamFile(), False,
     AgiUsageError, None),
    (b"530 Something new\n", Noop(), False, AgiError, None),
    (b"200 result=-1\n", None, False, AgiCommandFailed, True),
])
def test_check_maps_replies_to_the_agi_error_tree(
        raw: bytes, command: AgiCommand | None, after_hangup: bool,
        raises: type[AgiError] | None, may_be_hangup: bool | None) -> None:
    reply = answer(raw, command, after_hangup=after_hangup)
    if raises is None:
        assert check(reply) is reply
        return
    with pytest.raises(raises) as info:
        check(reply)
    assert type(info.value) is raises and info.value.reply is reply
    assert info.value.reply.raw == raw
    if may_be_hangup is not None:
        assert isinstance(info.value, AgiCommandFailed)
        assert info.value.may_be_hangup is may_be_hangup


def test_error_tree_tells_the_interpreter_a_hangup_is_the_callee_hanging_up() -> None:
    assert issubclass(AgiHangup, CalleeHangup) and issubclass(AgiDeadChannel, AgiHangup)
    for cls in (AgiInvalidCommand, AgiUsageError, AgiCommandFailed, AgiHangup):
        assert issubclass(cls, AgiError) and issubclass(cls, ChannelError)
    assert not issubclass(AgiCommandFailed, CalleeHangup)
    assert not issubclass(LocalProtocolError, ChannelError)


# -- outcome readers -------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "key"), [
    (b"200 result=0 endpos=100\n", None), (b"200 result=49 endpos=9760\n", "1"),
    (b"200 result=35\n", "#"), (b"200 result=42\n", "*"), (b"200 result=65\n", "A"),
    (b"200 result=54\n", "6"),
])
def test_pressed_key_reads_ascii_codes(raw: bytes, key: str | None) -> None:
    assert pressed_key(answer(raw, WaitForDigit(1000))) == key


@pytest.mark.parametrize("raw", [b"200 result=200\n", b"200 result=1\n", b"200 result=x\n"])
def test_pressed_key_refuses_codes_that_are_not_keys(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        pressed_key(answer(raw, WaitForDigit(1000)))


def test_pressed_key_raises_the_hangup_first() -> None:
    with pytest.raises(AgiHangup):
        pressed_key(answer(b"200 result=-1\n", WaitForDigit(1000), after_hangup=True))


@pytest.mark.parametrize(("raw", "digits", "timed_out"), [
    (b"200 result=2345\n", "2345", False), (b"200 result=12*3\n", "12*3", False),
    (b"200 result=23 (timeout)\n", "23", True), (b"200 result= (timeout)\n", "", True),
    (b"200 result=\n", "", False),
])
def test_gathered_digits(raw: bytes, digits: str, timed_out: bool) -> None:
    assert gathered_digits(answer(raw, GetData("f", 1, 4))) == GatheredDigits(digits, timed_out)


def test_gathered_digits_refuses_text_that_is_not_keys() -> None:
    with pytest.raises(ProtocolError):
        gathered_digits(answer(b"200 result=12x\n", GetData("f", 1, 4)))


@pytest.mark.parametrize(("raw", "outcome"), [
    (b"200 result=35 (dtmf) endpos=8000\n", RecordOutcome(RecordEnd.DTMF, "#", 8000)),
    (b"200 result=0 (timeout) endpos=24000\n", RecordOutcome(RecordEnd.TIMEOUT, None, 24000)),
    (b"200 result=-1 (hangup) endpos=1600\n", RecordOutcome(RecordEnd.HANGUP, None, 1600)),
])
def test_record_outcome(raw: bytes, outcome: RecordOutcome) -> None:
    assert record_outcome(answer(raw, RecordFile("r", "wav", "#", 3000))) == outcome


@pytest.mark.parametrize(("raw", "raises"), [
    (b"200 result=-1 (writefile)\n", AgiCommandFailed),
    (b"200 result=0\n", ProtocolError),
    (b"200 result=0 (odd) endpos=3\n", ProtocolError),
    (b"511 Command Not Permitted on a dead channel\n", AgiDeadChannel),
])
def test_record_outcome_failures(raw: bytes, raises: type[Exception]) -> None:
    with pytest.raises(raises):
        record_outcome(answer(raw, RecordFile("r", "wav", "#", 3000)))


# -- commands: wire forms, quoting, injection ------------------------------------------------------
@pytest.mark.parametrize(("command", "line"), [
    (StreamFile("hello-world", "0123456789#", offset=800),
     b'STREAM FILE hello-world "0123456789#" 800\n'),
    (StreamFile("/var/prompts/안내 1"), '/var/prompts/안내 1'.join(
        ['STREAM FILE "', '" ""\n']).encode()),
    (ControlStreamFile("f", "#"), b'CONTROL STREAM FILE f "#"\n'),
    (ControlStreamFile("f", "12", skip_ms=1000), b'CONTROL STREAM FILE f "12" 1000\n'),
    (ControlStreamFile("f", "1", rewind="4"), b'CONTROL STREAM FILE f "1" 3000 # 4\n'),
    (ControlStreamFile("f", "1", offset_ms=500), b'CONTROL STREAM FILE f "1" 3000 # * "" 500\n'),
    (RecordFile("/r/x", "wav", "#", -1, beep=True, silence_s=3),
     b'RECORD FILE /r/x wav "#" -1 BEEP s=3\n'),
    (RecordFile("/r/x", "wav", "", 5000, offset=0, beep=True),
     b'RECORD FILE /r/x wav "" 5000 0 BEEP\n'),
    (RecordFile("/r/x", "wav", "*", 5000, silence_s=2), b'RECORD FILE /r/x wav "*" 5000 s=2\n'),
    (WaitForDigit(-1), b"WAIT FOR DIGIT -1\n"),
    (SetVariable("CALLERID(num)", ""), b'SET VARIABLE CALLERID(num) ""\n'),
    (SetVariable("X", 'say "hi" \\ bye'), b'SET VARIABLE X "say \\"hi\\" \\\\ bye"\n'),
    (SetVariable("X", "tab\there"), b'SET VARIABLE X "tab\there"\n'),
    (GetFullVariable("${CHANNEL}", "PJSIP/a-1"), b"GET FULL VARIABLE ${CHANNEL} PJSIP/a-1\n"),
    (Exec("Wait", ""), b"EXEC Wait\n"),
    (Exec("Playback", "beep&beep"), b"EXEC Playback beep&beep\n"),
    (Exec("Set", "A=b c"), b'EXEC Set "A=b c"\n'),
    (Verbose("", 4), b'VERBOSE "" 4\n'),
    (Hangup(), b"HANGUP\n"), (ChannelStatus(), b"CHANNEL STATUS\n"),
])
def test_command_wire_forms(command: AgiCommand, line: bytes) -> None:
    assert bytes(command) == line


def parse_args(line: str) -> list[str]:
    """A port of res_agi.c parse_args: how Asterisk splits a command line into words."""
    words: list[str] = []
    quoted = escaped = False
    whitespace = True
    for ch in line:
        if ch == '"' and not escaped:
            quoted = not quoted
            if quoted and whitespace:  # an opening quote after whitespace starts a word
                words.append("")
                whitespace = False
            continue
        if ch in " \t" and not quoted and not escaped:
            whitespace = True
            continue
        if ch == "\\" and not escaped:
            escaped = True
            continue
        if whitespace:
            words.append("")
            whitespace = False
        words[-1] += ch
        escaped = False
    return words


def test_parse_args_port_reads_the_transcript_lines() -> None:
    assert parse_args('STREAM FILE hello-world "0123456789#"') == [
        "STREAM", "FILE", "hello-world", "0123456789#"]
    assert parse_args('SAY DIGITS 1234 ""') == ["SAY", "DIGITS", "1234", ""]
    assert parse_args('VERBOSE "hello from fastagi" 1') == ["VERBOSE", "hello from fastagi", "1"]


SAFE_TEXT = st.text(st.characters(exclude_categories=["Cs", "Cc"]) | st.sampled_from(
    list(' \t"\\$(),;&|')), max_size=60)


@settings(max_examples=400, deadline=None)
@given(SAFE_TEXT, SAFE_TEXT.filter(bool))
def test_any_value_reaches_asterisk_as_exactly_one_word(value: str, file: str) -> None:
    def words(command: AgiCommand) -> list[str]:
        return parse_args(bytes(command).decode()[:-1])
    assert words(SetVariable("X", value)) == ["SET", "VARIABLE", "X", value]
    assert words(Verbose(value, 2)) == ["VERBOSE", value, "2"]
    assert words(StreamFile(file, "#")) == ["STREAM", "FILE", file, "#"]
    assert words(RecordFile(file, "wav", "", 100, beep=True)) == [
        "RECORD", "FILE", file, "wav", "", "100", "BEEP"]
    if value:
        assert words(Exec("Set", value)) == ["EXEC", "Set", value]


TEXT_ARGUMENTS = [
    (lambda v: StreamFile(v), "StreamFile.file"),
    (lambda v: ControlStreamFile(v), "ControlStreamFile.file"),
    (lambda v: GetData(v, 1, 1), "GetData.file"),
    (lambda v: RecordFile(v, "wav", "", 1), "RecordFile.file"),
    (lambda v: RecordFile("r", v, "", 1), "RecordFile.format"),
    (lambda v: SetVariable("X", v), "SetVariable.value"),
    (lambda v: GetFullVariable(v), "GetFullVariable.expression"),
    (lambda v: GetFullVariable("x", v), "GetFullVariable.channel"),
    (lambda v: Exec("Set", v), "Exec.options"),
    (lambda v: Verbose(v), "Verbose.message"),
]


@pytest.mark.parametrize(("build", "where"), TEXT_ARGUMENTS, ids=[w for _, w in TEXT_ARGUMENTS])
@pytest.mark.parametrize("evil", ["1\nHANGUP", "1\rHANGUP", "a\x00b", "\n", "x\x1b[2J",
                                  "\ud800"])
def test_control_characters_in_any_argument_are_refused_naming_it(build: object, where: str,
                                                                   evil: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")) as info:
        build(evil)  # type: ignore[operator]
    assert evil not in str(info.value)


@pytest.mark.parametrize(("build", "where"), [
    (lambda: StreamFile("f", "1x"), "StreamFile.escape_digits"),
    (lambda: StreamFile("f", '" HANGUP'), "StreamFile.escape_digits"),
    (lambda: StreamFile("", "1"), "StreamFile.file"),
    (lambda: StreamFile("f", offset=-1), "StreamFile.offset"),
    (lambda: ControlStreamFile("f", forward="##"), "ControlStreamFile.forward"),
    (lambda: GetData("f", 1000, 0), "GetData.max_digits"),
    (lambda: GetData("f", -5, 4), "GetData.timeout_ms"),
    (lambda: WaitForDigit(-2), "WaitForDigit.timeout_ms"),
    (lambda: WaitForDigit(True), "WaitForDigit.timeout_ms"),
    (lambda: RecordFile("r", "wav", "#", 1, silence_s=0), "RecordFile.silence_s"),
    (lambda: SayDigits("12a"), "SayDigits.digits"),
    (lambda: SetVariable("A B", "1"), "SetVariable.variable"),
    (lambda: GetVariable("X\nHANGUP"), "GetVariable.variable"),
    (lambda: Exec("Set;System", "x"), "Exec.application"),
    (lambda: Verbose("x", 9), "Verbose.level"),
])
def test_bad_arguments_are_refused_naming_them(build: object, where: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        build()  # type: ignore[operator]


def test_a_line_longer_than_asterisks_buffer_is_refused() -> None:
    fits = "x" * (MAX_COMMAND_BYTES - len("VERBOSE  1\n"))
    assert len(bytes(Verbose(fits))) == MAX_COMMAND_BYTES
    with pytest.raises(ValueError, match="2047"):
        Verbose(fits + "x")


# -- secrets stay out of reprs and error messages --------------------------------------------------
def test_reprs_never_show_keys_the_callee_typed() -> None:
    for raw, command, secret in [
        (b"200 result=2345\n", GetData("f", 3000, 4), "2345"),
        (b"200 result=54\n", WaitForDigit(3000), "54"),
        (b"200 result=49 endpos=9760\n", StreamFile("f", "1"), "49"),
        (b"200 result=918273 (timeout)\n", GetData("f", 3000, 6), "918273"),
    ]:
        reply = answer(raw, command)
        assert secret not in repr(reply) and secret not in str(reply)
        assert reply.result_text == secret  # still there for the code that needs it
    digits = gathered_digits(answer(b"200 result=918273\n", GetData("f", 3000, 6)))
    assert "918273" not in repr(digits) and digits.digits == "918273"
    assert "918273" not in repr(SayDigits("918273")) and "918273" not in repr(
        SetVariable("PIN", "918273")) and "918273" not in repr(Exec("SendDTMF", "918273"))
    assert repr(answer(b"200 result=1 (abc)\n", GetVariable("X"))) == (
        "<AgiReply 200 result=1 (<3 chars>) to GET VARIABLE>")
    assert repr(answer(b"200 result=0 (timeout) endpos=0\n", RecordFile("r", "wav", "#", 1))) == (
        "<AgiReply 200 result=0 (timeout) endpos=0 to RECORD FILE>")


def test_error_messages_name_the_command_not_its_arguments() -> None:
    reply = answer(b"200 result=-1\n", GetData("secret-prompt-918273", 3000, 6))
    with pytest.raises(AgiCommandFailed) as info:
        check(reply)
    assert str(info.value) == "GET DATA failed (result -1)"
    assert "918273" not in repr(info.value)


# -- fuzzing: parse or raise ProtocolError, nothing else -------------------------------------------
def exercise(reply: AgiReply) -> None:
    """Everything a server does with a reply raises only AgiError or ProtocolError."""
    assert bytes(reply) == reply.raw and repr(reply)
    assert AgiReply.parse(reply.raw).raw == reply.raw
    for read in (check, pressed_key, gathered_digits, record_outcome):
        with contextlib.suppress(AgiError, ProtocolError):
            read(reply)


def drive(data: bytes, size: int) -> None:
    session = AgiSession(max_line=512, max_environment=2048)
    try:
        for pos in range(0, len(data), size):
            for event in session.receive_data(data[pos:pos + size]):
                if isinstance(event, AgiReply):
                    exercise(event)
                elif isinstance(event, AgiEnvironment):
                    assert AgiEnvironment.parse(bytes(event)) == event
                    assert isinstance(event.query, dict) and event.script is not None
            if session.state is AgiState.IDLE:
                session.send(Noop())
        session.receive_data(b"")
    except ProtocolError as exc:
        assert exc.protocol == "agi"


RX = [(TRANSCRIPTS / f"{name}.rx.bin").read_bytes() for name in NAMES]


AGI_SPECIALS = [b"\n", b"HANGUP\n", b"520-", b"520 ", b"(", b")", b" ", b"=", b'"', b"\xff",
                b"\x00", b"200 result=", b"-1", b": "]
MUTATED = mutated(RX, AGI_SPECIALS, dup_max=60)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600), st.integers(1, 64))
def test_random_bytes_raise_only_protocol_error(data: bytes, size: int) -> None:
    drive(data, size)
    drive(ENV + data, size)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATED, st.integers(1, 97))
def test_mutated_transcripts_raise_only_protocol_error(data: bytes, size: int) -> None:
    drive(data, size)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_event_parsers_raise_only_protocol_error(data: bytes) -> None:
    for parse in (AgiReply.parse, AgiEnvironment.parse, AsyncHangup.parse):
        with contextlib.suppress(ProtocolError):
            parse(data)
    with contextlib.suppress(ProtocolError):
        exercise(AgiReply.parse(b"200 result=" + data.replace(b"\n", b"") + b"\n"))
