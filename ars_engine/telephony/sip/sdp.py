"""SDP (RFC 8866, formerly RFC 4566) for telephony, and the offer/answer model (RFC 3264).

Parsing keeps every line it does not interpret (unknown attributes, ``i= u= e= p= b= r= z= k=``)
so ``str(SessionDescription.parse(text)) == text`` for descriptions written in the RFC's line
order with CRLF; ``SessionDescription.parse(str(sd)) == sd`` always. Input is tolerated where
harmless: LF line ends, blank lines, a missing ``v=``/``o=``/``s=``/``t=``, session lines
(``t=`` …) placed after an ``m=`` line. Anything else raises ``ProtocolError("sdp", offset, …)``
with the character offset of the offending line. Offer/answer: :func:`make_offer`,
:func:`answer_offer` (UAS) and :func:`negotiate_answer` (UAC), G.711 and telephone-event only.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace

from ...errors import ProtocolError

__all__ = [
    "Attribute", "Connection", "MediaDescription", "MediaRejected", "NegotiatedMedia",
    "NegotiationFailed", "Origin", "RtpMap", "SessionDescription", "answer_offer", "make_offer",
    "negotiate_answer",
]

# RFC 8866 §5: the order of lines; a description with a type letter we do not know MUST be
# ignored entirely, so it is refused.
_SESSION_ORDER = {t: i for i, t in enumerate("vosiuepcbtrzkam")}
_MEDIA_ORDER = {t: i for i, t in enumerate("micbka")}
DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")  # RFC 8866 §6.7, default sendrecv
# RFC 3264 §6.1: the answer's direction for each offered direction.
_ANSWER_DIRECTION = {"sendrecv": "sendrecv", "sendonly": "recvonly", "recvonly": "sendonly",
                     "inactive": "inactive"}
_ALLOWED_ANSWERS = {"sendrecv": set(DIRECTIONS), "sendonly": {"recvonly", "inactive"},
                    "recvonly": {"sendonly", "inactive"}, "inactive": {"inactive"}}


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]`` (RFC 8866 §6.6)."""

    encoding: str
    clock_rate: int
    channels: int | None = None


# RFC 3551 §6 table 4: static audio payload types, valid without an rtpmap line.
STATIC_PAYLOAD_TYPES = {0: RtpMap("PCMU", 8000), 3: RtpMap("GSM", 8000),
                        4: RtpMap("G723", 8000), 8: RtpMap("PCMA", 8000),
                        9: RtpMap("G722", 8000), 13: RtpMap("CN", 8000),
                        18: RtpMap("G729", 8000)}
