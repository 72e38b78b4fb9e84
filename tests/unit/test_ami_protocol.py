"""AMI core (ars_engine/telephony/ami/): recorded Asterisk 22 transcripts replayed whole, in
their recorded chunks and one byte at a time; actions round-tripped byte for byte; matching by
ActionID; lists; typed events; bounds, header injection, secrets; fuzzing; the sans-I/O rule.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mutations import records as transcript_records

from ars_engine.errors import ProtocolError
from ars_engine.telephony.ami import (
    Action,
    AmiConnection,
    Banner,
    ConnectionClosed,
    DialEnd,
    Event,
    EventListResult,
    Hangup,
    Newchannel,
    OriginateResponse,
    Received,
    Response,
    VarSet,
    challenge_action,
    login_action,
    logoff_action,
    md5_key,
    md5_login_action,
    ping_action,
    typed,
)

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"
NAMES = sorted(path.name.removesuffix(".jsonl") for path in TRANSCRIPTS.glob("ami_*.jsonl"))
BANNER = b"Asterisk Call Manager/11.0.0\r\n"
MAIN = "ami_main_local_originate"


def records(name: str) -> list[tuple[str, bytes]]:
    """The transcript's socket reads and writes in order: ("rx"|"tx", bytes), ("eof", b"")."""
    return transcript_records(name, eof=True)


def blocks(data: bytes) -> list[bytes]:
    """The messages of a stream of whole actions, each with its final empty line."""
    assert data.endswith(b"\r\n\r\n")
    return [block + b"\r\n\r\n" for block in data[:-4].split(b"\r\n\r\n")]


def sent_actions(name: str) -> list[Action]:
    return [Action.parse(block) for block in blocks((TRANSCRIPTS / f"{name}.tx.bin").read_bytes())]


def replay(name: str, mode: str) -> list[Received]:
    """Feed a transcript through a fresh connection: the actions we sent via send(), the bytes
    received whole, in the recorded chunks (interleaved with the sends) or byte by byte."""
    conn = AmiConnection()
    got: list[Received] = []
    if mode == "chunks":
        for direction, data in records(name):
            if direction == "tx":
                for action in (Action.parse(block) for block in blocks(data)):
                    conn.send(action)
            else:
                got += conn.receive_data(data)
        return got
    for action in sent_actions(name):
        conn.send(action)
    rx = (TRANSCRIPTS / f"{name}.rx.bin").read_bytes()
    if mode == "whole":
        got += conn.receive_data(rx)
    else:
        for i in range(len(rx)):
            got += conn.receive_data(rx[i:i + 1])
    return got + conn.receive_data(b"")


def responses(received: list[Received]) -> dict[str | None, Response]:
    return {item.action_id: item for item in received if isinstance(item, Response)}


def events(received: list[Received], name: str) -> list[Event]:
    return [item for item in received if isinstance(item, Event) and item.name == name]


@pytest.fixture(scope="module")
def main() -> list[Received]:
    return replay(MAIN, "chunks")


# -- transcripts -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_transcript_gives_the_same_values_whole_in_recorded_chunks_and_byte_by_byte(
        name: str) -> None:
    chunked = replay(name, "chunks")
    assert replay(name, "whole") == chunked
    assert replay(name, "bytes") == chunked
    assert chunked[0] == Banner("Asterisk Call Manager", "11.0.0")
    assert isinstance(chunked[-1], ConnectionClosed) and not chunked[-1].truncated
    # every message was framed: one value per empty line, list members counted in their list
    rx = (TRANSCRIPTS / f"{name}.rx.bin").read_bytes()
    lists = [item for item in chunked if isinstance(item, EventListResult)]
    assert len(chunked) - 2 + sum(len(x.items) + 1 for x in lists) == rx.count(b"\r\n\r\n")


@pytest.mark.parametrize("name", NAMES)
def test_actions_we_sent_parse_and_serialise_back_to_the_recorded_bytes(name: str) -> None:
    tx = (TRANSCRIPTS / f"{name}.tx.bin").read_bytes()
    actions = sent_actions(name)
    assert b"".join(bytes(action) for action in actions) == tx
    conn = AmiConnection()
    for action, block in zip(actions, blocks(tx), strict=True):
        if action.action_id is not None:  # send() keeps a given ActionID
            assert conn.send(action) == block


