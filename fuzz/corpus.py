"""Seed corpora, built at run time from what the repository records (nothing binary committed).

* SIP: the 49 RFC 4475 torture messages (tests/transcripts/sip/rfc4475), the SIP messages of
  the SIPp logs recorded with Asterisk 22 (../shared/asterisk/transcripts/sipp, when present), an
  INVITE carrying each SDP sample, and a Digest 401 / REGISTER pair made by our own code.
* SDP: tests/transcripts/sdp, the SDP bodies of the SIP seeds, our offers and answers.
* AMI / AGI: the byte-exact Asterisk 22 transcripts (``*.rx.bin``) from
  ../shared/asterisk/transcripts and the in-repo copy tests/transcripts/asterisk (either
  suffices: the in-repo copy is used when ../shared is absent), cut into windows of whole
  messages that fit the target's ``max_len``.
* RTP: packets our RTP and RFC 4733 code builds (G.711 audio, CSRC, header extension, padding,
  a key press of telephone-events).
* Scenario: scenarios/*.yaml and the YAML examples of docs/scenarios.md.

Seeds are deduplicated and never longer than the target's ``max_len`` (libFuzzer would cut them).
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRANSCRIPTS = ROOT / "tests" / "transcripts"
SHARED = ROOT.parent / "shared" / "asterisk" / "transcripts"
AMI_BANNER = b"Asterisk Call Manager/11.0.0\r\n"

__all__ = ["SHARED", "seeds", "write_seeds"]


def _files(*patterns: tuple[Path, str]) -> list[bytes]:
    return [path.read_bytes() for base, pattern in patterns for path in sorted(base.glob(pattern))]


def _asterisk_dirs(shared: Path | None) -> list[Path]:
    dirs = [TRANSCRIPTS / "asterisk"]
    if shared is not None and (shared / "README.md").is_file():
        dirs.insert(0, shared)
    return dirs


def _windows(blocks: list[bytes], limit: int, head: bytes = b"") -> Iterator[bytes]:
    """Runs of consecutive ``blocks`` after ``head``, each at most ``limit`` bytes."""
    window = head
    for block in blocks:
        if len(window) + len(block) > limit and window != head:
            yield window
            window = head
        window += block
    if window != head:
        yield window


# -- SIP -------------------------------------------------------------------------------------------
_SIPP_ENTRY = re.compile(rb"UDP message (?:received \[|sent \()(\d+)[\])] bytes ?:\n\n")


def _sipp_messages(shared: Path | None) -> list[bytes]:
    """The SIP messages SIPp logged (``-trace_msg``): a header line giving the size, an empty
    line, then the exact bytes."""
    messages: list[bytes] = []
    if shared is None:
        return messages
    for log in sorted((shared / "sipp").glob("*_messages.log")):
        text = log.read_bytes()
        for m in _SIPP_ENTRY.finditer(text):
            messages.append(text[m.end():m.end() + int(m[1])])
    return messages


def _our_sip() -> list[bytes]:
    from ars_engine.telephony.sip.digest import DigestChallenge, authorization
    from ars_engine.telephony.sip.message import SipRequest, SipResponse

    common = (("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport"),
              ("Max-Forwards", "70"), ("From", '"ARS" <sip:ars@192.0.2.1>;tag=1928301774'),
              ("To", "<sip:callee@192.0.2.2>"), ("Call-ID", "a84b4c76e66710@192.0.2.1"))
    out = []
    for sdp in _files((TRANSCRIPTS / "sdp", "*.sdp")):
        out.append(bytes(SipRequest("INVITE", "sip:callee@192.0.2.2", (
            *common, ("CSeq", "314159 INVITE"), ("Contact", "<sip:ars@192.0.2.1:5060>"),
            ("Content-Type", "application/sdp")), sdp)))
    for algorithm, qop in (("MD5", ("auth",)), ("SHA-256", ("auth", "auth-int")),
                           ("MD5-sess", ()), ("SHA-512-256", ("auth",))):
        challenge = DigestChallenge("asterisk", "5f7b3a1c", algorithm, qop, "0pq", False)
        qop_text = f', qop="{",".join(qop)}"' if qop else ""
        out.append(bytes(SipResponse(401, "Unauthorized", (
            *common, ("CSeq", "1 REGISTER"), ("WWW-Authenticate",
                                                f'Digest realm="asterisk", nonce="5f7b3a1c", '
                                                f'opaque="0pq", algorithm={algorithm}{qop_text}'),
        ))))
        out.append(bytes(SipRequest("REGISTER", "sip:192.0.2.2", (
            *common, ("CSeq", "2 REGISTER"), ("Authorization", authorization(
                challenge, "REGISTER", "sip:192.0.2.2", "ars", "secret", cnonce="0a4f113b"))))))
    return out


def _sip(shared: Path | None) -> list[bytes]:
    return [*_files((TRANSCRIPTS / "sip" / "rfc4475", "*.sip")), *_sipp_messages(shared),
            *_our_sip()]


def _sip_stream(shared: Path | None) -> list[bytes]:
    from ars_engine.errors import ProtocolError
    from ars_engine.telephony.sip.message import parse_message

    framed = []
    for data in _sip(shared):
        try:
            if bytes(parse_message(data)) == data:  # canonical: exact Content-Length, no rest
                framed.append(data)
        except ProtocolError:
            pass
    pairs = [a + b"\r\n\r\n" + b for a, b in zip(framed, [*framed[1:], framed[0]], strict=True)]
    return [*_sip(shared), *pairs, b"".join(_sipp_messages(shared))]


def _sip_headers(shared: Path | None) -> list[bytes]:
    values = []
    for data in _sip(shared):
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        values.append(head[0].split(b" ")[1] if head[0].count(b" ") >= 2 else head[0])
        values += [line.partition(b":")[2].strip() for line in head[1:] if b":" in line]
    return values


# -- SDP, RTP --------------------------------------------------------------------------------------
def _sdp(shared: Path | None) -> list[bytes]:
    from ars_engine.errors import ProtocolError
    from ars_engine.telephony.sip.message import parse_message
    from ars_engine.telephony.sip.sdp import SessionDescription, answer_offer, make_offer

    out = _files((TRANSCRIPTS / "sdp", "*.sdp"))
    for data in _sip(shared):
        try:
            message = parse_message(data)
        except ProtocolError:
            continue
        if (message.get("Content-Type") or "").lower().startswith("application/sdp"):
            out.append(message.body)
    offers = [make_offer("192.0.2.1", 40000, 1, 1),
              make_offer("2001:db8::1", 40002, 2, 3, ("PCMA",), 96, 30, direction="sendonly"),
              make_offer("192.0.2.1", 40004, 3, 1, ("PCMU",), None)]
    out += [bytes(offer) for offer in offers]
    for sample in _files((TRANSCRIPTS / "sdp", "*offer.sdp")):
        answer, _ = answer_offer(SessionDescription.parse(sample), "192.0.2.9", 4000)
        out.append(bytes(answer))
    return out


def _length_prefixed(datagrams: Iterable[bytes]) -> bytes:
    return b"".join(bytes([len(d)]) + d for d in datagrams)


def _rtp(shared: Path | None) -> list[bytes]:
    from ars_engine.telephony.rtp.packet import RtpHeaderExtension, RtpPacket
    from ars_engine.telephony.rtp.rfc4733 import DtmfSender

    audio = [bytes(RtpPacket(0, 1000 + i, 160 * i, 0x1234ABCD, bytes([0xFF - i]) * 160, i == 0))
             for i in range(3)]
    odd = [bytes(RtpPacket(8, 65535, 2**32 - 160, 7, b"\xd5" * 80, csrc=(1, 2, 3))),
           bytes(RtpPacket(0, 7, 800, 7, b"\x7f" * 20,
                           extension=RtpHeaderExtension(0xBEDE, b"\x10\xff\x00\x00"),
                           padding_size=4))]
    sender = DtmfSender()
    press = [bytes(p.rtp(101, 1003 + i, 0x1234ABCD))
             for i, p in enumerate(sender.packets("5", 480))]
    star = [bytes(p.rtp(101, 2000 + i, 99)) for i, p in enumerate(sender.packets("*", 9000))]
    return [*audio, *odd, *press, _length_prefixed([*audio, *press, audio[0]]),
            _length_prefixed(press[:2] + star[:1] + press[2:] + star[1:]),
            _length_prefixed(press[:3]), _length_prefixed(odd)]


# -- AMI, AGI, scenario ----------------------------------------------------------------------------
def _ami(shared: Path | None) -> list[bytes]:
    out: list[bytes] = []
    for base in _asterisk_dirs(shared):
        for name in ("ami_*.rx.bin", "ami_*.tx.bin"):
            for data in _files((base, name)):
                if data.startswith(AMI_BANNER):
                    data = data[len(AMI_BANNER):]
                blocks = [block + b"\r\n\r\n" for block in data.split(b"\r\n\r\n") if block]
                out += _windows(blocks, 2048, AMI_BANNER)
                out += blocks[:12]  # single messages and actions: Action.parse
    return out


def _agi(shared: Path | None) -> list[bytes]:
    out = []
    for base in _asterisk_dirs(shared):
        for data in _files((base, "agi_*.rx.bin")):
            out.append(data)
            env, _, replies = data.partition(b"\n\n")
            lines = re.findall(rb"[^\n]*\n", replies)
            out += _windows(lines, 512, env + b"\n\n")
    return out


def _scenario(shared: Path | None) -> list[bytes]:
    docs = (ROOT / "docs" / "scenarios.md").read_text(encoding="utf-8")
    examples = re.findall(r"```yaml\n(.*?)```", docs, re.S)
    return [*_files((ROOT / "scenarios", "*.yaml")), *(e.encode() for e in examples)]


_BUILDERS: dict[str, Callable[[Path | None], list[bytes]]] = {
    "sip": _sip, "sip_stream": _sip_stream, "sip_headers": _sip_headers, "sdp": _sdp,
    "rtp": _rtp, "ami": _ami, "agi": _agi, "scenario": _scenario,
}


def seeds(target: str, shared: Path | None = SHARED) -> list[bytes]:
    """The seed inputs of ``target``: deduplicated, in a stable order, none over its max_len.
    ``shared`` is the shared Asterisk transcripts directory (None or absent: in-repo only)."""
    from .targets import TARGETS

    limit = TARGETS[target].max_len
    unique = {data: None for data in _BUILDERS[target](shared) if 0 < len(data) <= limit}
    return list(unique)


def write_seeds(target: str, directory: Path, shared: Path | None = SHARED) -> int:
    """Replace ``directory`` with one file per seed (named by content hash); return the count."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    found = seeds(target, shared)
    for data in found:
        (directory / f"seed-{hashlib.sha1(data).hexdigest()}").write_bytes(data)
    return len(found)