CODECS = {"PCMU": 0, "PCMA": 8}  # what we can send and receive: name → static payload type


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` or ``a=<name>:<value>``."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (§5.2)."""

    username: str
    session_id: str
    session_version: str
    nettype: str
    addrtype: str
    address: str

    def __str__(self) -> str:
        return (f"{self.username} {self.session_id} {self.session_version} {self.nettype} "
                f"{self.addrtype} {self.address}")


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <address>`` (§5.7); a multicast ``/ttl`` stays in ``address``."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """``IN IP4`` or ``IN IP6`` for an IP address literal."""
        version = ipaddress.ip_address(address).version
        return cls("IN", f"IP{version}", address)

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


def _attribute_value(attributes: tuple[Attribute, ...], name: str) -> str | None:
    return next((a.value for a in attributes if a.name == name), None)


def _direction(attributes: tuple[Attribute, ...]) -> str | None:
    return next((a.name for a in attributes if a.name in DIRECTIONS), None)


@dataclass(frozen=True, slots=True)
class MediaDescription:
    """One ``m=`` section (§5.14) and its lines. ``other`` keeps ``i= b= k=`` lines raw."""

    media: str
    port: int
    proto: str
    formats: tuple[str, ...]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: tuple[Attribute, ...] = ()
    other: tuple[tuple[str, str], ...] = ()

    def attribute(self, name: str) -> str | None:
        """The value of the first ``a=<name>`` of this section (None if absent or valueless)."""
        return _attribute_value(self.attributes, name)

    def rtpmaps(self) -> dict[int, RtpMap]:
        """Payload type → encoding for every listed format: rtpmap lines, else RFC 3551's
        static assignments (formats that are neither are left out)."""
        maps = {int(pt): STATIC_PAYLOAD_TYPES[int(pt)] for pt in self.formats
                if _NUMBER.match(pt) and int(pt) in STATIC_PAYLOAD_TYPES}
        for a in self.attributes:
            if a.name == "rtpmap" and a.value is not None:
                pt, rtpmap = _parse_rtpmap(a.value)
                maps[pt] = rtpmap
        return maps

    def fmtp(self, payload_type: int) -> str | None:
        """The format parameters of ``payload_type`` (``a=fmtp:<pt> <params>``)."""
        for a in self.attributes:
            if a.name == "fmtp" and a.value is not None:
                pt, _, params = a.value.partition(" ")
                if pt == str(payload_type):
                    return params
        return None

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in whole ms (RFC 8866 §6.4 allows decimals: rounded)."""
        value = self.attribute("ptime")
        return None if value is None else round(float(value))

    @property
    def rtcp_port(self) -> int | None:
        """The port of ``a=rtcp:<port> …`` (RFC 3605), None if absent."""
        value = self.attribute("rtcp")
        return None if value is None else int(value.split(" ")[0])

    def __str__(self) -> str:
        port = self.port if self.port_count is None else f"{self.port}/{self.port_count}"
        return " ".join((self.media, str(port), self.proto, *self.formats))


@dataclass(frozen=True, slots=True)
class SessionDescription:
    """A whole description. ``other`` keeps ``i= u= e= p= b= r= z= k=`` session lines raw."""

    origin: Origin | None
    session_name: str = "-"
    connection: Connection | None = None
    times: tuple[tuple[int, int], ...] = ((0, 0),)
    attributes: tuple[Attribute, ...] = ()
    media: tuple[MediaDescription, ...] = ()
    version: int = 0
    other: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        """Parse a description (a SIP body); raise :class:`ProtocolError` if malformed."""
        return _parse(text)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """The connection of ``media``: its own ``c=`` line, else the session's (§5.7)."""
        return media.connection or self.connection

    def direction_of(self, media: MediaDescription) -> str:
        """``a=sendrecv|sendonly|recvonly|inactive`` of ``media``, else of the session, else
        sendrecv (RFC 3264 §5.1)."""
        return _direction(media.attributes) or _direction(self.attributes) or "sendrecv"

    def __str__(self) -> str:
        lines = [(_SESSION_ORDER["v"], f"v={self.version}")]
        if self.origin is not None:
            lines.append((_SESSION_ORDER["o"], f"o={self.origin}"))
        lines.append((_SESSION_ORDER["s"], f"s={self.session_name}"))
        if self.connection is not None:
            lines.append((_SESSION_ORDER["c"], f"c={self.connection}"))
        lines += [(_SESSION_ORDER["t"], f"t={start} {stop}") for start, stop in self.times]
        lines += [(_SESSION_ORDER[t], f"{t}={v}") for t, v in self.other]
        lines += [(_SESSION_ORDER["a"], f"a={a}") for a in self.attributes]
        out = [line for _, line in sorted(lines, key=lambda item: item[0])]  # stable
        for m in self.media:
            section = [(0, f"m={m}")]
            if m.connection is not None:
                section.append((_MEDIA_ORDER["c"], f"c={m.connection}"))
            section += [(_MEDIA_ORDER[t], f"{t}={v}") for t, v in m.other]
            section += [(_MEDIA_ORDER["a"], f"a={a}") for a in m.attributes]
            out += [line for _, line in sorted(section, key=lambda item: item[0])]
        return "\r\n".join(out) + "\r\n"

    def __bytes__(self) -> bytes:
        """The description as a SIP body (UTF-8, CRLF)."""
        return str(self).encode("utf-8")

    def __repr__(self) -> str:
        media = ", ".join(f"{m.media} {m.port} {' '.join(m.formats)}" for m in self.media)
        return f"SessionDescription({self.connection.address if self.connection else '-'}: {media})"


# -- parsing ---------------------------------------------------------------------------------------
_NUMBER = re.compile(r"[0-9]+\Z")  # ASCII digits only: int() would also take "+1", "1_0", "١"
_PTIME = re.compile(r"[0-9]+(\.[0-9]+)?\Z")


def _number(text: str, what: str, limit: int | None = None) -> int:
    if not _NUMBER.match(text) or (limit is not None and int(text) > limit):
        raise ValueError(f"{what} is not a number" + ("" if limit is None else f" ≤ {limit}"))
    return int(text)


def _parse_rtpmap(value: str) -> tuple[int, RtpMap]:
    """``<pt> <encoding>/<clock>[/<channels>]``; ValueError if malformed."""
    pt, _, rest = value.partition(" ")
    parts = rest.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError("rtpmap is not '<pt> <encoding>/<clock rate>[/<channels>]'")
    channels = _number(parts[2], "channels") if len(parts) == 3 else None
    return (_number(pt, "payload type", 127),
            RtpMap(parts[0], _number(parts[1], "clock rate"), channels))


def _attribute_line(value: str) -> Attribute:
    """An ``a=`` line; the attributes negotiation reads are checked here, once."""
    name, sep, rest = value.partition(":")
    if not name or " " in name:
        raise ValueError("attribute without a name")
    a = Attribute(name, rest if sep else None)
    if name in ("rtpmap", "fmtp", "ptime", "rtcp") and not rest:
        raise ValueError(f"a={name} needs a value")
    if name == "rtpmap":
        _parse_rtpmap(rest)
    elif name == "ptime" and not (_PTIME.match(rest) and 0 < float(rest) < 10_000):
        raise ValueError("ptime is not a number of ms")
    elif name == "rtcp":
        _number(rest.split(" ")[0], "rtcp port", 65535)
    return a


def _media_line(value: str) -> MediaDescription:
    fields = value.split(" ")
    if len(fields) < 4 or not all(fields):
        raise ValueError("m= needs '<media> <port>[/<count>] <proto> <fmt> …'")
    port, _, count = fields[1].partition("/")
    return MediaDescription(fields[0], _number(port, "port", 65535), fields[2], tuple(fields[3:]),
                            _number(count, "port count") if count else None)


def _fields(value: str, count: int, what: str) -> list[str]:
    fields = value.split(" ")
    if len(fields) != count or not all(fields):
        raise ValueError(f"{what} needs {count} fields separated by one space")
    return fields


@dataclass(slots=True)
class _Section:
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def ordered_other(self, order: dict[str, int]) -> tuple[tuple[str, str], ...]:
        return tuple(sorted(self.other, key=lambda item: order[item[0]]))  # stable


def _parse(text: str | bytes) -> SessionDescription:
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("sdp", exc.start, "not UTF-8 text") from exc
    session = _Section()
    media: list[tuple[MediaDescription, _Section]] = []
    seen: set[str] = set()
    origin: Origin | None = None
    name = "-"
    times: list[tuple[int, int]] = []
    offset = 0
    for raw in text.split("\n"):
        here, offset = offset, offset + len(raw) + 1
        line = raw.removesuffix("\r")
        if not line:
            continue  # blank lines: a trailing CRLF, or sloppy peers
        kind, value = line[0], line[2:]
        if len(line) < 2 or line[1] != "=" or kind not in _SESSION_ORDER:
            raise ProtocolError("sdp", here, f"not a known '<type>=<value>' line: {line[:24]!r}")
        section = media[-1][1] if media else session
        try:
            if kind in "vos":  # session lines: tolerated anywhere, but once
                if kind in seen:
                    raise ValueError(f"a second {kind}= line")
                seen.add(kind)
                if kind == "v" and value != "0":
                    raise ValueError("only version 0 exists")
                if kind == "o":
                    origin = Origin(*_fields(value, 6, "o="))
                name = value if kind == "s" else name
            elif kind == "m":
                media.append((_media_line(value), _Section()))
            elif kind == "t":  # tolerated after m=: a session line in the wrong place
                start, stop = _fields(value, 2, "t=")
                times.append((_number(start, "start time"), _number(stop, "stop time")))
            elif kind == "c":
                if section.connection is not None:
                    raise ValueError("a second c= line in one section")
                section.connection = Connection(*_fields(value, 3, "c="))
            elif kind == "a":
                section.attributes.append(_attribute_line(value))
            elif media and kind in _MEDIA_ORDER:  # i= b= k= of a media section
                section.other.append((kind, value))
            else:
                session.other.append((kind, value))
        except ValueError as exc:
            raise ProtocolError("sdp", here, f"bad {kind}= line: {exc}") from exc
    if not seen and not media:
        raise ProtocolError("sdp", 0, "no v=, o=, s= or m= line: not a session description")
    return SessionDescription(
        origin, name, session.connection, tuple(times) or ((0, 0),), tuple(session.attributes),
        tuple(replace(m, connection=s.connection, attributes=tuple(s.attributes),
                      other=s.ordered_other(_MEDIA_ORDER)) for m, s in media),
        0, session.ordered_other(_SESSION_ORDER))


# -- offer/answer (RFC 3264) -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The audio stream agreed on, from our side. We send ``codec`` as ``payload_type`` and
    telephone-events as ``dtmf_payload_type`` (None: the peer takes no RFC 4733 events, send
    DTMF in-band); the peer sends its events as ``dtmf_receive_payload_type`` (our description's
    number). ``ptime`` is the packetisation the peer asked to receive (20 ms if it said nothing),
    ``direction`` ours (``sendonly``: we send, the peer does not)."""

    remote_addr: str
    remote_port: int
    remote_rtcp_port: int
    codec: str
    clock_rate: int
    payload_type: int
    dtmf_payload_type: int | None
    dtmf_receive_payload_type: int | None
    ptime: int
    direction: str
    media_index: int = 0


@dataclass(frozen=True, slots=True)
class MediaRejected:
    """No audio stream could be accepted; ``reason`` says why (for logs and a 488 reason)."""

    reason: str


class NegotiationFailed(ProtocolError):
    """An offer or answer that breaks RFC 3264 (the answer names a codec we did not offer…), or
    an answer that rejected our audio stream."""

    def __init__(self, message: str) -> None:
        super().__init__("sdp", -1, message)


# RFC 3264 §8.4: c=0.0.0.0 (RFC 2543 hold) means the peer does not want to receive.
_NOT_RECEIVING = {"sendrecv": "sendonly", "recvonly": "inactive"}
_DEFAULT_PTIME = 20  # RFC 3551 §4.5: G.711's default packetisation


def _audio_codecs(m: MediaDescription) -> list[tuple[int, RtpMap]]:
    """The formats of ``m`` in its order, with their encodings (unknown dynamic ones left out)."""
    maps = m.rtpmaps()
    return [(int(f), maps[int(f)]) for f in m.formats if _NUMBER.match(f) and int(f) in maps]


def _is_g711(rtpmap: RtpMap, wanted: set[str]) -> bool:
    # Encoding names are case-insensitive (RFC 4855 §3).
    return (rtpmap.encoding.upper() in wanted and rtpmap.clock_rate == 8000
            and rtpmap.channels in (None, 1))


def _telephone_event(m: MediaDescription, clock_rate: int) -> int | None:
    """The telephone-event payload type at the codec's clock rate (RFC 4733 §7.1.1: linphone
    offers it at 48000, 16000 and 8000 in one m= line)."""
    return next((pt for pt, r in _audio_codecs(m)
                 if r.encoding.lower() == "telephone-event" and r.clock_rate == clock_rate), None)


def _remote_direction(sd: SessionDescription, m: MediaDescription) -> str:
    direction = sd.direction_of(m)
    connection = sd.connection_for(m)
    if connection is not None and connection.address == "0.0.0.0":
        return _NOT_RECEIVING.get(direction, direction)
    return direction


def _address(sd: SessionDescription, m: MediaDescription, who: str) -> str:
    connection = sd.connection_for(m)
    if connection is None:
        raise NegotiationFailed(f"the {who}'s audio stream has no c= address")
    if connection.nettype != "IN" or connection.addrtype not in ("IP4", "IP6"):
        raise NegotiationFailed(f"the {who}'s address is {connection.nettype} "
                                f"{connection.addrtype}, not IN IP4/IP6")
    return connection.address


def _rejected(m: MediaDescription) -> MediaDescription:
    # RFC 3264 §6: a rejected stream keeps its m= line with port 0 and its formats.
    return MediaDescription(m.media, 0, m.proto, m.formats)


def _first_g711(m: MediaDescription, offered: dict[int, RtpMap]) -> tuple[int, RtpMap] | None:
    """The first G.711 format of an answer; a payload type it lists without an rtpmap line is
    read with the offer's."""
    answered = m.rtpmaps()
    for f in m.formats:
        pt = int(f) if _NUMBER.match(f) else -1
        rtpmap = answered.get(pt) or offered.get(pt)
        if rtpmap is not None and _is_g711(rtpmap, set(CODECS)):
            return pt, rtpmap
    return None


def make_offer(addr: str, port: int, session_id: int, version: int,
               codecs: tuple[str, ...] = ("PCMU", "PCMA"), dtmf_pt: int | None = 101,
               ptime: int = 20, *, direction: str = "sendrecv") -> SessionDescription:
    """Our offer: one audio stream with ``codecs`` in preference order, telephone-event 0-15 at
    ``dtmf_pt`` (None: no RFC 4733), rtpmap lines even for the static types (RFC 3264 §5.1).
    ``ValueError`` for a codec we cannot do or an ``addr`` that is not an IP address."""
    unknown = [c for c in codecs if c.upper() not in CODECS]
    if not codecs or unknown:
        raise ValueError(f"codecs must be among {sorted(CODECS)}, got {list(codecs)}")
    if dtmf_pt is not None and not 96 <= dtmf_pt <= 127:
        raise ValueError("the telephone-event payload type must be dynamic (96-127)")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}")
    connection = Connection.for_address(addr)
    pts = [CODECS[c.upper()] for c in codecs]
    attributes = [Attribute("rtpmap", f"{CODECS[c.upper()]} {c.upper()}/8000") for c in codecs]
    if dtmf_pt is not None:
        pts.append(dtmf_pt)
        attributes += [Attribute("rtpmap", f"{dtmf_pt} telephone-event/8000"),
                       Attribute("fmtp", f"{dtmf_pt} 0-15")]
    attributes += [Attribute("ptime", str(ptime)), Attribute(direction)]
    origin = Origin("-", str(session_id), str(version), "IN", connection.addrtype, addr)
    audio = MediaDescription("audio", port, "RTP/AVP", tuple(map(str, pts)),
                             attributes=tuple(attributes))
    return SessionDescription(origin, "ars-engine", connection, media=(audio,))


def _accept(offer: SessionDescription, m: MediaDescription, index: int,
            wanted: list[str]) -> NegotiatedMedia | MediaRejected:
    if m.port == 0:
        return MediaRejected("the offer disabled the audio stream (port 0)")
    if m.proto.upper() != "RTP/AVP":
        return MediaRejected(f"transport {m.proto} is not supported (RTP/AVP only)")
    address = _address(offer, m, "offer")
    codecs = _audio_codecs(m)
    # RFC 3264 §6.1: the answerer picks; we take the offerer's first codec we support.
    chosen = next(((pt, r) for pt, r in codecs if _is_g711(r, set(wanted))), None)
    if chosen is None:
        offered = ", ".join(f"{r.encoding}/{r.clock_rate}" for _, r in codecs) or "none known"
        return MediaRejected(f"no common codec: offered {offered}; "
                             f"supported {', '.join(wanted)}")
    pt, rtpmap = chosen
    dtmf = _telephone_event(m, 8000)
    direction = _ANSWER_DIRECTION[_remote_direction(offer, m)]
    return NegotiatedMedia(address, m.port, m.rtcp_port or m.port + 1, rtpmap.encoding.upper(),
                           8000, pt, dtmf, dtmf, m.ptime or _DEFAULT_PTIME, direction, index)


def answer_offer(offer: SessionDescription, addr: str, port: int,
                 supported: tuple[str, ...] = ("PCMU", "PCMA"), *, session_id: int = 0,
                 version: int = 0, ptime: int = 20, telephone_event: bool = True,
                 ) -> tuple[SessionDescription, NegotiatedMedia | MediaRejected]:
    """Answer ``offer`` (UAS side, RFC 3264 §6): accept the first audio stream we can, with the
    offerer's first codec among ``supported`` and its telephone-event payload type, and the
    mirrored direction; reject every other stream (port 0). If no stream is accepted, the
    answer rejects them all and the result is :class:`MediaRejected` with the reason (the SIP
    layer then answers 488). ``telephone_event=False`` leaves RFC 4733 out of the answer, as a
    phone without it would (the offerer then listens for in-band tones). Raises
    :class:`NegotiationFailed` for an invalid offer, and ``ValueError`` if ``addr`` (ours) is
    not an IP address."""
    wanted = [c.upper() for c in supported]
    connection = Connection.for_address(addr)
    result: NegotiatedMedia | MediaRejected | None = None
    answered: list[MediaDescription] = []
    for index, m in enumerate(offer.media):
        if isinstance(result, NegotiatedMedia) or m.media != "audio":
            answered.append(_rejected(m))
            continue
        outcome = _accept(offer, m, index, wanted)
        if not telephone_event and isinstance(outcome, NegotiatedMedia):
            outcome = replace(outcome, dtmf_payload_type=None, dtmf_receive_payload_type=None)
        if isinstance(outcome, MediaRejected):
            result = result or outcome  # keep the first audio stream's reason
            answered.append(_rejected(m))
            continue
        result = outcome
        formats = [outcome.payload_type]
        attributes = [Attribute("rtpmap", f"{outcome.payload_type} {outcome.codec}/8000")]
        if outcome.dtmf_payload_type is not None:
            formats.append(outcome.dtmf_payload_type)
            attributes += [Attribute("rtpmap", f"{outcome.dtmf_payload_type} telephone-event/8000"),
                           Attribute("fmtp", f"{outcome.dtmf_payload_type} 0-15")]
        attributes += [Attribute("ptime", str(ptime)), Attribute(outcome.direction)]
        answered.append(MediaDescription("audio", port, m.proto, tuple(map(str, formats)),
                                         attributes=tuple(attributes)))
    origin = Origin("-", str(session_id), str(version), "IN", connection.addrtype, addr)
    # RFC 3264 §6: the answer's t= line equals the offer's.
    answer = SessionDescription(origin, "ars-engine", connection, offer.times, (), tuple(answered))
    return answer, result or MediaRejected("the offer has no audio stream")


def negotiate_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia:
    """Check ``answer`` against our ``offer`` (UAC side) and return the agreed audio stream.
    Raises :class:`NegotiationFailed` if the answer is not a valid answer to the offer (RFC 3264
    §6: m= lines, codecs, directions) or rejected our audio stream."""
    if len(answer.media) != len(offer.media):
        raise NegotiationFailed(f"the answer has {len(answer.media)} m= lines, the offer "
                                f"{len(offer.media)} (RFC 3264 §6: one for one)")
    for i, (o, a) in enumerate(zip(offer.media, answer.media, strict=True)):
        if a.media != o.media:
            raise NegotiationFailed(f"m= line {i} is {a.media} in the answer, {o.media} offered")
        if o.port == 0 and a.port != 0:
            raise NegotiationFailed(f"m= line {i} was disabled in the offer, not in the answer")
    index = next((i for i, m in enumerate(offer.media) if m.media == "audio" and m.port), None)
    if index is None:
        raise NegotiationFailed("the offer has no active audio stream")
    o, a = offer.media[index], answer.media[index]
    if a.port == 0:
        raise NegotiationFailed("the answer rejected the audio stream (port 0)")
    if a.proto != o.proto:
        raise NegotiationFailed(f"the answer's transport is {a.proto}, {o.proto} offered")
    address = _address(answer, a, "answer")
    offered = o.rtpmaps()
    chosen = _first_g711(a, offered)
    if chosen is None:
        raise NegotiationFailed(f"the answer names no codec we offered (formats "
                                f"{' '.join(a.formats)})")
    pt, rtpmap = chosen
    listed = offered.get(pt) if str(pt) in o.formats else None
    if listed is None or listed.encoding.upper() != rtpmap.encoding.upper():
        raise NegotiationFailed(f"the answer chose payload type {pt} ({rtpmap.encoding}), "
                                "which the offer did not list for that codec")
    offered_direction, answered_direction = offer.direction_of(o), answer.direction_of(a)
    if answered_direction not in _ALLOWED_ANSWERS[offered_direction]:
        raise NegotiationFailed(f"the answer says {answered_direction} to a "
                                f"{offered_direction} offer (RFC 3264 §6.1)")
    # A telephone-event answered but not offered is not used (we did not ask for it). RFC 3264
    # §6.1: the answer's numbers are what the answerer receives, so we send with its number.
    received_dtmf = _telephone_event(o, 8000)
    sent_dtmf = _telephone_event(a, 8000) if received_dtmf is not None else None
    if sent_dtmf is None:  # not answered: the answerer neither takes nor sends events
        received_dtmf = None
    direction = _ANSWER_DIRECTION[_remote_direction(answer, a)]
    return NegotiatedMedia(address, a.port, a.rtcp_port or a.port + 1, rtpmap.encoding.upper(),
                           rtpmap.clock_rate, pt, sent_dtmf, received_dtmf,
                           a.ptime or _DEFAULT_PTIME, direction, index)