def test_originate_action_keeps_its_repeated_variables_in_order() -> None:
    originate = next(a for a in sent_actions(MAIN) if a.action_id == "orig-local-1")
    assert originate.name == "Originate"
    assert originate.get_all("Variable") == ["ARS_CALL_ID=abc", "ARS_OTHER=xyz"]
    assert originate.get("channelid") == "ars-abc-1"
    assert originate == Action.build(
        "Originate", action_id="orig-local-1", Channel="Local/s@callee", Context="ars-out",
        Exten="s", Priority=1, Async=True, Timeout=30000, CallerID='"ARS" <5551000>',
        ChannelId="ars-abc-1", OtherChannelId="ars-abc-1-callee",
        Variable=["ARS_CALL_ID=abc", "ARS_OTHER=xyz"], Account=None)


def test_ping_is_answered_by_pong_matched_by_action_id(main: list[Received]) -> None:
    pong = responses(main)["ping-1"]
    assert (pong.status, pong.action, pong.success) == ("Success", "Ping", True)
    assert pong.get("Ping") == "Pong" and pong.get("Timestamp") == "1795374390.603576"


def test_ping_sent_without_action_id_gets_an_unmatched_response(main: list[Received]) -> None:
    # tx sent "Action: Ping" bare; our send() numbered it ars-1, Asterisk's answer has no
    # ActionID, so it answers nothing we wait for, and ars-1 is still unanswered at the end.
    bare = responses(main)[None]
    assert (bare.action, bare.get("Ping")) == (None, "Pong")
    assert main[-1] == ConnectionClosed(unanswered=("ars-1",), truncated=False)


def test_command_output_lines_of_core_show_version(main: list[Received]) -> None:
    command = responses(main)["cmd-1"]
    assert command.action == "Command" and command.message == "Command output follows"
    assert command.output == ("Asterisk GIT-22-22.0.0-pre1-541-g69535d4837 built by root @ vm "
                              "on a x86_64 running Linux on 2026-11-22 18:58:58 UTC",)


def test_core_show_channels_arrives_as_one_completed_list(main: list[Received]) -> None:
    (result,) = [item for item in main if isinstance(item, EventListResult)]
    assert (result.action, result.action_id) == ("CoreShowChannels", "csc-1")
    assert result.response.get("EventList") == "start"
    assert result.response.message == "Channels will follow"
    assert [item.get("Channel") for item in result.items] == [
        "Local/s@callee-00000005;1", "Local/s@callee-00000005;2"]
    assert {item.name for item in result.items} == {"CoreShowChannel"}
    assert result.complete.name == "CoreShowChannelsComplete"
    assert result.complete.get("ListItems") == "2"
    assert not events(main, "CoreShowChannel")  # not delivered twice
    assert "csc-1" not in responses(main)


def test_originate_response_is_an_event_that_carries_response(main: list[Received]) -> None:
    (event,) = events(main, "OriginateResponse")
    assert event.get("Response") == "Success" and event.get("Reason") == "4"
    assert event.action_id == "orig-local-1"
    queued = responses(main)["orig-local-1"]  # the immediate answer, a real Response
    assert queued.message == "Originate successfully queued"
    assert typed(event) == OriginateResponse("orig-local-1", True, "Local/s@callee-00000005;1",
                                             4, "ars-abc-1")


def test_failed_originates_give_their_reasons() -> None:
    received = replay("ami_originate_local_noanswer_busy", "chunks")
    originated = [typed(e) for e in events(received, "OriginateResponse")]
    assert originated == [
        OriginateResponse("orig-noans", False, "Local/s@callee-noanswer", 3, "ars-noans-1"),
        OriginateResponse("orig-busy", False, "Local/s@callee-busy", 5, "ars-busy-1"),
        OriginateResponse("orig-badtech", False, "Nope/foo", 0, None),  # Uniqueid: <unknown>
    ]
    sync = responses(received)["orig-sync-badtech"]
    assert (sync.status, sync.message) == ("Error", "Originate failed")


