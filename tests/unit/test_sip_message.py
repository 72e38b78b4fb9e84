"""SIP message core (ars_engine/telephony/sip/message.py, headers.py, uri.py, grammar.py).

Datagram parsing and canonical serialisation, header access (case, compact forms, lists),
Content-Length framing (RFC 3261 §18.3), the stream parser fed in every way, the typed header
values, and the sans-I/O import rule.
"""

from __future__ import annotations

import pytest

from ars_engine.errors import ProtocolError
from ars_engine.telephony.sip.headers import COMPACT_FORMS, CSeq, NameAddr, Via, canonical_name
from ars_engine.telephony.sip.message import (
    SipRequest,
    SipResponse,
    SipStreamParser,
    is_keepalive,
    parse_message,
)
from ars_engine.telephony.sip.uri import SipUri

SDP = (b"v=0\r\no=ars 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
       b"m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n")

INVITE = (
    b"INVITE sip:01012345678@trunk.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: \"ARS\" <sip:ars@10.0.0.5>;tag=1928301774\r\n"
    b"To: <sip:01012345678@trunk.example.net>\r\n"
    b"Call-ID: a84b4c76e66710@10.0.0.5\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:ars@10.0.0.5:5062;transport=udp>\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK776asdhds;rport=5062;received=10.0.0.5\r\n"
    b"f: \"ARS\" <sip:ars@10.0.0.5>;tag=1928301774\r\n"
    b"t: <sip:01012345678@trunk.example.net>;tag=a6c85cf\r\n"
    b"i: a84b4c76e66710@10.0.0.5\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"m: <sip:01012345678@192.0.2.4:5060>\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


# -- parsing and serialising -----------------------------------------------------------------------
def test_invite_parses_into_request_fields_and_canonical_headers() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, SipRequest)
    assert (msg.method, msg.uri, msg.version) == ("INVITE", "sip:01012345678@trunk.example.net",
                                                  "SIP/2.0")
    assert msg.headers[0] == ("Via", "SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK776asdhds;rport")
    assert msg.body == SDP
    assert msg.call_id == "a84b4c76e66710@10.0.0.5"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.sip_uri.user == "01012345678"


def test_serialised_invite_is_byte_identical_when_already_canonical() -> None:
    assert bytes(parse_message(INVITE)) == INVITE


