"""SIP message parsing speed: messages per CPU second for the messages a call setup handles.

A typical outbound INVITE (as the engine sends it to a trunk, with SDP) and the 200 OK with SDP
that answers it (compact headers, as some trunks send). Each is parsed from bytes, serialised,
and parsed with the typed headers a UA reads (top Via, From, To, CSeq, Contact). One call setup
parses about five messages (100 Trying, 180, 200, the ACK and BYE on the far side), so the
≥ 100 calls/s target of issue 4 needs a few hundred parses per second; the aim is ≥ 10,000/s.

    .venv/bin/python bench/bench_sip_parse.py [--number 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ars_engine.telephony.sip.headers import CSeq, NameAddr, Via  # noqa: E402
from ars_engine.telephony.sip.message import SipMessage, parse_message  # noqa: E402

TARGET = 10_000.0  # messages/s

SDP = (b"v=0\r\no=ars 3724394421 3724394421 IN IP4 10.0.0.5\r\ns=ars-engine\r\n"
       b"c=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8 101\r\n"
       b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
       b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n")

INVITE = (
    b"INVITE sip:01012345678@trunk.example.net:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-524287-1---a1f3c9e2b7d4;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"Contact: <sip:ars@10.0.0.5:5062;transport=udp>\r\n"
    b"To: <sip:01012345678@trunk.example.net>\r\n"
    b"From: \"ARS\" <sip:0212345678@trunk.example.net>;tag=4f8a2c91\r\n"
    b"Call-ID: 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"User-Agent: ars-engine/0.1\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"v: SIP/2.0/UDP 10.0.0.5:5062;branch=z9hG4bK-524287-1---a1f3c9e2b7d4;rport=5062;"
    b"received=10.0.0.5\r\n"
    b"Record-Route: <sip:192.0.2.10;lr>\r\n"
    b"m: <sip:01012345678@192.0.2.44:5060>\r\n"
    b"t: <sip:01012345678@trunk.example.net>;tag=as5f1e6d2b\r\n"
    b"f: \"ARS\" <sip:0212345678@trunk.example.net>;tag=4f8a2c91\r\n"
    b"i: 9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Server: Asterisk PBX 20.5.0\r\n"
    b"Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, SUBSCRIBE, NOTIFY, INFO\r\n"
    b"Supported: replaces, timer\r\n"
    b"c: application/sdp\r\n"
    b"l: " + str(len(SDP)).encode() + b"\r\n\r\n" + SDP)


def typed(data: bytes) -> SipMessage:
    """Parse and read the headers a UA needs for a dialog."""
    msg = parse_message(data)
    Via.parse(msg.get("Via") or "")
    NameAddr.parse(msg.get("From") or "")
    NameAddr.parse(msg.get("To") or "")
    CSeq.parse(msg.get("CSeq") or "")
    NameAddr.parse(msg.get("Contact") or "")
    return msg


def rate(fn: Callable[[], object], number: int) -> float:
    """Calls per CPU second."""
    start = time.process_time()
    for _ in range(number):
        fn()
    return number / (time.process_time() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (median reported)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    print(f"# SIP parse benchmark  {time.strftime('%Y-%m-%d')}  Python "
          f"{platform.python_version()}  {platform.machine()}  pinned to 1 core")
    print(f"# {args.number:,} calls per run, median of {args.repeat}; target ≥ {TARGET:,.0f} "
          f"messages/s")
    print(f"{'case':<46} {'messages/s':>12} {'min':>10} {'max':>10} {'µs/message':>11}")
    for name, data in (("INVITE + SDP", INVITE), ("200 OK + SDP (compact)", OK_200)):
        message = parse_message(data)
        cases: list[tuple[str, Callable[[], object]]] = [
            (f"{name}: parse", lambda d=data: parse_message(d)),
            (f"{name}: bytes()", lambda m=message: bytes(m)),
            (f"{name}: parse + typed headers", lambda d=data: typed(d)),
        ]
        for label, fn in cases:
            rate(fn, args.number // 10)  # warm-up
            rates = [rate(fn, args.number) for _ in range(args.repeat)]
            median = statistics.median(rates)
            print(f"{label:<46} {median:>12,.0f} {min(rates):>10,.0f} {max(rates):>10,.0f} "
                  f"{1e6 / median:>11.1f}")


if __name__ == "__main__":
    main()