@pytest.mark.parametrize(("name", "uniqueid", "cause", "text"), [
    (MAIN, "ars-abc-1", 16, "Normal Clearing"),
    ("ami_originate_pjsip_sipp_busy", "ars-sippbusy-1", 17, "User busy"),
    ("ami_originate_pjsip_unreachable_timerb", "ars-pjtb-1", 18, "No user responding"),
    ("ami_originate_pjsip_unreachable", "ars-pjfail-1", 19, "User alerting, no answer"),
    ("ami_originate_pjsip_sipp_answer", "ars-sipp-1", 0, "Unknown"),
])
def test_hangup_causes(name: str, uniqueid: str, cause: int, text: str) -> None:
    hangups = [typed(e) for e in events(replay(name, "chunks"), "Hangup")]
    (hangup,) = [h for h in hangups if isinstance(h, Hangup) and h.uniqueid == uniqueid]
    assert (hangup.cause, hangup.cause_txt, hangup.linkedid) == (cause, text, uniqueid)


def test_bad_login_is_an_error_then_the_peer_closes() -> None:
    received = replay("ami_login_bad", "chunks")
    error = Response("Error", "login-bad", "Login",
                     "Response: Error\r\nActionID: login-bad\r\nMessage: Authentication failed")
    assert received[1:] == [error, ConnectionClosed(unanswered=(), truncated=False)]
    assert not error.success and error.message == "Authentication failed"


def test_logoff_is_answered_goodbye(main: list[Received]) -> None:
    goodbye = responses(main)["logoff-1"]
    assert (goodbye.status, goodbye.action, goodbye.message) == (
        "Goodbye", "Logoff", "Thanks for all the fish.")


def test_responses_are_matched_by_action_id_around_async_security_events() -> None:
    received = replay("ami_originate_local_noanswer_busy", "chunks")
    head = [(type(x).__name__, getattr(x, "action", None) or getattr(x, "name", None),
             getattr(x, "action_id", None)) for x in received[:5]]
    # SuccessfulAuth (for the login) arrives after the response to the next action
    assert head == [("Banner", None, None), ("Response", "Login", "login-1"),
                    ("Event", "FullyBooted", None), ("Response", "Originate", "orig-noans"),
                    ("Event", "SuccessfulAuth", None)]
    main = replay(MAIN, "chunks")
    at = next(i for i, x in enumerate(main) if isinstance(x, Response)
              and x.action_id == "unknown-1")
    unknown, security = main[at], main[at + 1]
    assert isinstance(unknown, Response) and (unknown.action, unknown.status) == (
        "NoSuchAction", "Error")
    assert isinstance(security, Event) and security.name == "RequestBadFormat"


def test_responses_in_any_order_find_their_actions() -> None:
    conn = AmiConnection(action_id_prefix="t-")
    conn.receive_data(BANNER)
    first, second = (conn.with_action_id(Action("Ping")), conn.with_action_id(Action("Ping")))
    conn.send(first)
    conn.send(Action.build("Getvar", action_id="g", Variable="X"))
    conn.send(second)
    got = conn.receive_data(b"Response: Success\r\nActionID: g\r\nValue: 1\r\n\r\n"
                            b"Response: Success\r\nActionID: t-2\r\nPing: Pong\r\n\r\n"
                            b"Response: Success\r\nActionID: t-1\r\nPing: Pong\r\n\r\n")
    assert [(r.action, r.action_id) for r in got if isinstance(r, Response)] == [
        ("Getvar", "g"), ("Ping", "t-2"), ("Ping", "t-1")]
    assert not conn.pending


def test_response_with_an_unknown_action_id_is_reported_unmatched() -> None:
    conn = AmiConnection()
    conn.receive_data(BANNER)
    conn.send(Action("Ping", action_id="mine"))
    (response,) = conn.receive_data(b"Response: Success\r\nActionID: theirs\r\n\r\n")
    assert isinstance(response, Response)
    assert (response.action, response.action_id) == (None, "theirs")
    assert dict(conn.pending) == {"mine": "Ping"}


def test_forgotten_action_late_answer_and_list_items_come_back_unmatched() -> None:
    conn = AmiConnection(expect_banner=False)
    conn.send(Action("CoreShowChannels", action_id="l"))
    assert conn.receive_data(b"Response: Success\r\nActionID: l\r\nEventList: start\r\n\r\n") == []
    assert conn.forget("l") and not conn.forget("l") and not conn.pending
    got = conn.receive_data(b"Event: CoreShowChannel\r\nActionID: l\r\n\r\n"
                            b"Event: CoreShowChannelsComplete\r\nActionID: l\r\n"
                            b"EventList: Complete\r\n\r\n")
    assert [type(x) for x in got] == [Event, Event]