def test_compact_response_serialises_with_long_names_and_parses_back_equal() -> None:
    msg = parse_message(OK_200)
    assert isinstance(msg, SipResponse)
    assert (msg.status, msg.reason) == (200, "OK")
    assert [name for name, _ in msg.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Content-Type", "Content-Length"]
    out = bytes(msg)
    assert out.startswith(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP")
    assert b"\r\nl:" not in out and b"Content-Length: %d\r\n" % len(SDP) in out
    assert parse_message(out) == msg


def test_get_is_case_insensitive_and_understands_compact_forms() -> None:
    msg = parse_message(OK_200)
    for name in ("Call-ID", "call-id", "CALL-ID", "i", "I"):
        assert msg.get(name) == "a84b4c76e66710@10.0.0.5"
    assert msg.get("t") == msg.get("To") == "<sip:01012345678@trunk.example.net>;tag=a6c85cf"
    assert msg.get("Subject") is None and msg.get_all("Subject") == []


@pytest.mark.parametrize(("letter", "name"), sorted(COMPACT_FORMS.items()))
def test_every_compact_form_maps_to_its_long_name(letter: str, name: str) -> None:
    assert canonical_name(letter) == canonical_name(letter.upper()) == name
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\n" + letter.encode() + b": 0\r\n\r\n")
    assert msg.headers[0][0] == name


def test_unknown_header_names_are_kept_as_received_and_found_case_insensitively() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nX-Ars-Call: 42\r\n\r\n")
    assert msg.headers[0] == ("X-Ars-Call", "42")
    assert msg.get("x-ars-call") == "42"


def test_list_headers_split_at_top_level_commas_only() -> None:
    raw = (b"SIP/2.0 200 OK\r\n"
           b"Via: SIP/2.0/UDP a.example.com;branch=z9hG4bK1, SIP/2.0/TCP b.example.com\r\n"
           b"Via: SIP/2.0/UDP c.example.com\r\n"
           b"Contact: \"Doe, John\" <sip:j@h;x=1,2>;q=0.5, <sip:k@h>\r\n"
           b"Date: Sat, 15 Oct 2005 04:44:56 GMT\r\n"
           b"WWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n"
           b"X-Unknown: a, b\r\n\r\n")
    msg = parse_message(raw)
    assert msg.get_all("Via") == ["SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
                                  "SIP/2.0/TCP b.example.com", "SIP/2.0/UDP c.example.com"]
    assert msg.get("v") == "SIP/2.0/UDP a.example.com;branch=z9hG4bK1"
    assert msg.get_all("m") == ['"Doe, John" <sip:j@h;x=1,2>;q=0.5', "<sip:k@h>"]
    assert msg.get_all("Date") == ["Sat, 15 Oct 2005 04:44:56 GMT"]  # not a list header
    assert msg.get_all("WWW-Authenticate") == ['Digest realm="r", nonce="n"']
    assert msg.get_all("X-Unknown") == ["a, b"]  # RFC 4475 §3.1.1.1: unknown syntax, not split


def test_folded_lines_are_unfolded_to_one_space() -> None:
    raw = (b"OPTIONS sip:a@b SIP/2.0\r\nSubject: first\r\n  second\r\n\tthird\r\n"
           b"To:\r\n <sip:a@b>\r\n\r\n")
    msg = parse_message(raw)
    assert msg.get("Subject") == "first second third"
    assert msg.get("To") == "<sip:a@b>"


def test_header_colon_may_have_whitespace_before_it() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID   :  x1  \r\n\r\n")
    assert msg.call_id == "x1"


def test_leading_crlf_before_the_start_line_is_ignored() -> None:
    assert parse_message(b"\r\n\r\n" + INVITE) == parse_message(INVITE)


def test_keepalives_are_recognised_and_are_not_messages() -> None:
    assert is_keepalive(b"\r\n\r\n") and is_keepalive(b"\r\n") and not is_keepalive(INVITE)
    with pytest.raises(ProtocolError, match="keep-alive"):
        parse_message(b"\r\n\r\n")


def test_non_utf8_header_bytes_are_read_as_replacement_characters() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nSubject: caf\xe9\r\n\r\n")
    assert msg.get("Subject") == "caf\ufffd"
    assert parse_message(bytes(msg)) == msg


def test_response_reason_may_be_empty_or_utf8() -> None:
    msg = parse_message(b"SIP/2.0 180 \r\n\r\n")
    assert isinstance(msg, SipResponse) and (msg.status, msg.reason) == (180, "")
    msg = parse_message("SIP/2.0 486 통화 중\r\n\r\n".encode())
    assert isinstance(msg, SipResponse) and msg.reason == "통화 중"


def test_typed_parse_checks_the_message_kind() -> None:
    assert SipRequest.parse(INVITE).method == "INVITE"
    assert SipResponse.parse(OK_200).status == 200
    with pytest.raises(ProtocolError):
        SipRequest.parse(OK_200)
    with pytest.raises(ProtocolError):
        SipResponse.parse(INVITE)


def test_repr_is_short_and_shows_no_headers_or_body() -> None:
    msg = parse_message(INVITE)
    assert repr(msg) == ("<SipRequest INVITE sip:01012345678@trunk.example.net "
                         "call-id='a84b4c76e66710@10.0.0.5'>")
    assert repr(parse_message(OK_200)).startswith("<SipResponse 200 OK")


# -- Content-Length over UDP (RFC 3261 §18.3) ------------------------------------------------------
def test_missing_content_length_takes_the_rest_and_is_added() -> None:
    msg = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\nhello")
    assert msg.body == b"hello" and msg.get("Content-Length") == "5"
    assert bytes(msg) == b"MESSAGE sip:a@b SIP/2.0\r\nCall-ID: x\r\nContent-Length: 5\r\n\r\nhello"


def test_smaller_content_length_truncates_the_body() -> None:
    msg = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nl: 3\r\n\r\nhello")
    assert msg.body == b"hel"


def test_larger_content_length_is_an_error() -> None:
    with pytest.raises(ProtocolError, match="exceeds") as info:
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 6\r\n\r\nhello")
    assert info.value.offset == len(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 6\r\n\r\n")


@pytest.mark.parametrize("value", [b"-1", b"abc", b"1 2", b"\xd9\xa1", b"9" * 40])
def test_bad_content_length_values_are_errors(value: bytes) -> None:
    with pytest.raises(ProtocolError, match="Content-Length"):
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n")


def test_repeated_equal_content_length_collapses_and_conflicting_ones_fail() -> None:
    msg = parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 02\r\n\r\nhi")
    assert msg.get_all("Content-Length") == ["2"]
    with pytest.raises(ProtocolError, match="conflicting"):
        parse_message(b"MESSAGE sip:a@b SIP/2.0\r\nl: 2\r\nContent-Length: 1\r\n\r\nhi")


def test_serialising_always_writes_the_true_content_length() -> None:
    msg = SipRequest("MESSAGE", "sip:a@b", (("Content-Length", "999"), ("l", "3")), b"hello")
    assert bytes(msg) == b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello"
    built = SipResponse(200, "OK", (("call-id", "x"),))
    assert bytes(built) == b"SIP/2.0 200 OK\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def test_serialising_refuses_header_injection() -> None:
    with pytest.raises(ValueError, match="CR or LF"):
        bytes(SipRequest("BYE", "sip:a@b", (("Subject", "x\r\nVia: evil"),)))
    with pytest.raises(ValueError, match="token"):
        bytes(SipRequest("BYE", "sip:a@b", (("Bad Name", "x"),)))


# -- malformed input -------------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "reason"), [
    (b"", "no SIP message"),
    (b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\n", "no empty line"),
    (b"INVITE sip:a@b SIP/2.0\r\nTo x\r\n\r\n", "without ':'"),
    (b"INVITE sip:a@b SIP/2.0\r\n  To: x\r\n\r\n", "continuation"),
    (b"INVITE sip:a@b SIP/2.0\r\nT(o: x\r\n\r\n", "not a token"),
    (b"INVITE sip:a@b SIP/2.0\r\nTo: x\ny\r\n\r\n", "bare CR or LF"),
    (b"INVITE sip:a@b SIP/2.0\r\nTo: x\ry\r\n\r\n", "bare CR or LF"),
    (b"INVITE  sip:a@b SIP/2.0\r\n\r\n", "request line"),
    (b"INVITE sip:a@b SIP/2.0 \r\n\r\n", "request line"),
    (b"INVITE sip:a@b\r\n\r\n", "request line"),
    (b"INV(TE sip:a@b SIP/2.0\r\n\r\n", "method"),
    (b"INVITE <sip:a@b> SIP/2.0\r\n\r\n", "Request-URI"),
    (b"INVITE sip:a@b?Route=x SIP/2.0\r\n\r\n", "headers"),
    (b"INVITE sip:a@b:99999 SIP/2.0\r\n\r\n", "port"),
    (b"INVITE sip:a@b HTTP/1.1\r\n\r\n", "version"),
    (b"SIP/2.0 4294967301 Big\r\n\r\n", "100-699"),
    (b"SIP/2.0 099 Low\r\n\r\n", "100-699"),
    (b"SIP/2.0 20 OK\r\n\r\n", "100-699"),
    (b"SIP/2.x 200 OK\r\n\r\n", "version"),
])
def test_malformed_messages_raise_protocol_error(raw: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason) as info:
        parse_message(raw)
    assert info.value.protocol == "sip"


def test_error_offsets_point_at_the_bad_line() -> None:
    raw = b"INVITE sip:a@b SIP/2.0\r\nTo: x\r\nbroken\r\n\r\n"
    with pytest.raises(ProtocolError) as info:
        parse_message(raw)
    assert info.value.offset == raw.index(b"broken")


def test_unknown_sip_version_is_parsed_for_a_505() -> None:
    msg = parse_message(b"OPTIONS sip:a@b sip/7.0\r\n\r\n")
    assert msg.version == "SIP/7.0"  # the UAS answers 505 (RFC 3261 §21.5.6, RFC 4475 §3.1.2.16)


# -- stream framing (RFC 3261 §18.3) ---------------------------------------------------------------
def test_stream_parser_fed_one_byte_at_a_time_yields_each_message_once() -> None:
    stream = INVITE + b"\r\n\r\n" + OK_200 + INVITE
    parser = SipStreamParser()
    got = []
    for i in range(len(stream)):
        got += parser.feed(stream[i:i + 1])
    assert got == [parse_message(INVITE), parse_message(OK_200), parse_message(INVITE)]
    assert parser.buffered == 0


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, 1000, 100000])
def test_stream_parser_gives_the_same_messages_for_any_chunking(size: int) -> None:
    stream = (OK_200 + INVITE) * 3
    parser = SipStreamParser()
    got = []
    for i in range(0, len(stream), size):
        got += parser.feed(stream[i:i + size])
    assert got == [parse_message(OK_200), parse_message(INVITE)] * 3


