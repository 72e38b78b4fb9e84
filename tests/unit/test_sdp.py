"""SDP parse/serialise on samples in the style of real peers, offer/answer tables for both sides
(RFC 3264), malformed input, and fuzzing."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ars_engine.errors import ProtocolError
from ars_engine.telephony.sip.sdp import (
    Attribute,
    Connection,
    MediaDescription,
    MediaRejected,
    NegotiatedMedia,
    NegotiationFailed,
    Origin,
    RtpMap,
    SessionDescription,
    answer_offer,
    make_offer,
    negotiate_answer,
)

SAMPLES = Path(__file__).resolve().parents[1] / "transcripts" / "sdp"
SAMPLE_FILES = sorted(SAMPLES.glob("*.sdp"))


def sample(name: str) -> str:
    return (SAMPLES / name).read_bytes().decode()


def sdp(text: str) -> SessionDescription:
    """A description from indented test text (LF, leading spaces stripped)."""
    return SessionDescription.parse("\n".join(line.strip() for line in text.strip().splitlines()))


def crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


# -- samples: round trip and fields ---------------------------------------------------------------
def test_there_are_samples_of_every_peer() -> None:
    names = {p.name.split("_")[0] for p in SAMPLE_FILES}
    assert {"baresip", "linphone", "asterisk", "sipp"} <= names


@pytest.mark.parametrize("path", SAMPLE_FILES, ids=lambda p: p.name)
def test_sample_round_trips_byte_for_byte(path: Path) -> None:
    text = path.read_bytes().decode()
    parsed = SessionDescription.parse(text)
    assert str(parsed) == crlf(text)
    assert SessionDescription.parse(text.replace("\r\n", "\n")) == parsed  # LF-only peers
    assert SessionDescription.parse(path.read_bytes()) == parsed  # bytes as from the wire
    assert bytes(parsed) == crlf(text).encode()


def test_baresip_offer_fields() -> None:
    offer = SessionDescription.parse(sample("baresip_offer.sdp"))
    assert offer.origin == Origin("-", "3847215011", "1722461095", "IN", "IP4", "192.168.1.20")
    assert offer.connection == Connection("IN", "IP4", "192.168.1.20")
    assert offer.attributes == (Attribute("tool", "baresip 3.14.0"),)
    [audio] = offer.media
    assert (audio.media, audio.port, audio.proto) == ("audio", 10548, "RTP/AVP")
    assert audio.formats == ("96", "9", "0", "8", "101")
    assert audio.other == (("b", "AS:128"),)
    assert audio.rtpmaps()[96] == RtpMap("opus", 48000, 2)
    assert audio.fmtp(101) == "0-15" and audio.fmtp(96) == "stereo=1;sprop-stereo=1"
    assert audio.fmtp(0) is None
    assert audio.ptime == 20 and audio.rtcp_port == 10549
    assert audio.attribute("mid") == "0" and audio.attribute("nothing") is None
    assert offer.direction_of(audio) == "sendrecv"


def test_linphone_static_types_need_no_rtpmap() -> None:
    [audio] = SessionDescription.parse(sample("linphone_offer.sdp")).media
    maps = audio.rtpmaps()
    assert maps[0] == RtpMap("PCMU", 8000) and maps[8] == RtpMap("PCMA", 8000)
    assert maps[18] == RtpMap("G729", 8000)
    assert maps[100] == RtpMap("telephone-event", 8000)
    assert audio.ptime is None and audio.rtcp_port is None


def test_repr_is_one_short_line() -> None:
    text = repr(SessionDescription.parse(sample("asterisk_offer.sdp")))
    assert text == "SessionDescription(10.0.0.5: audio 16384 0 8 101)"


# -- the samples answered (UAS) --------------------------------------------------------------------
@pytest.mark.parametrize(("name", "codec", "pt", "dtmf"), [
    ("baresip_offer.sdp", "PCMU", 0, 101),  # opus and G.722 skipped, offerer's order kept
    ("baresip_ipv6_offer.sdp", "PCMU", 0, 96),
    ("linphone_offer.sdp", "PCMU", 0, 100),  # telephone-event at 8000, not 48000 or 16000
    ("asterisk_offer.sdp", "PCMU", 0, 101),
    ("sipp_uac_offer.sdp", "PCMU", 0, None),  # no telephone-event: in-band DTMF
    ("sipp_pcap_offer.sdp", "PCMA", 8, 101),
])
def test_samples_are_answered(name: str, codec: str, pt: int, dtmf: int | None) -> None:
    offer = SessionDescription.parse(sample(name))
    answer, media = answer_offer(offer, "10.9.9.9", 30_000, session_id=7, version=1)
    assert isinstance(media, NegotiatedMedia)
    assert (media.codec, media.payload_type, media.dtmf_payload_type) == (codec, pt, dtmf)
    assert media.remote_port == offer.media[0].port
    assert negotiate_answer(offer, answer).payload_type == pt  # a valid answer to the offer


# -- make_offer ------------------------------------------------------------------------------------
def test_offer_text_is_exact() -> None:
    assert str(make_offer("192.0.2.10", 40_000, 3_891_234, 1)) == crlf("""v=0
