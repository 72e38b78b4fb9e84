"""A loopback capture of the SIP traffic of one UDP port, for timing call setups on the wire.

Two different callers (the engine and SIPp) have to be timed the same way, and SIPp 3.6 times
its own calls with a millisecond clock. So a third process watches the wire instead: a Linux
packet socket on ``lo`` with a classic BPF filter (``udp`` and the callee's port, IPv4) keeps
only that port's datagrams in the kernel, and every datagram is stamped with the kernel's time
(SO_TIMESTAMPNS). :func:`setups` then pairs each call's INVITE, the 200 OK to it and the ACK by
Call-ID. Needs root (CAP_NET_RAW), as the benchmarks run here.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import socket
import struct
from dataclasses import dataclass
from multiprocessing.synchronize import Event

ETH_P_ALL = 0x0003
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PACKET_OUTGOING = 4  # on lo every datagram is seen leaving and arriving: keep the arrival


def udp_port_filter(port: int) -> list[tuple[int, int, int, int]]:
    """Classic BPF for "ip and udp and not a fragment and (src port or dst port is ``port``)"
    on an Ethernet-framed interface (lo is one): ``tcpdump -dd 'udp port N'`` minus IPv6."""
    return [
        (0x28, 0, 0, 12),          # ldh [12]            ethertype
        (0x15, 0, 10, 0x0800),     # jeq IPv4 ? next : drop
        (0x30, 0, 0, 23),          # ldb [23]            IP protocol
        (0x15, 0, 8, 17),          # jeq UDP ? next : drop
        (0x28, 0, 0, 20),          # ldh [20]            flags + fragment offset
        (0x45, 6, 0, 0x1FFF),      # jset offset ? drop : next
        (0xB1, 0, 0, 14),          # ldxb 4*([14]&0xf)   IP header length
        (0x48, 0, 0, 14),          # ldh [x+14]          source port
        (0x15, 2, 0, port),        # jeq port ? keep : next
        (0x48, 0, 0, 16),          # ldh [x+16]          destination port
        (0x15, 0, 1, port),        # jeq port ? keep : drop
        (0x06, 0, 0, 0x40000),     # keep (whole datagram)
        (0x06, 0, 0, 0),           # drop
    ]


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    blob = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buffer = ctypes.create_string_buffer(blob)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _capture(port: int, ready: Event, stop: Event,
             out: mp.Queue[list[tuple[float, int, int, bytes]]]) -> None:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    _attach(sock, udp_port_filter(port))
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024 * 1024)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.settimeout(0.2)
    ready.set()
    seen: list[tuple[float, int, int, bytes]] = []
    while not stop.is_set():
        try:
            frame, ancdata, _, address = sock.recvmsg(65536, 256)
        except TimeoutError:
            continue
        if address[2] == PACKET_OUTGOING:
            continue
        stamp = 0.0
        for level, kind, value in ancdata:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", value[:16])
                stamp = sec + nsec * 1e-9
        ihl = (frame[14] & 0x0F) * 4
        src, dst = struct.unpack_from("!HH", frame, 14 + ihl)
        seen.append((stamp, src, dst, frame[14 + ihl + 8:]))
    sock.close()
    out.put(seen)


def capture_problem() -> str | None:
    """Why a loopback capture cannot run here (None when it can)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)).close()
    except (AttributeError, OSError) as exc:  # no AF_PACKET (not Linux), or no CAP_NET_RAW
        return f"no packet socket ({exc}): run as root or give python CAP_NET_RAW"
    return None


class SipCapture:
    """``with SipCapture(port) as cap: ...`` then ``cap.datagrams``: (kernel time, source port,
    destination port, SIP bytes) of every datagram to or from ``port`` on loopback."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.datagrams: list[tuple[float, int, int, bytes]] = []

    def __enter__(self) -> SipCapture:
        self._ready, self._stop = mp.Event(), mp.Event()
        self._out: mp.Queue[list[tuple[float, int, int, bytes]]] = mp.Queue()
        self._process = mp.Process(target=_capture,
                                   args=(self.port, self._ready, self._stop, self._out))
        self._process.start()
        if not self._ready.wait(10):
            raise RuntimeError("the SIP capture did not start (it needs CAP_NET_RAW)")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.datagrams = self._out.get(timeout=60)
        self._process.join(10)


@dataclass(frozen=True, slots=True)
class Setup:
    """One call's setup on the wire, kernel times: INVITE sent, 200 OK sent, ACK sent."""

    invite: float
    ok: float | None
    ack: float | None


def _first_line_and(data: bytes, names: tuple[bytes, ...]) -> tuple[bytes, dict[bytes, bytes]]:
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    found: dict[bytes, bytes] = {}
    for line in head[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key in names and key not in found:
            found[key] = value.strip()
    return head[0], found


def setups(datagrams: list[tuple[float, int, int, bytes]], callee_port: int) -> list[Setup]:
    """Each call's INVITE → 200 → ACK as seen at the callee's port (first copies only: a
    retransmission does not move a time)."""
    calls: dict[bytes, dict[str, float]] = {}
    for stamp, src, dst, data in datagrams:
        first, headers = _first_line_and(data, (b"call-id", b"i", b"cseq"))
        call_id = headers.get(b"call-id") or headers.get(b"i")
        cseq = headers.get(b"cseq", b"")
        if call_id is None:
            continue
        times = calls.setdefault(call_id, {})
        if dst == callee_port and first.startswith(b"INVITE "):
            times.setdefault("invite", stamp)
        elif dst == callee_port and first.startswith(b"ACK "):
            times.setdefault("ack", stamp)
        elif src == callee_port and first.startswith(b"SIP/2.0 200") and cseq.endswith(b"INVITE"):
            times.setdefault("ok", stamp)
    return [Setup(t["invite"], t.get("ok"), t.get("ack"))
            for t in calls.values() if "invite" in t]