def test_stream_parser_waits_for_the_body_and_never_fails_on_partial_input() -> None:
    parser = SipStreamParser()
    cut = INVITE.index(b"\r\n\r\n") + 10
    assert parser.feed(INVITE[:cut]) == []
    assert parser.buffered == cut
    assert parser.feed(INVITE[cut:]) == [parse_message(INVITE)]


def test_stream_parser_treats_missing_content_length_as_empty_body() -> None:
    parser = SipStreamParser()
    assert parser.feed(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n") == [
        SipRequest("OPTIONS", "sip:a@b", (("Call-ID", "x"), ("Content-Length", "0")))]


def test_stream_parser_stays_failed_after_a_protocol_error() -> None:
    parser = SipStreamParser()
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"garbage line\r\n\r\n")
    assert info.value.offset == 0 and parser.failed
    with pytest.raises(ProtocolError, match="already failed"):
        parser.feed(INVITE)


def test_stream_parser_delivers_the_messages_before_an_error_then_raises() -> None:
    parser = SipStreamParser()
    assert parser.feed(OK_200 + b"garbage line\r\n\r\n") == [parse_message(OK_200)]
    assert parser.failed
    with pytest.raises(ProtocolError, match="already failed: request line") as info:
        parser.feed(b"")
    assert info.value.offset == len(OK_200)