o=- 3891234 1 IN IP4 192.0.2.10
s=ars-engine
c=IN IP4 192.0.2.10
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
a=sendrecv
""")


def test_offer_variants() -> None:
    offer = make_offer("2001:db8::1", 5_000, 1, 2, codecs=("pcma",), dtmf_pt=None, ptime=30,
                       direction="sendonly")
    assert offer.connection == Connection("IN", "IP6", "2001:db8::1")
    [audio] = offer.media
    assert audio.formats == ("8",)
    assert [str(a) for a in audio.attributes] == ["rtpmap:8 PCMA/8000", "ptime:30", "sendonly"]


@pytest.mark.parametrize("kwargs", [{"codecs": ()}, {"codecs": ("G729",)}, {"dtmf_pt": 8},
                                    {"dtmf_pt": 128}, {"direction": "both"}])
def test_offer_refuses_what_we_cannot_do(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make_offer("192.0.2.1", 4_000, 1, 1, **kwargs)  # type: ignore[arg-type]


def test_offer_needs_an_ip_address() -> None:
    with pytest.raises(ValueError):
        make_offer("pbx.example.com", 4_000, 1, 1)


# -- answer_offer (UAS) table ----------------------------------------------------------------------
def offer_text(formats: str, *lines: str, c: str = "IN IP4 198.51.100.7", port: int = 8_000,
               session: tuple[str, ...] = ()) -> SessionDescription:
    body = ["v=0", "o=- 1 1 IN IP4 198.51.100.7", "s=-", f"c={c}", "t=0 0", *session,
            f"m=audio {port} RTP/AVP {formats}", *lines]
    return SessionDescription.parse("\r\n".join(body) + "\r\n")


TE101 = ("a=rtpmap:101 telephone-event/8000", "a=fmtp:101 0-15")
TE96 = ("a=rtpmap:96 telephone-event/8000", "a=fmtp:96 0-16")
ANSWER_TABLE = [
    # id, offer, supported, codec, pt, dtmf pt, our direction
    ("pcmu-only", offer_text("0", "a=rtpmap:0 PCMU/8000"), ("PCMU", "PCMA"), "PCMU", 0, None,
     "sendrecv"),
    ("pcma-only", offer_text("8"), ("PCMU", "PCMA"), "PCMA", 8, None, "sendrecv"),
    ("both-pcmu-first", offer_text("0 8 101", *TE101), ("PCMU", "PCMA"), "PCMU", 0, 101,
     "sendrecv"),
    ("both-pcma-first", offer_text("8 0 101", *TE101), ("PCMU", "PCMA"), "PCMA", 8, 101,
     "sendrecv"),
    ("our-support-pcma-only", offer_text("0 8"), ("PCMA",), "PCMA", 8, None, "sendrecv"),
    ("te-at-96", offer_text("0 96", *TE96), ("PCMU", "PCMA"), "PCMU", 0, 96, "sendrecv"),
    ("te-wrong-clock", offer_text("0 97", "a=rtpmap:97 telephone-event/16000"),
     ("PCMU", "PCMA"), "PCMU", 0, None, "sendrecv"),
    ("encoding-case", offer_text("0 101", "a=rtpmap:0 pcmu/8000",
                                 "a=rtpmap:101 Telephone-Event/8000"), ("PCMU",), "PCMU", 0, 101,
     "sendrecv"),
    ("sendonly", offer_text("0", "a=sendonly"), ("PCMU",), "PCMU", 0, None, "recvonly"),
    ("recvonly", offer_text("0", "a=recvonly"), ("PCMU",), "PCMU", 0, None, "sendonly"),
    ("inactive", offer_text("0", "a=inactive"), ("PCMU",), "PCMU", 0, None, "inactive"),
    ("session-level-sendonly", offer_text("0", session=("a=sendonly",)), ("PCMU",), "PCMU", 0,
     None, "recvonly"),
    ("hold-0.0.0.0", offer_text("0", c="IN IP4 0.0.0.0"), ("PCMU",), "PCMU", 0, None,
     "recvonly"),
    ("ipv6", offer_text("0 8", c="IN IP6 2001:db8::7"), ("PCMU",), "PCMU", 0, None, "sendrecv"),
]


@pytest.mark.parametrize(("offer", "supported", "codec", "pt", "dtmf", "direction"),
                         [row[1:] for row in ANSWER_TABLE], ids=[row[0] for row in ANSWER_TABLE])
def test_answer_offer(offer: SessionDescription, supported: tuple[str, ...], codec: str,
                      pt: int, dtmf: int | None, direction: str) -> None:
    answer, media = answer_offer(offer, "192.0.2.1", 20_000, supported, session_id=9, version=3)
    assert isinstance(media, NegotiatedMedia)
    assert (media.codec, media.payload_type, media.clock_rate) == (codec, pt, 8000)
    assert media.dtmf_payload_type == media.dtmf_receive_payload_type == dtmf
    assert media.direction == direction
    assert media.remote_port == 8_000 and media.remote_rtcp_port == 8_001 and media.ptime == 20
    assert media.remote_addr == offer.connection_for(offer.media[0]).address  # type: ignore[union-attr]
    # The answer says the same thing, in SDP.
    [audio] = answer.media
    assert audio.formats == tuple(str(p) for p in (pt, dtmf) if p is not None)
    assert audio.rtpmaps()[pt].encoding == codec
    assert answer.direction_of(audio) == direction
    assert (audio.port, answer.connection) == (20_000, Connection("IN", "IP4", "192.0.2.1"))
    assert answer.origin == Origin("-", "9", "3", "IN", "IP4", "192.0.2.1")
    if dtmf is not None:
        assert audio.fmtp(dtmf) == "0-15"
    # The offerer can check it (the answer is valid), and hears the same codec.
    assert negotiate_answer(offer, answer).codec == codec


REJECT_TABLE = [
    ("port-0", offer_text("0", port=0), "disabled the audio stream (port 0)"),
    ("no-common-codec", offer_text("18 3", "a=rtpmap:18 G729/8000"),
     "no common codec: offered G729/8000, GSM/8000; supported PCMU, PCMA"),
    ("pcmu-at-16k", offer_text("96", "a=rtpmap:96 PCMU/16000"), "no common codec"),
    ("unknown-dynamic-only", offer_text("97"), "offered none known"),
    ("srtp", SessionDescription.parse(str(offer_text("0")).replace("RTP/AVP", "RTP/SAVP")),
     "transport RTP/SAVP is not supported"),
    ("video-only", SessionDescription.parse(str(offer_text("0")).replace("m=audio",
                                                                         "m=video")),
     "the offer has no audio stream"),
]


@pytest.mark.parametrize(("offer", "reason"), [row[1:] for row in REJECT_TABLE],
                         ids=[row[0] for row in REJECT_TABLE])
def test_answer_rejects_the_stream_with_a_reason(offer: SessionDescription, reason: str) -> None:
    answer, result = answer_offer(offer, "192.0.2.1", 20_000)
    assert isinstance(result, MediaRejected) and reason in result.reason
    [m] = answer.media
    assert m.port == 0 and m.formats == offer.media[0].formats and m.attributes == ()


def test_ipv6_answer_for_an_ipv6_address() -> None:
    answer, _ = answer_offer(offer_text("0", c="IN IP6 2001:db8::7"), "2001:db8::1", 20_000)
    assert answer.connection == Connection("IN", "IP6", "2001:db8::1")


def test_answer_keeps_one_m_line_per_offered_stream_and_accepts_the_first_audio() -> None:
    offer = sdp("""v=0
        o=- 1 1 IN IP4 198.51.100.7
        s=-
        c=IN IP4 198.51.100.7
        t=3034423619 3042462419
        m=video 9000 RTP/AVP 96
        a=rtpmap:96 H264/90000
        m=audio 0 RTP/AVP 0
        m=audio 8000 RTP/AVP 18 8
        a=ptime:30
        a=rtcp:9999 IN IP4 198.51.100.7
        m=audio 8002 RTP/AVP 0
        m=image 9002 udptl t38""")
    answer, media = answer_offer(offer, "192.0.2.1", 20_000)
    assert isinstance(media, NegotiatedMedia)
    assert (media.media_index, media.codec, media.ptime, media.remote_rtcp_port) == (
        2, "PCMA", 30, 9999)
    assert [m.port for m in answer.media] == [0, 0, 20_000, 0, 0]
    assert [m.media for m in answer.media] == ["video", "audio", "audio", "audio", "image"]
    assert answer.times == ((3034423619, 3042462419),)  # RFC 3264 §6: t= as offered
    assert negotiate_answer(offer, answer).media_index == 2


def test_offer_without_an_address_is_invalid() -> None:
    offer = sdp("""v=0
        o=- 1 1 IN IP4 198.51.100.7
        s=-
        t=0 0
        m=audio 8000 RTP/AVP 0""")
    with pytest.raises(NegotiationFailed, match="no c= address"):
        answer_offer(offer, "192.0.2.1", 20_000)


def test_offer_with_a_non_ip_address_type_is_invalid() -> None:
    with pytest.raises(NegotiationFailed, match="not IN IP4/IP6"):
        answer_offer(offer_text("0", c="ATM NSAP 47.0005"), "192.0.2.1", 20_000)


def test_negotiation_failed_is_a_protocol_error() -> None:
    assert issubclass(NegotiationFailed, ProtocolError)
    assert NegotiationFailed("x").protocol == "sdp"


# -- negotiate_answer (UAC) table ------------------------------------------------------------------
OFFER = make_offer("192.0.2.1", 20_000, 1, 1)  # PCMU, PCMA, telephone-event 101


def answer_text(formats: str, *lines: str, c: str = "IN IP4 203.0.113.5",
                port: int = 30_000) -> SessionDescription:
    body = ["v=0", "o=- 5 5 IN IP4 203.0.113.5", "s=-", f"c={c}", "t=0 0",
            f"m=audio {port} RTP/AVP {formats}", *lines]
    return SessionDescription.parse("\r\n".join(body) + "\r\n")


def test_asterisk_answer_to_our_offer() -> None:
    media = negotiate_answer(OFFER, SessionDescription.parse(sample("asterisk_answer.sdp")))
    assert media == NegotiatedMedia("10.0.0.5", 17022, 17023, "PCMU", 8000, 0, 101, 101, 20,
                                    "sendrecv", 0)


UAC_TABLE = [
    # id, answer, codec, pt, dtmf sent with, dtmf received as, our direction, ptime
    ("pcmu", answer_text("0 101", *TE101), "PCMU", 0, 101, 101, "sendrecv", 20),
    ("pcma", answer_text("8"), "PCMA", 8, None, None, "sendrecv", 20),
    ("two-codecs-first-wins", answer_text("8 0"), "PCMA", 8, None, None, "sendrecv", 20),
    ("te-renumbered", answer_text("0 96", *TE96), "PCMU", 0, 96, 101, "sendrecv", 20),
    ("ptime-40", answer_text("0", "a=ptime:40"), "PCMU", 0, None, None, "sendrecv", 40),
    ("remote-recvonly", answer_text("0", "a=recvonly"), "PCMU", 0, None, None, "sendonly", 20),
    ("remote-sendonly", answer_text("0", "a=sendonly"), "PCMU", 0, None, None, "recvonly", 20),
    ("inactive", answer_text("0", "a=inactive"), "PCMU", 0, None, None, "inactive", 20),
    ("hold-0.0.0.0", answer_text("0", c="IN IP4 0.0.0.0"), "PCMU", 0, None, None, "recvonly",
     20),
    ("ipv6", answer_text("0", c="IN IP6 2001:db8::5"), "PCMU", 0, None, None, "sendrecv", 20),
    ("cn-listed-first", answer_text("13 0"), "PCMU", 0, None, None, "sendrecv", 20),
]


@pytest.mark.parametrize(("answer", "codec", "pt", "sent", "received", "direction", "ptime"),
                         [row[1:] for row in UAC_TABLE], ids=[row[0] for row in UAC_TABLE])
def test_negotiate_answer(answer: SessionDescription, codec: str, pt: int, sent: int | None,
                          received: int | None, direction: str, ptime: int) -> None:
    media = negotiate_answer(OFFER, answer)
    assert (media.codec, media.payload_type, media.clock_rate) == (codec, pt, 8000)
    assert (media.dtmf_payload_type, media.dtmf_receive_payload_type) == (sent, received)
    assert (media.direction, media.ptime) == (direction, ptime)
    assert media.remote_port == 30_000 and media.remote_rtcp_port == 30_001


def test_telephone_event_answered_but_not_offered_is_not_used() -> None:
    offer = make_offer("192.0.2.1", 20_000, 1, 1, dtmf_pt=None)
    media = negotiate_answer(offer, answer_text("0 101", *TE101))
    assert media.dtmf_payload_type is None and media.dtmf_receive_payload_type is None


def test_dynamic_codec_without_rtpmap_in_the_answer_is_read_as_offered() -> None:
    offer = SessionDescription.parse(str(offer_text("96", "a=rtpmap:96 PCMU/8000")))
    media = negotiate_answer(offer, answer_text("96"))
    assert (media.codec, media.payload_type) == ("PCMU", 96)


INVALID_ANSWERS = [
    ("codec-not-offered", make_offer("192.0.2.1", 20_000, 1, 1, codecs=("PCMU",)),
     answer_text("8"), "payload type 8 (PCMA), which the offer did not list"),
    ("codec-renumbered", OFFER, answer_text("96", "a=rtpmap:96 PCMU/8000"),
     "payload type 96 (PCMU), which the offer did not list"),
    ("codec-redefined", OFFER, answer_text("8", "a=rtpmap:8 PCMU/8000"),
     "payload type 8 (PCMU)"),
    ("no-g711", OFFER, answer_text("18", "a=rtpmap:18 G729/8000"),
     "names no codec we offered (formats 18)"),
    ("rejected", OFFER, answer_text("0", port=0), "rejected the audio stream (port 0)"),
    ("too-many-m-lines", OFFER, SessionDescription.parse(
        str(answer_text("0")) + "m=video 0 RTP/AVP 96\r\n"), "2 m= lines, the offer 1"),
    ("media-type-changed", OFFER, SessionDescription.parse(
        str(answer_text("0")).replace("m=audio", "m=video")), "m= line 0 is video"),
    ("proto-changed", OFFER, SessionDescription.parse(
        str(answer_text("0")).replace("RTP/AVP", "RTP/SAVP")), "transport is RTP/SAVP"),
    ("no-address", OFFER, SessionDescription.parse(
        str(answer_text("0")).replace("c=IN IP4 203.0.113.5\r\n", "")), "no c= address"),
    ("sendrecv-to-sendonly", make_offer("192.0.2.1", 20_000, 1, 1, direction="sendonly"),
     answer_text("0"), "sendrecv to a sendonly offer"),
    ("sendonly-to-recvonly", make_offer("192.0.2.1", 20_000, 1, 1, direction="recvonly"),
     answer_text("0", "a=recvonly"), "recvonly to a recvonly offer"),
    ("active-to-inactive", make_offer("192.0.2.1", 20_000, 1, 1, direction="inactive"),
     answer_text("0", "a=sendrecv"), "sendrecv to a inactive offer"),
    ("no-active-audio-offered", SessionDescription.parse(str(OFFER).replace(
        "m=audio 20000", "m=audio 0")), answer_text("0", port=0), "no active audio stream"),
    ("revived-disabled-stream", SessionDescription.parse(str(OFFER).replace(
        "m=audio 20000", "m=audio 0")), answer_text("0"), "disabled in the offer"),
]


@pytest.mark.parametrize(("offer", "answer", "message"), [row[1:] for row in INVALID_ANSWERS],
                         ids=[row[0] for row in INVALID_ANSWERS])
def test_invalid_answers_fail_with_a_clear_reason(offer: SessionDescription,
                                                  answer: SessionDescription,
                                                  message: str) -> None:
    with pytest.raises(NegotiationFailed) as caught:
        negotiate_answer(offer, answer)
    assert message in caught.value.message


@given(codecs=st.permutations(["PCMU", "PCMA"]).flatmap(
           lambda c: st.integers(1, 2).map(lambda n: tuple(c[:n]))),
       supported=st.sampled_from([("PCMU",), ("PCMA",), ("PCMU", "PCMA"), ("PCMA", "PCMU")]),
       dtmf_pt=st.none() | st.integers(96, 127),
       direction=st.sampled_from(["sendrecv", "sendonly", "recvonly", "inactive"]))
def test_our_offer_answered_by_our_answerer_agrees_on_both_sides(
        codecs: tuple[str, ...], supported: tuple[str, ...], dtmf_pt: int | None,
        direction: str) -> None:
    offer = make_offer("192.0.2.1", 20_000, 1, 1, codecs, dtmf_pt, direction=direction)
    answer, uas = answer_offer(offer, "203.0.113.5", 30_000, supported)
    common = [c for c in codecs if c in supported]
    if not common:
        assert isinstance(uas, MediaRejected)
        with pytest.raises(NegotiationFailed, match="rejected"):
            negotiate_answer(offer, answer)
        return
    assert isinstance(uas, NegotiatedMedia)
    uac = negotiate_answer(offer, answer)
    assert uas.codec == uac.codec == common[0]
    assert uas.dtmf_payload_type == uac.dtmf_payload_type == dtmf_pt
    assert (uac.remote_addr, uac.remote_port) == ("203.0.113.5", 30_000)
    assert (uas.remote_addr, uas.remote_port) == ("192.0.2.1", 20_000)
    mirrored = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                "inactive": "inactive"}
    assert uac.direction == direction and uas.direction == mirrored[direction]


# -- parsing: tolerated and malformed input --------------------------------------------------------
def test_missing_session_lines_and_misplaced_ones_are_tolerated() -> None:
    parsed = SessionDescription.parse("c=IN IP4 192.0.2.1\nm=audio 4000 RTP/AVP 0\nt=0 0\n\n")
    assert parsed.origin is None and parsed.session_name == "-" and parsed.version == 0
    assert parsed.times == ((0, 0),) and parsed.media[0].port == 4000
    assert str(parsed) == crlf("v=0\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\nm=audio 4000 RTP/AVP 0\n")


def test_lines_are_kept_and_written_in_rfc_order() -> None:
    parsed = SessionDescription.parse(crlf("""v=0
