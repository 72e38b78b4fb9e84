"""The fuzz targets: one function per parser, ``bytes -> None``.

A target returns normally when the parser accepted the input or refused it the documented way
(one of the target's ``allowed`` exceptions, all :class:`~ars_engine.errors.ArsError`
subclasses), and lets anything else escape: a foreign exception (KeyError, IndexError,
RecursionError…) or :class:`ContractViolation` when a parsed value breaks a property the parser
documents (``parse(bytes(parse(x))) == parse(x)``, the same values whatever the chunking of a
stream). libFuzzer's per-input timeout turns a hang into a crash too.

The targets also drive what sits right behind each parser (typed SIP headers, Digest, SDP
offer/answer, the RFC 4733 receiver, AMI typed events, AGI reply helpers, the scenario
validator), because that is code a peer's bytes reach.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from ars_engine.errors import AgiError, ProtocolError, ScenarioInvalid
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.telephony.agi import (
    DTMF_KEYS,
    AgiCommand,
    AgiEnvironment,
    AgiReply,
    AgiSession,
    AgiState,
    Answer,
    ChannelStatus,
    Exec,
    GetData,
    GetVariable,
    Noop,
    RecordFile,
    SayDigits,
    StreamFile,
    WaitForDigit,
    check,
    gathered_digits,
    pressed_key,
    record_outcome,
)
from ars_engine.telephony.ami import Action, AmiConnection, Event, Received, Response, typed
from ars_engine.telephony.rtp.packet import RtpPacket
from ars_engine.telephony.rtp.rfc4733 import DtmfKey, DtmfReceiver, TelephoneEvent
from ars_engine.telephony.sip.digest import (
    authorization,
    parse_challenge,
    parse_credentials,
    verify,
)
from ars_engine.telephony.sip.grammar import format_params, parse_params, split_list
from ars_engine.telephony.sip.headers import CSeq, NameAddr, Via
from ars_engine.telephony.sip.message import (
    SipMessage,
    SipRequest,
    SipStreamParser,
    parse_message,
)
from ars_engine.telephony.sip.sdp import (
    NegotiatedMedia,
    SessionDescription,
    answer_offer,
    make_offer,
    negotiate_answer,
)
from ars_engine.telephony.sip.uri import SipUri

__all__ = ["TARGETS", "ContractViolation", "Target"]

T = TypeVar("T")


class ContractViolation(AssertionError):
    """A parser accepted an input but broke a property it documents."""


def _expect(condition: bool, what: str) -> None:
    if not condition:
        raise ContractViolation(what)


def _maybe(parse: Callable[[str], T], text: str) -> T | None:
    """``parse(text)``, or None when it refuses the text with ProtocolError."""
    try:
        return parse(text)
    except ProtocolError:
        return None


def _read(read: Callable[[], object]) -> None:
    """Call a typed accessor; refusing the value with ProtocolError is allowed."""
    with contextlib.suppress(ProtocolError):
        read()


# -- SIP -------------------------------------------------------------------------------------------
NAME_ADDR_HEADERS = ("From", "To", "Contact", "Route", "Record-Route", "Reply-To", "Refer-To",
                     "P-Asserted-Identity")
_TYPED: tuple[Callable[[str], object], ...] = (NameAddr.parse, Via.parse, CSeq.parse,
                                                SipUri.parse)


def _typed_round_trip(parse: Callable[[str], T], text: str) -> T | None:
    """Parse ``text``; a value must parse back from its canonical text to itself."""
    value = _maybe(parse, text)
    if value is not None:
        _expect(parse(str(value)) == value, f"{parse.__qualname__}: str() does not parse back")
    return value


def _digest(text: str) -> None:
    """Challenges and credentials; answering a challenge must give credentials that parse and
    verify (realm, nonce and opaque come back unchanged through quoting)."""
    _maybe(parse_credentials, text)
    challenge = _maybe(parse_challenge, text)
    if challenge is None or not challenge.supported:
        return
    value = authorization(challenge, "INVITE", "sip:ars@192.0.2.1", "ars", "pw", cnonce="c0ffee")
    credentials = parse_credentials(value)
    _expect((credentials.realm, credentials.nonce, credentials.opaque)
            == (challenge.realm, challenge.nonce, challenge.opaque),
            "Digest: the answer's realm/nonce/opaque differ from the challenge's")
    _expect(verify(credentials, "INVITE", "pw"), "Digest: our own answer does not verify")


def _sip_headers_of(message: SipMessage) -> None:
    """Every typed view a UA takes of a received message: only ProtocolError may come out."""
    for header in NAME_ADDR_HEADERS:
        for value in message.get_all(header):
            name_addr = _typed_round_trip(NameAddr.parse, value) if value != "*" else None
            if name_addr is not None:
                _typed_round_trip(SipUri.parse, name_addr.uri)
    for value in message.get_all("Via"):
        _typed_round_trip(Via.parse, value)
    _read(lambda: message.branch)
    _read(lambda: message.cseq)
    for header in ("WWW-Authenticate", "Proxy-Authenticate", "Authorization",
                   "Proxy-Authorization"):
        for value in message.get_all(header):
            _digest(value)
    if isinstance(message, SipRequest):
        _typed_round_trip(SipUri.parse, message.uri)
    _ = repr(message), message.call_id


def sip(data: bytes) -> None:
    """One UDP datagram: parse_message, the canonical round trip, the typed headers."""
    try:
        message = parse_message(data)
    except ProtocolError:
        return
    _expect(parse_message(bytes(message)) == message, "SIP: parse(bytes(m)) != m")
    _sip_headers_of(message)


def _stream(data: bytes, size: int) -> tuple[list[SipMessage], bool, int]:
    parser = SipStreamParser()
    got: list[SipMessage] = []
    try:
        for pos in range(0, len(data), size):
            got += parser.feed(data[pos:pos + size])
    except ProtocolError:
        pass
    return got, parser.failed, parser.buffered if not parser.failed else -1


def sip_stream(data: bytes) -> None:
    """A TCP byte stream: the same messages and outcome whole, in chunks and, for short
    streams (it costs one feed per byte), byte by byte."""
    whole = _stream(data, max(len(data), 1))
    sizes = [3 + len(data) % 29, 32 + len(data) % 97]
    if len(data) <= 512:
        sizes.append(1)
    for size in sizes:
        _expect(_stream(data, size) == whole,
                f"SIP stream: chunks of {size} give other messages than one feed")
    for message in whole[0]:
        _expect(parse_message(bytes(message)) == message, "SIP stream: parse(bytes(m)) != m")


def sip_headers(data: bytes) -> None:
    """A header value: name-addr, Via, CSeq, SIP URI, Digest, lists and parameters."""
    text = data.decode("utf-8", "replace")
    for parse in _TYPED:
        _typed_round_trip(parse, text)
    _digest(text)
    _expect(all(isinstance(item, str) for item in split_list(text)), "split_list")
    params = _maybe(parse_params, text)
    if params is not None:
        _expect(parse_params(format_params(params)) == params, "parameters do not round-trip")


# -- SDP -------------------------------------------------------------------------------------------
_OUR_OFFER = make_offer("192.0.2.1", 40000, 1, 1)
_LEADING_ZERO = re.compile("0[0-9]+")


def sdp(data: bytes) -> None:
    """A session description, then both sides of offer/answer with it."""
    try:
        sd = SessionDescription.parse(data)
    except ProtocolError:
        return
    text = str(sd)
    _expect(SessionDescription.parse(text) == sd, "SDP: parse(str(sd)) != sd")
    for m in sd.media:
        _ = m.rtpmaps(), m.ptime, m.rtcp_port, m.fmtp(101), sd.direction_of(m), repr(sd)
    try:
        answer, result = answer_offer(sd, "192.0.2.10", 40002)
    except ProtocolError:
        pass
    else:
        _expect(SessionDescription.parse(bytes(answer)) == answer, "SDP: our answer round trip")
        first_audio = next((i for i, m in enumerate(sd.media) if m.media == "audio" and m.port),
                           None)
        if (isinstance(result, NegotiatedMedia) and result.media_index == first_audio
                and not any(_LEADING_ZERO.fullmatch(f) for f in sd.media[first_audio].formats)):
            # The UAC side must accept what the UAS side answered, with the same codec. (Not
            # for payload types written "008": answer_offer reads 8, negotiate_answer compares
            # the text; no peer writes them, so it is left as it is.)
            try:
                agreed = negotiate_answer(sd, answer)
            except ProtocolError as exc:
                raise ContractViolation(f"SDP: negotiate_answer refuses our own answer: "
                                        f"{exc.message}") from exc
            _expect((agreed.codec, agreed.payload_type) == (result.codec, result.payload_type),
                    "SDP: negotiate_answer reads our own answer differently")
    with contextlib.suppress(ProtocolError):
        negotiate_answer(_OUR_OFFER, sd)


# -- RTP -------------------------------------------------------------------------------------------
def _rtp_packet(data: bytes) -> RtpPacket | None:
    try:
        packet = RtpPacket.parse(data)
    except ProtocolError:
        return None
    wire = bytes(packet)
    _expect(RtpPacket.parse(wire) == packet, "RTP: parse(bytes(p)) != p")
    padding = data[len(data) - packet.padding_size:-1] if packet.padding_size else b""
    if not padding.strip(b"\0"):
        _expect(wire == data, "RTP: bytes(parse(x)) != x with zero padding")
    if len(packet.payload) == 4:
        event = TelephoneEvent.parse(packet.payload)
        payload = bytearray(packet.payload)
        payload[1] &= 0xBF  # RFC 4733 §2.3.3: the R bit is ignored on receipt, zero on sending
        _expect(bytes(event) == payload, "RFC 4733: bytes(parse(x)) != x but for the R bit")
    return packet


def _datagrams(data: bytes) -> Iterable[bytes]:
    """The input read as datagrams, each preceded by its length in one byte."""
    pos = 0
    while pos < len(data):
        size = data[pos]
        yield data[pos + 1:pos + 1 + size]
        pos += 1 + size


def _check_keys(keys: list[DtmfKey]) -> None:
    _expect(all(k.key in DTMF_KEYS and len(k.key) == 1 for k in keys), "RFC 4733: not a key")


def rtp(data: bytes) -> None:
    """One RTP packet (the whole input), then a stream of them through the RFC 4733 receivers
    in both reporting modes, 20 ms apart, until every open event times out."""
    _rtp_packet(data)
    receivers = (DtmfReceiver(101), DtmfReceiver(101, report_on="end"))
    now = 0
    for datagram in _datagrams(data):
        now += 20
        packet = _rtp_packet(datagram)
        for receiver in receivers:
            if packet is not None:
                # a telephone-event payload that is not 4 bytes raises: dropped
                with contextlib.suppress(ProtocolError):
                    _check_keys(receiver.feed(packet, now))
            _check_keys(receiver.poll(now))
    for receiver in receivers:
        for _ in range(DtmfReceiver.MAX_SSRCS + 1):
            deadline = receiver.next_deadline()
            if deadline is None:
                break
            _check_keys(receiver.poll(deadline))
        _expect(not receiver.held, "RFC 4733: an event stays open after its deadline")


# -- AMI -------------------------------------------------------------------------------------------
# The actions of the recorded transcripts (tests/transcripts/asterisk/ami_*.tx.bin): sent first,
# so the recorded responses find the action they answer and lists are collected.
AMI_ACTIONS = {
    "login-1": "Login", "login-bad": "Login", "ping-1": "Ping", "cs-1": "CoreSettings",
    "cst-1": "CoreStatus", "orig-missing": "Originate", "getvar-missing": "Getvar",
    "unknown-1": "NoSuchAction", "cmd-1": "Command", "orig-local-1": "Originate",
    "orig-local-2": "Originate", "csc-1": "CoreShowChannels", "getvar-1": "Getvar",
    "getvar-nochan": "Getvar", "orig-noans": "Originate", "orig-busy": "Originate",
    "orig-badtech": "Originate", "orig-sync-badtech": "Originate", "orig-pjsip-ok": "Originate",
    "orig-pjsip-busy": "Originate", "orig-pjsip-fail": "Originate",
    "orig-pjsip-timerb": "Originate", **{f"logoff-{n}": "Logoff" for n in range(1, 8)},
}


_AMI_SENT = tuple((action_id.encode(), Action(name, action_id=action_id))
                  for action_id, name in AMI_ACTIONS.items())


def _ami_replay(data: bytes, chunks: Iterable[bytes], max_size: int
                ) -> tuple[list[Received], tuple[int, str] | None]:
    conn = AmiConnection(max_message_size=max_size)
    for action_id, action in _AMI_SENT:
        if action_id in data:  # no other response can answer it
            conn.send(action)
    got: list[Received] = []
    error = None
    try:
        for chunk in chunks:
            if chunk:
                got += conn.receive_data(chunk)
        got += conn.receive_data(b"")
    except ProtocolError as exc:
        error = (exc.offset, exc.message.removeprefix("stream already failed: "))
    for item in got:
        if isinstance(item, Event | Response):
            _ = item.fields, item.get("Channel"), item.get_all("Variable"), repr(item)
        if isinstance(item, Response):
            _ = item.message, item.output, item.success
        if isinstance(item, Event):
            _read(lambda event=item: typed(event))  # type: ignore[misc]
    return got, error


def ami(data: bytes) -> None:
    """The AMI client stream (banner, responses, lists, events, end of stream): the same
    values and error whatever the chunking, under the default and a small message bound;
    and the input as one action (``Action.parse``), which must serialise back."""
    for max_size in (4096, 300):
        whole = _ami_replay(data, [data], max_size)
        size = 1 + len(data) % 61
        chunked = _ami_replay(data, (data[i:i + size] for i in range(0, len(data), size)),
                              max_size)
        _expect(chunked == whole, f"AMI: chunks of {size} give other values than one feed")
    try:
        action = Action.parse(data)
    except ProtocolError:
        return
    _expect(Action.parse(bytes(action)) == action, "AMI: Action.parse(bytes(a)) != a")


# -- AGI -------------------------------------------------------------------------------------------
# Sent in turn whenever the session is idle: the commands a Channel uses, so every reply helper
# meets replies to the command it reads (RECORD FILE and EXEC change what check() says).
AGI_COMMANDS: tuple[AgiCommand, ...] = (
    Answer(), StreamFile("hello-world", "0123456789#"), GetData("beep", 3000, 4),
    WaitForDigit(3000), SayDigits("1234"), RecordFile("/tmp/rec", "wav", "#", 3000),
    GetVariable("ARS_CALL_ID"), ChannelStatus(), Exec("SendDTMF", "1"), Noop(),
)
_LINES = re.compile(rb"[^\n]*\n|[^\n]+\Z")


def _agi_reply(reply: AgiReply) -> None:
    """Every reader of a reply: only the AGI error tree and ProtocolError may come out."""
    _ = repr(reply), reply.result, reply.endpos, reply.status_line
    _expect(bytes(reply) == reply.raw, "AGI: bytes(reply) != raw")
    for read in (check, pressed_key, gathered_digits, record_outcome):
        with contextlib.suppress(AgiError, ProtocolError):
            read(reply)


def agi(data: bytes) -> None:
    """The FastAGI stream Asterisk sends, line by line, a command sent whenever the session is
    idle (Asterisk answers only after one): environment, replies, 520 blocks, HANGUP."""
    session = AgiSession()
    commands = 0
    try:
        for line in [*_LINES.findall(data), b""]:
            if session.state is AgiState.IDLE:
                session.send(AGI_COMMANDS[commands % len(AGI_COMMANDS)])
                commands += 1
            for event in session.receive_data(line):
                if isinstance(event, AgiReply):
                    _agi_reply(event)
                elif isinstance(event, AgiEnvironment):
                    _expect(AgiEnvironment.parse(bytes(event)) == event, "AGI: environment")
                    _ = event.script, event.query, event.args, repr(event)
    except ProtocolError:
        _expect(session.failed, "AGI: ProtocolError but the session is not failed")


# -- scenario --------------------------------------------------------------------------------------
_LINE_BREAKS = re.compile("\r\n|[\n\r\x85\u2028\u2029]")  # YAML 1.1 §5.4 line breaks


def scenario(data: bytes) -> None:
    """A scenario file: a validated Scenario, or ScenarioInvalid whose every error is located
    inside the text (1-based line and column) with a code and a message."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # load_scenario reports it as "unreadable" before any parsing
    try:
        load_scenario_text(text, "<fuzz>")
    except ScenarioInvalid as exc:
        lines = len(_LINE_BREAKS.split(text))
        _expect(bool(exc.errors), "ScenarioInvalid without errors")
        for error in exc.errors:
            _expect(error.path == "<fuzz>" and error.code != "" and error.message != "",
                    f"scenario error without path, code or message: {error}")
            _expect(1 <= error.line <= lines and error.column >= 1,
                    f"scenario error located outside the text: {error}")


