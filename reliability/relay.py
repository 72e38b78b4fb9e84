"""A lossy UDP relay between engines and one QA softphone, for SIP and the RTP of each call.

The engine dials the relay's engine-side SIP address instead of the phone's. The relay forwards
each datagram after rewriting the addresses it carries (the engine's and the phone's
``127.0.0.1:port`` in Via/Contact/Request-URI, and each SDP ``m=audio`` port) so that every later
packet also passes through it: the ACK and BYE of either side, and both RTP directions of each
call, on a pair of sockets per media stream. Every forwarded datagram goes through
:class:`Impairment`: dropped, duplicated or delayed (so reordered) at random, with a seed.

Only loopback is relayed (everything in the reliability suite runs on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"
_CALL_ID = re.compile(rb"^(?:Call-ID|i)[ \t]*:[ \t]*(\S+)", re.I | re.M)
_M_AUDIO = re.compile(rb"^m=audio (\d+)", re.M)
_LENGTH = re.compile(rb"^(Content-Length|l)[ \t]*:[ \t]*\d+", re.I | re.M)


@dataclass
class Impairment:
    """What happens to a forwarded datagram: ``drop``, ``duplicate`` and ``reorder`` are
    probabilities; a reordered datagram is held ``delay`` seconds (a later one overtakes it)."""

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    delay: tuple[float, float] = (0.02, 0.06)
    seed: int = 1
    counts: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)

    def send(self, kind: str, transport: asyncio.DatagramTransport, data: bytes,
             to: tuple[str, int]) -> None:
        """Forward ``data`` to ``to`` as impaired; ``kind`` (sip, rtp) names the counters."""
        r = self.random
        self.counts[f"{kind}_in"] += 1
        if r.random() < self.drop:
            self.counts[f"{kind}_dropped"] += 1
            return
        copies = 2 if r.random() < self.duplicate else 1
        self.counts[f"{kind}_duplicated"] += copies - 1
        if r.random() < self.reorder:
            self.counts[f"{kind}_reordered"] += 1
            loop = asyncio.get_running_loop()
            loop.call_later(r.uniform(*self.delay), _send_copies, transport, data, to, copies)
            return
        _send_copies(transport, data, to, copies)


def _send_copies(transport: asyncio.DatagramTransport, data: bytes, to: tuple[str, int],
                 copies: int) -> None:
    if not transport.is_closing():
        for _ in range(copies):
            transport.sendto(data, to)


OnDatagram = Callable[[bytes, tuple[str, int]], None]


class _Socket(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: OnDatagram) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.on_datagram(data, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


async def _open(on_datagram: OnDatagram) -> _Socket:
    loop = asyncio.get_running_loop()
    _transport, protocol = await loop.create_datagram_endpoint(
        lambda: _Socket(on_datagram), local_addr=(HOST, 0))
    return protocol


@dataclass
class _Media:
    """One RTP stream's two relay sockets: engine-facing and phone-facing."""

    engine_side: _Socket
    phone_side: _Socket
    engine_port: int | None = None  # where the engine receives this stream
    phone_port: int | None = None  # where the phone receives it


def _swap_address(data: bytes, old: int, new: int) -> bytes:
    return re.sub(rb"127\.0\.0\.1:" + str(old).encode() + rb"(?!\d)",
                  b"127.0.0.1:" + str(new).encode(), data)


def _fix_length(message: bytes) -> bytes:
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep:
        return message
    head = _LENGTH.sub(lambda m: m.group(1) + b": " + str(len(body)).encode(), head)
    return head + sep + body