def test_stream_parser_limits_an_unterminated_header_section() -> None:
    parser = SipStreamParser(max_head=1000)
    assert parser.feed(b"INVITE sip:a@b SIP/2.0\r\n") == []
    with pytest.raises(ProtocolError, match="too long"):
        parser.feed(b"X-Pad: " + b"a" * 2000)


# -- typed header values ---------------------------------------------------------------------------
def test_name_addr_with_quoted_display_name_uri_params_and_header_params() -> None:
    addr = NameAddr.parse('"Bob" <sip:bob@h;transport=udp>;tag=abc')
    assert (addr.display_name, addr.uri, addr.params) == ("Bob", "sip:bob@h;transport=udp",
                                                          (("tag", "abc"),))
    assert addr.tag == "abc" and addr.sip_uri.transport == "udp"
    assert str(addr) == '"Bob" <sip:bob@h;transport=udp>;tag=abc'


@pytest.mark.parametrize(("text", "display", "uri", "params"), [
    ("<sip:a@b>", None, "sip:a@b", ()),
    ("sip:a@b;tag=1", None, "sip:a@b", (("tag", "1"),)),  # RFC 3261 §20.10: tag is a header param
    ("caller<sip:caller@example.com>;tag=323", "caller", "sip:caller@example.com",
     (("tag", "323"),)),
    ('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com> ; tag = 98asjd8',
     'J Rosenberg \\"', "sip:jdrosen@example.com", (("tag", "98asjd8"),)),
    ("A. Bell <sip:a.g.bell@example.com>;tag=x;+sip.instance=\"<urn:uuid:1>\"", "A. Bell",
     "sip:a.g.bell@example.com", (("tag", "x"), ("+sip.instance", '"<urn:uuid:1>"'))),
    ("<tel:+821012345678>;lr", None, "tel:+821012345678", (("lr", None),)),
    ("<sip:[2001:db8::1]:5060>;received=2001:db8::2", None, "sip:[2001:db8::1]:5060",
     (("received", "2001:db8::2"),)),
])
def test_name_addr_forms(text: str, display: str | None, uri: str,
                         params: tuple[tuple[str, str | None], ...]) -> None:
    addr = NameAddr.parse(text)
    assert (addr.display_name, addr.uri, addr.params) == (display, uri, params)
    assert NameAddr.parse(str(addr)) == addr