o=- 1 1 IN IP4 192.0.2.1
s=x
k=prompt
i=info
a=tool:t
c=IN IP4 192.0.2.1
t=1 2
r=7d 1h 0 25h
m=audio 4000/2 RTP/AVP 0
a=x-custom
k=prompt
i=media info
c=IN IP4 192.0.2.2
"""))
    assert parsed.other == (("i", "info"), ("r", "7d 1h 0 25h"), ("k", "prompt"))
    [audio] = parsed.media
    assert audio.port_count == 2 and audio.connection == Connection("IN", "IP4", "192.0.2.2")
    assert audio.other == (("i", "media info"), ("k", "prompt"))
    assert audio.attributes == (Attribute("x-custom"),)
    assert str(parsed) == crlf("""v=0
o=- 1 1 IN IP4 192.0.2.1
s=x
i=info
c=IN IP4 192.0.2.1
t=1 2
r=7d 1h 0 25h
k=prompt
a=tool:t
m=audio 4000/2 RTP/AVP 0
i=media info
c=IN IP4 192.0.2.2
k=prompt
a=x-custom
""")


BASE = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0",
        "m=audio 4000 RTP/AVP 0"]
MALFORMED = [
    # id, line replaced (index) or appended (None), new line, words
    ("unknown-type", None, "x=1", "known '<type>=<value>' line"),
    ("uppercase-type", None, "A=rtpmap:0 PCMU/8000", "known"),
    ("no-equals", None, "a rtpmap", "known"),
    ("one-char", None, "a", "known"),
    ("version-1", 0, "v=1", "only version 0"),
    ("second-v", None, "v=0", "a second v= line"),
    ("second-o", None, "o=- 1 1 IN IP4 192.0.2.1", "a second o= line"),
    ("short-o", 1, "o=- 1 1 IN IP4", "o= needs 6 fields"),
    ("short-c", 3, "c=IN IP4", "c= needs 3 fields"),
    ("second-c", None, "c=IN IP4 192.0.2.3\r\nc=IN IP4 192.0.2.4", "a second c= line"),
    ("t-not-numbers", 4, "t=now never", "start time is not a number"),
    ("t-one-field", 4, "t=0", "t= needs 2 fields"),
    ("t-plus", 4, "t=+1 0", "not a number"),
    ("m-short", 5, "m=audio 4000 RTP/AVP", "m= needs"),
    ("m-port-text", 5, "m=audio port RTP/AVP 0", "port is not a number"),
    ("m-port-range", 5, "m=audio 70000 RTP/AVP 0", "port is not a number ≤ 65535"),
    ("m-port-count", 5, "m=audio 4000/x RTP/AVP 0", "port count is not a number"),
    ("m-unicode-digit", 5, "m=audio ٤٠٠٠ RTP/AVP 0", "port is not a number"),
    ("attribute-no-name", None, "a=:x", "attribute without a name"),
    ("attribute-space", None, "a=foo bar", "attribute without a name"),
    ("rtpmap-empty", None, "a=rtpmap", "needs a value"),
    ("rtpmap-no-clock", None, "a=rtpmap:0 PCMU", "rtpmap is not"),
    ("rtpmap-pt", None, "a=rtpmap:200 PCMU/8000", "payload type is not a number ≤ 127"),
    ("rtpmap-clock", None, "a=rtpmap:0 PCMU/fast", "clock rate is not a number"),
    ("rtpmap-channels", None, "a=rtpmap:0 PCMU/8000/x", "channels is not a number"),
    ("fmtp-empty", None, "a=fmtp:", "needs a value"),
    ("ptime-text", None, "a=ptime:twenty", "ptime is not a number"),
    ("ptime-zero", None, "a=ptime:0", "ptime is not a number"),
    ("ptime-nan", None, "a=ptime:nan", "ptime is not a number"),
    ("rtcp-text", None, "a=rtcp:x IN IP4 1.2.3.4", "rtcp port is not a number"),
]


@pytest.mark.parametrize(("index", "line", "words"), [row[1:] for row in MALFORMED],
                         ids=[row[0] for row in MALFORMED])
def test_malformed_descriptions_raise_protocol_error_at_the_line(index: int | None, line: str,
                                                                 words: str) -> None:
    lines = list(BASE)
    if index is None:
        lines.append(line)
    else:
        lines[index] = line
    text = "\r\n".join(lines) + "\r\n"
    with pytest.raises(ProtocolError) as caught:
        SessionDescription.parse(text)
    assert caught.value.protocol == "sdp" and words in caught.value.message
    bad_line = line.split("\r\n")[-1]
    assert text[caught.value.offset:].startswith(bad_line)


@pytest.mark.parametrize("text", ["", "\r\n\r\n", "i=only info\r\n", "a=tool:x\r\n"])
def test_text_without_session_lines_is_not_a_description(text: str) -> None:
    with pytest.raises(ProtocolError, match="not a session description"):
        SessionDescription.parse(text)


def test_bytes_that_are_not_utf8_raise_protocol_error_at_the_byte() -> None:
    with pytest.raises(ProtocolError) as caught:
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")
    assert caught.value.offset == 7


def test_decimal_ptime_is_rounded() -> None:
    [audio] = SessionDescription.parse("v=0\r\nm=audio 1 RTP/AVP 0\r\na=ptime:20.5\r\n").media
    assert audio.ptime == 20


# -- fuzzing ---------------------------------------------------------------------------------------
SAMPLE_LINES = sorted({line for p in SAMPLE_FILES for line in p.read_bytes().decode().split("\r\n")
                       if line})
line_strategy = (st.sampled_from(SAMPLE_LINES)
                 | st.builds(lambda t, v: f"{t}={v}", st.sampled_from("vosiuepcbtrzkamx"),
                             st.text(max_size=30).filter(lambda v: "\n" not in v))
                 | st.text(max_size=20))


def parse_or_protocol_error(text: str | bytes) -> SessionDescription | None:
    try:
        return SessionDescription.parse(text)
    except ProtocolError:
        return None


@settings(max_examples=400)
@given(st.lists(line_strategy, max_size=25), st.sampled_from(["\r\n", "\n"]))
def test_fuzzed_lines_parse_or_raise_protocol_error_and_round_trip(lines: list[str],
                                                                   eol: str) -> None:
    parsed = parse_or_protocol_error(eol.join(lines))
    if parsed is None:
        return
    assert SessionDescription.parse(str(parsed)) == parsed
    # Negotiation over whatever parsed raises only ProtocolError too.
    try:
        answer, _ = answer_offer(parsed, "192.0.2.1", 20_000)
        negotiate_answer(parsed, answer)
        negotiate_answer(OFFER, parsed)
    except ProtocolError:
        pass


@given(st.binary(max_size=200))
def test_arbitrary_bytes_parse_or_raise_protocol_error(data: bytes) -> None:
    parse_or_protocol_error(data)


@given(st.sampled_from(SAMPLE_FILES), st.data())
def test_mutated_samples_parse_or_raise_protocol_error(path: Path, data: st.DataObject) -> None:
    text = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text) - 1))
        text[at] = data.draw(st.integers(0, 127))
    parsed = parse_or_protocol_error(bytes(text))
    if parsed is not None:
        assert SessionDescription.parse(str(parsed)) == parsed
        with contextlib.suppress(ProtocolError):
            answer_offer(parsed, "192.0.2.1", 20_000)


def test_media_description_is_a_plain_value() -> None:
    m = MediaDescription("audio", 0, "RTP/AVP", ("0",))
    assert str(m) == "audio 0 RTP/AVP 0" and m.rtpmaps() == {0: RtpMap("PCMU", 8000)}