class LossyRelay:
    """Relays one softphone at ``phone`` (its SIP address) for any number of engines.
    ``await relay.start()``; dial ``relay.address``; ``await relay.close()``."""

    def __init__(self, phone: tuple[str, int], impairment: Impairment) -> None:
        self.phone = phone
        self.impairment = impairment
        self._engine_side: _Socket | None = None
        self._phone_side: _Socket | None = None
        self._engines: dict[bytes, tuple[str, int]] = {}  # Call-ID → engine's SIP address
        self._media: dict[bytes, _Media] = {}  # Call-ID → its RTP relay
        self._pending: set[asyncio.Task[None]] = set()
        self._media_lock = asyncio.Lock()

    @property
    def address(self) -> tuple[str, int]:
        assert self._engine_side is not None
        return HOST, self._engine_side.port

    async def start(self) -> None:
        self._engine_side = await _open(self._from_engine)
        self._phone_side = await _open(self._from_phone)

    async def close(self) -> None:
        for pending in list(self._pending):
            await pending
        sockets = [self._engine_side, self._phone_side]
        for media in self._media.values():
            sockets += [media.engine_side, media.phone_side]
        for sock in sockets:
            if sock is not None and sock.transport is not None:
                sock.transport.close()
        self._media.clear()

    # -- SIP ----------------------------------------------------------------------------------

    def _from_engine(self, data: bytes, source: tuple[str, int]) -> None:
        call_id = _call_id(data)
        if call_id is None:
            return
        self._engines.setdefault(call_id, source)
        self._spawn(self._forward(data, call_id, source, to_phone=True))

    def _from_phone(self, data: bytes, _source: tuple[str, int]) -> None:
        call_id = _call_id(data)
        engine = self._engines.get(call_id) if call_id else None
        if call_id is None or engine is None:
            return
        self._spawn(self._forward(data, call_id, engine, to_phone=False))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _forward(self, data: bytes, call_id: bytes, engine: tuple[str, int], *,
                       to_phone: bool) -> None:
        """Rewrite the addresses ``data`` carries for the other side, give its SDP stream a
        relay socket pair, and send it on through the impairment."""
        assert self._engine_side is not None and self._phone_side is not None
        engine_side, phone_side = self._engine_side.port, self._phone_side.port
        # (old, new) ports of 127.0.0.1: what one side calls the other, seen from this side
        swaps = (((engine[1], phone_side), (engine_side, self.phone[1])) if to_phone else
                 ((phone_side, engine[1]), (self.phone[1], engine_side)))
        for old, new in swaps:
            data = _swap_address(data, old, new)
        found = _M_AUDIO.search(data)
        if found:
            media = await self._media_for(call_id)
            if to_phone:
                media.engine_port, relay_port = int(found.group(1)), media.phone_side.port
            else:
                media.phone_port, relay_port = int(found.group(1)), media.engine_side.port
            data = _M_AUDIO.sub(b"m=audio " + str(relay_port).encode(), data, count=1)
            data = _fix_length(data)
        out = self._phone_side if to_phone else self._engine_side
        assert out.transport is not None
        self.impairment.send("sip", out.transport, data, self.phone if to_phone else engine)

    # -- RTP ----------------------------------------------------------------------------------

    async def _media_for(self, call_id: bytes) -> _Media:
        async with self._media_lock:  # one pair per call, whichever side's SDP comes first
            media = self._media.get(call_id)
            if media is None:
                holder: list[_Media] = []
                engine_side = await _open(lambda d, _a: self._rtp(holder[0], d, to_phone=True))
                phone_side = await _open(lambda d, _a: self._rtp(holder[0], d,
                                                                 to_phone=False))
                media = self._media[call_id] = _Media(engine_side, phone_side)
                holder.append(media)
            return media

    def _rtp(self, media: _Media, data: bytes, *, to_phone: bool) -> None:
        port = media.phone_port if to_phone else media.engine_port
        out = media.phone_side if to_phone else media.engine_side
        if port is not None and out.transport is not None:
            self.impairment.send("rtp", out.transport, data, (HOST, port))


def _call_id(data: bytes) -> bytes | None:
    found = _CALL_ID.search(data)
    return found.group(1) if found else None