def test_duplicate_pending_action_id_is_refused() -> None:
    conn = AmiConnection()
    conn.send(Action("Ping", action_id="x"))
    with pytest.raises(ValueError, match="already pending"):
        conn.send(Action("Ping", action_id="x"))


def test_send_numbers_actions_with_the_prefix() -> None:
    conn = AmiConnection(action_id_prefix="node7-")
    assert conn.send(Action("Ping")) == b"Action: Ping\r\nActionID: node7-1\r\n\r\n"
    assert conn.with_action_id(Action("Ping")).action_id == "node7-2"
    assert dict(conn.pending) == {"node7-1": "Ping"}


# -- framing, bounds, bad input --------------------------------------------------------------------
def test_incomplete_input_waits_and_eof_mid_message_is_truncated() -> None:
    conn = AmiConnection()
    assert conn.receive_data(b"Asterisk Call Mana") == []
    assert conn.receive_data(b"ger/11.0.0\r\nEvent: X\r\nA: 1\r\n") == [
        Banner("Asterisk Call Manager", "11.0.0")]
    assert conn.banner == Banner("Asterisk Call Manager", "11.0.0")
    assert conn.receive_data(b"\r") == []
    assert conn.receive_data(b"") == [ConnectionClosed((), truncated=True)]
    assert conn.closed
    with pytest.raises(RuntimeError):
        conn.receive_data(b"more")


def test_stray_empty_lines_between_messages_are_ignored() -> None:
    conn = AmiConnection()
    got = conn.receive_data(BANNER + b"\r\n\r\nEvent: A\r\n\r\n\r\n\r\n\r\nEvent: B\r\n\r\n")
    assert [x.name for x in got if isinstance(x, Event)] == ["A", "B"]


def test_header_names_and_spacing_are_read_forgivingly() -> None:
    conn = AmiConnection(expect_banner=False)
    (event,) = conn.receive_data(b"Privilege: call\r\nevent:Hangup\r\nCAUSE:  16\r\n\r\n")
    assert isinstance(event, Event) and event.name == "Hangup"  # Event: not first, any case
    assert event.get("Cause") == " 16" and event.get("cause") == " 16"  # one space is the separator
    assert event.fields == (("Privilege", "call"), ("event", "Hangup"), ("CAUSE", " 16"))


def test_repeated_headers_are_all_kept() -> None:
    conn = AmiConnection(expect_banner=False)
    (event,) = conn.receive_data(b"Event: X\r\nChanVariable: A=1\r\nchanvariable: B=\r\n\r\n")
    assert isinstance(event, Event)
    assert event.get_all("ChanVariable") == ["A=1", "B="] and event.get("ChanVariable") == "A=1"
    assert event.get("Missing") is None and event.get_all("Missing") == []


def test_values_keep_their_own_leading_spaces() -> None:
    received = replay("ami_originate_pjsip_sipp_answer", "chunks")
    loss = next(typed(e) for e in events(received, "VarSet") if e.get("Variable") ==
                "RTPAUDIOQOSLOSS")
    assert isinstance(loss, VarSet) and loss.value.startswith("  minrxlost=000.000000;")


def test_non_utf8_bytes_are_read_as_latin1_whatever_the_chunking() -> None:
    stream = (BANNER + b"Event: Newchannel\r\nCallerIDName: caf\xe9\r\n\r\n"
              + "Event: Newchannel\r\nCallerIDName: 김철수\r\n\r\n".encode())
    whole = AmiConnection().receive_data(stream)
    conn = AmiConnection()
    pieces = [x for i in range(len(stream)) for x in conn.receive_data(stream[i:i + 1])]
    assert pieces == whole
    names = [x.get("CallerIDName") for x in whole if isinstance(x, Event)]
    assert names == ["caf\xe9", "김철수"]


@pytest.mark.parametrize("line", [b"HTTP/1.1 400 Bad Request\r\n", b"SSH-2.0-OpenSSH_9.6\r\n",
                                  b"Asterisk Call Manager/\r\n", b"/11.0.0\r\n",
                                  b"Response: Success\r\n", b"x" * 2000])
def test_a_first_line_that_is_no_ami_banner_fails(line: bytes) -> None:
    conn = AmiConnection()
    with pytest.raises(ProtocolError, match="banner") as info:
        conn.receive_data(line)
    assert (info.value.protocol, info.value.offset, conn.failed) == ("ami", 0, True)