@pytest.mark.parametrize("text", [
    '"Mr. J. User <sip:j.user@example.com>',  # RFC 4475 §3.1.2.6 unterminated quote
    "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # §3.1.2.15 comma in a token name
    '"Watson, Thomas" < sip:t.watson@example.org >',  # §3.1.2.14 spaces inside <>
    "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # §3.1.2.13 needs <>
    '"Joe" <sip:joe@example.org>;;;;',  # §3.1.2.1 empty parameters
    "<sip:a@b", "", "*", "<sip:a@b>;tag=", "<sip:a@b>x", '"x" sip:a@b',
])
def test_malformed_name_addrs_raise(text: str) -> None:
    with pytest.raises(ProtocolError):
        NameAddr.parse(text)


def test_via_with_rport_and_port() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK74bf9;rport")
    assert (via.protocol, via.transport, via.host, via.port) == ("SIP/2.0", "UDP", "10.0.0.1", 5060)
    assert via.branch == "z9hG4bK74bf9" and via.has_param("rport") and via.param("rport") is None
    assert not via.has_param("received") and via.sent_by == "10.0.0.1:5060"
    assert str(via) == "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK74bf9;rport"


def test_via_with_lws_everywhere_and_ipv6() -> None:
    via = Via.parse("SIP  / 2.0  / tcp     spindle.example.com   ; branch  =   z9hG4bK9ikj8")
    assert (via.transport, via.host, via.branch) == ("TCP", "spindle.example.com", "z9hG4bK9ikj8")
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1] : 5070;received=[2001:db8::9:255]")
    assert (via.host, via.port, via.param("received")) == ("[2001:db8::9:1]", 5070,
                                                           "[2001:db8::9:255]")


@pytest.mark.parametrize("text", ["", ";", "SIP/2.0/UDP", "SIP/2.0 host", "SIP/2.0/UDP h;;",
                                  "SIP/2.0/UDP h:70000", "SIP/2.0/UDP h x", "SIP/2.0/UDP h;a=\"x"])
def test_malformed_vias_raise(text: str) -> None:
    with pytest.raises(ProtocolError):
        Via.parse(text)


def test_cseq() -> None:
    assert CSeq.parse("314159 INVITE") == CSeq(314159, "INVITE")
    assert CSeq.parse("0009 INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(1, "BYE")) == "1 BYE"
    for bad in ("INVITE", "1", "-1 INVITE", "4294967296 INVITE", "9" * 5000 + " INVITE", "1 IN(V"):
        with pytest.raises(ProtocolError):
            CSeq.parse(bad)


def test_sip_uri_with_every_part() -> None:
    uri = SipUri.parse("sip:user:pw@host:5060;transport=udp;lr?Subject=x&Priority=urgent")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sip", "user", "pw", "host", 5060)
    assert uri.params == (("transport", "udp"), ("lr", None))
    assert uri.headers == (("Subject", "x"), ("Priority", "urgent"))
    assert uri.transport == "udp" and uri.has_param("LR") and uri.host_port == "host:5060"
    assert str(uri) == "sip:user:pw@host:5060;transport=udp;lr?Subject=x&Priority=urgent"


@pytest.mark.parametrize(("text", "user", "host", "port"), [
    ("sips:[2001:db8::10]:5061", None, "[2001:db8::10]", 5061),
    ("SIP:alice@atlanta.com", "alice", "atlanta.com", None),
    ("sip:user;par=u%40example.net@example.com", "user;par=u%40example.net", "example.com", None),
    ("sip:%00@host5.example.com", "%00", "host5.example.com", None),
    ("sip:+821012345678@10.0.0.1;user=phone", "+821012345678", "10.0.0.1", None),
    ("sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too."
     "(doesn't-it)@example.com", "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*",
     "example.com", None),
])
def test_sip_uri_forms(text: str, user: str | None, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert (uri.user, uri.host, uri.port) == (user, host, port)
    assert SipUri.parse(str(uri)) == uri
    assert str(uri) == ("sip" + text[3:] if text.startswith("SIP:") else text)


@pytest.mark.parametrize("text", ["tel:+8210", "sip:", "sip:@host", "sip:a@b c", "sip:a@b:x",
                                  "sip:a@b;", "sip:a@b?", "sip:a@[::1", "<sip:a@b>", "sip:a@b;x=",
                                  "sip:a@b:65536", "sip:a%2@b"])
def test_malformed_sip_uris_raise(text: str) -> None:
    with pytest.raises(ProtocolError):
        SipUri.parse(text)