# -- the registry ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Target:
    """A fuzz target: ``check(data)`` raises only on a contract violation; ``allowed`` are the
    errors the parser may refuse input with; ``max_len`` bounds libFuzzer's inputs."""

    name: str
    check: Callable[[bytes], None]
    allowed: tuple[type[Exception], ...]
    max_len: int
    summary: str


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("sip", sip, (ProtocolError,), 4096,
           "SIP datagram: parse_message, round trip, typed headers, Digest"),
    Target("sip_stream", sip_stream, (ProtocolError,), 4096,
           "SIP over TCP: SipStreamParser, the same in any chunking"),
    Target("sip_headers", sip_headers, (ProtocolError,), 512,
           "SIP header values: NameAddr, Via, CSeq, SipUri, Digest, params"),
    Target("sdp", sdp, (ProtocolError,), 2048,
           "SDP: SessionDescription.parse, round trip, offer/answer both sides"),
    Target("rtp", rtp, (ProtocolError,), 2048,
           "RTP packets and RFC 4733 telephone-events through DtmfReceiver"),
    Target("ami", ami, (ProtocolError,), 4096,
           "AMI client stream: AmiConnection, typed events, Action.parse"),
    Target("agi", agi, (ProtocolError, AgiError), 4096,
           "FastAGI stream: AgiSession environment/replies, reply helpers"),
    Target("scenario", scenario, (ScenarioInvalid,), 8192,
           "scenario YAML: load_scenario_text with validation"),
)}