def test_message_with_neither_event_nor_response_fails_after_the_ones_before() -> None:
    conn = AmiConnection()
    head = BANNER + b"Event: A\r\n\r\n"
    got = conn.receive_data(head + b"Foo: bar\r\n\r\nEvent: B\r\n\r\n")
    assert [type(x) for x in got] == [Banner, Event] and conn.failed
    with pytest.raises(ProtocolError, match="already failed: message with neither") as info:
        conn.receive_data(b"Event: C\r\n\r\n")
    assert info.value.offset == len(head)


def test_oversized_message_without_terminator_fails() -> None:
    conn = AmiConnection(max_message_size=1000)
    conn.receive_data(BANNER)
    assert conn.receive_data(b"Event: Big\r\nPad: " + b"a" * 900) == []
    with pytest.raises(ProtocolError, match="longer than 1000 bytes") as info:
        conn.receive_data(b"a" * 200)
    assert info.value.offset == len(BANNER)


def test_default_bound_is_one_mebibyte_and_holds_byte_by_byte_and_whole() -> None:
    conn = AmiConnection()
    conn.receive_data(BANNER + b"Event: Big\r\nPad: ")
    with pytest.raises(ProtocolError, match="longer than 1048576 bytes"):
        conn.receive_data(b"a" * (1 << 20))
    big = b"Event: Big\r\nPad: " + b"a" * 100 + b"\r\n\r\n"
    with pytest.raises(ProtocolError, match="longer than 100 bytes"):
        AmiConnection(max_message_size=100, expect_banner=False).receive_data(big)
    small = AmiConnection(max_message_size=100, expect_banner=False)
    with pytest.raises(ProtocolError, match="longer than 100 bytes"):
        for i in range(len(big)):
            small.receive_data(big[i:i + 1])
    exact = b"Event: Fit\r\nPad: " + b"a" * (100 - 17)
    assert len(exact) == 100
    fit = AmiConnection(max_message_size=100, expect_banner=False)
    framed = exact + b"\r\n\r\n"
    got = [x for i in range(len(framed)) for x in fit.receive_data(framed[i:i + 1])]
    assert [x.name for x in got if isinstance(x, Event)] == ["Fit"]


# -- actions ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("make", "field"), [
    (lambda: Action.build("Originate", Variable="A=1\r\nAction: Hangup"), "Variable"),
    (lambda: Action.build("Originate", Channel="PJSIP/x\n"), "Channel"),
    (lambda: Action.build("Setvar", Value="x\r"), "Value"),
    (lambda: Action("Originate", (("Bad Name", "x"),)), "Bad Name"),
    (lambda: Action("Originate", (("X-Evil\r\nAction", "x"),)), "X-Evil"),
    (lambda: Action("Originate", (("Channel:", "x"),)), "Channel:"),
    (lambda: Action("Originate", (("ActionID", "x"),)), "ActionID"),
    (lambda: Action("Originate", (("action", "Hangup"),)), "action"),
    (lambda: Action("Ping\r\nAction: Hangup"), "action name"),
    (lambda: Action("Ping", action_id="1\r\nAction: Hangup"), "ActionID"),
    (lambda: Action("Ping", action_id=""), "ActionID"),
])
def test_header_injection_is_impossible(make: object, field: str) -> None:
    with pytest.raises(ValueError) as info:
        make()  # type: ignore[operator]
    assert field in str(info.value)
    assert "Hangup" not in str(info.value)  # values are never echoed


def test_build_converts_values_and_keeps_order() -> None:
    action = Action.build("Originate", Channel="PJSIP/1", Priority=1, Async=True, Early=False,
                          Variable=("A=1", "B=2"), Codecs=None)
    assert action.fields == (("Channel", "PJSIP/1"), ("Priority", "1"), ("Async", "true"),
                             ("Early", "false"), ("Variable", "A=1"), ("Variable", "B=2"))
    assert bytes(action) == (b"Action: Originate\r\nChannel: PJSIP/1\r\nPriority: 1\r\n"
                             b"Async: true\r\nEarly: false\r\nVariable: A=1\r\n"
                             b"Variable: B=2\r\n\r\n")


def test_empty_values_are_written_as_asterisk_writes_them() -> None:
    assert bytes(Action("Setvar", (("Value", ""),), "s")) == (
        b"Action: Setvar\r\nActionID: s\r\nValue: \r\n\r\n")
    assert Action.parse(b"Action: Setvar\r\nActionID: s\r\nValue: \r\n\r\n").get("Value") == ""


@pytest.mark.parametrize("data", [b"Ping: x\r\n\r\n", b"Action: Ping\r\nbroken\r\n\r\n",
                                  b"Action: Ping\r\nBad Key: 1\r\n\r\n", b"Action: \r\n\r\n",
                                  b"Action: Ping\r\nActionID: 1\r\nActionID: 2\r\n\r\n"])
def test_malformed_actions_fail_to_parse(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        Action.parse(data)


def test_secrets_are_masked_in_reprs() -> None:
    login = login_action("ars", "s3cr3t-pass")
    assert "s3cr3t-pass" not in repr(login) and "Secret=***" in repr(login)
    assert login.get("Secret") == "s3cr3t-pass" and login.get("Events") == "on"
    md5_login = md5_login_action("ars", "s3cr3t-pass", "1234567890")
    key = md5_key("1234567890", "s3cr3t-pass")
    assert key not in repr(md5_login) and "s3cr3t-pass" not in repr(md5_login)
    assert repr(md5_login).startswith("<Action Login id=None AuthType='MD5' Username='ars'")


def test_md5_challenge_login() -> None:
    # RFC 1321 A.5 test suite: MD5("message digest"); the key is MD5(challenge + secret)
    assert md5_key("message ", "digest") == "f96b697d7cb7938d525a2f31aaf161d0"
    assert md5_key("", "abc") == "900150983cd24fb0d6963f7d28e17f72"
    assert bytes(challenge_action()) == b"Action: Challenge\r\nAuthType: MD5\r\n\r\n"
    action = md5_login_action("ars", "digest", "message ", events=None)
    assert action.fields == (("AuthType", "MD5"), ("Username", "ars"),
                             ("Key", "f96b697d7cb7938d525a2f31aaf161d0"))
    assert action.get("Secret") is None
    conn = AmiConnection(expect_banner=False)
    challenge = conn.with_action_id(challenge_action())
    conn.send(challenge)
    (response,) = conn.receive_data(b"Response: Success\r\nActionID: " +
                                    (challenge.action_id or "").encode() +
                                    b"\r\nChallenge: 840415273\r\n\r\n")
    assert isinstance(response, Response) and response.get("Challenge") == "840415273"


def test_small_action_helpers() -> None:
    assert bytes(ping_action()) == b"Action: Ping\r\n\r\n"
    assert bytes(logoff_action()) == b"Action: Logoff\r\n\r\n"
    assert bytes(login_action("a", "b", events="call,system").with_action_id("1")) == (
        b"Action: Login\r\nActionID: 1\r\nUsername: a\r\nSecret: b\r\nEvents: call,system\r\n\r\n")


# -- typed events ----------------------------------------------------------------------------------
def test_typed_views_of_the_events_the_backend_reads(main: list[Received]) -> None:
    assert typed(events(main, "Newchannel")[0]) == Newchannel(
        "Local/s@callee-00000005;1", "ars-abc-1", "ars-abc-1")
    assert typed(events(main, "DialEnd")[0]) == DialEnd(
        "Local/s@callee-00000005;1", "ars-abc-1", "ANSWER", None, None)
    assert typed(events(main, "VarSet")[0]) == VarSet(
        "Local/s@callee-00000005;1", "ars-abc-1", "ARS_OTHER", "xyz")
    assert typed(events(main, "Hangup")[-1]) == Hangup(
        "Local/s@callee-00000005;1", "ars-abc-1", "ars-abc-1", 16, "Normal Clearing")
    assert typed(events(main, "Cdr")[0]) is None
    with pytest.raises(ValueError, match="expected a Hangup"):
        Hangup.from_event(events(main, "Cdr")[0])


def test_dial_end_with_a_calling_channel_reads_both_sides() -> None:
    event = Event("DialEnd", "Event: DialEnd\r\nChannel: PJSIP/a-1\r\nUniqueid: u1\r\n"
                  "DestChannel: PJSIP/b-2\r\nDestUniqueid: u2\r\nDialStatus: BUSY")
    assert typed(event) == DialEnd("PJSIP/b-2", "u2", "BUSY", "PJSIP/a-1", "u1")
    shuffled = Event("DialEnd", "Event: DialEnd\r\nDialStatus: BUSY\r\nDestUniqueid: u2\r\n"
                     "DestChannel: PJSIP/b-2")
    assert typed(shuffled) == DialEnd("PJSIP/b-2", "u2", "BUSY", None, None)


@pytest.mark.parametrize(("raw", "message"), [
    ("Event: Hangup\r\nChannel: c\r\nUniqueid: u\r\nLinkedid: l", "without Cause"),
    ("Event: Hangup\r\nChannel: c\r\nUniqueid: u\r\nLinkedid: l\r\nCause: 1x", "not a number"),
    ("Event: Hangup\r\nChannel: c\r\nUniqueid: u\r\nLinkedid: l\r\nCause: -1", "not a number"),
    ("Event: OriginateResponse\r\nResponse: Failure\r\nChannel: c\r\nReason: ٣", "not a number"),
    ("Event: VarSet\r\nChannel: c", "without Variable, Value"),
    ("Event: Newchannel", "without Channel, Uniqueid, Linkedid"),
])
def test_typed_views_refuse_events_missing_their_fields(raw: str, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        typed(Event(raw.split("\r\n")[0][7:], raw))


# -- fuzzing: parse or raise ProtocolError, nothing else -------------------------------------------
def _feed_all(chunks: list[bytes], max_size: int = 4096,
              ) -> tuple[list[Received], tuple[int, str] | None]:
    """Feed chunks then EOF; return what came out and the error (offset, message), if any.
    Reads every field of every value on the way: nothing but ProtocolError may escape."""
    conn = AmiConnection(max_message_size=max_size)
    got: list[Received] = []
    error = None
    try:
        for chunk in chunks:
            if chunk:
                got += conn.receive_data(chunk)
        got += conn.receive_data(b"")
    except ProtocolError as exc:
        assert exc.protocol == "ami"
        error = (exc.offset, exc.message.removeprefix("stream already failed: "))
    for item in got:
        if isinstance(item, Event | Response):
            _ = item.fields, item.get("Channel"), item.get_all("Variable"), repr(item)
        if isinstance(item, Event):
            with contextlib.suppress(ProtocolError):
                typed(item)
    return got, error


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_random_bytes_only_ever_raise_protocol_error(chunks: list[bytes]) -> None:
    _feed_all(chunks)
    _feed_all([BANNER, *chunks])


_WORDS = [b"\r\n", b"\r\n\r\n", b": ", b":", b"Event", b"Response", b"ActionID: ", b"Cause: ",
          b"EventList: start", b"EventList: Complete", b"Hangup", b"\xff", b"\r", b"\n", b"/"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.data())
def test_mutated_transcripts_raise_only_protocol_errors_the_same_in_any_chunking(
        name: str, data: st.DataObject) -> None:
    stream = bytearray((TRANSCRIPTS / f"{name}.rx.bin").read_bytes()[:6000])
    for _ in range(data.draw(st.integers(0, 8))):
        at = data.draw(st.integers(0, len(stream)))
        how = data.draw(st.integers(0, 2))
        if how == 0:
            del stream[at:at + data.draw(st.integers(1, 40))]
        elif how == 1:
            stream[at:at] = data.draw(st.sampled_from(_WORDS) | st.binary(min_size=1, max_size=8))
        else:
            stream[at:at + 1] = bytes([data.draw(st.integers(0, 255))])
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=12)))
    pieces = [bytes(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    max_size = data.draw(st.sampled_from([300, 4096]))
    assert _feed_all(pieces, max_size) == _feed_all([bytes(stream)], max_size)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(NAMES), st.lists(st.integers(0, 40000), max_size=30))
def test_any_chunking_of_a_transcript_gives_the_same_values(name: str, cuts: list[int]) -> None:
    rx = (TRANSCRIPTS / f"{name}.rx.bin").read_bytes()
    points = sorted({min(c, len(rx)) for c in cuts})
    pieces = [rx[a:b] for a, b in zip([0, *points], [*points, len(rx)], strict=True)]
    whole = AmiConnection().receive_data(rx)
    conn = AmiConnection()
    assert [x for piece in pieces if piece for x in conn.receive_data(piece)] == whole
