"""The lossy relay's pieces: address rewriting, Content-Length repair, and the impairment's
drop / duplicate / delay on real loopback sockets."""

from __future__ import annotations

import asyncio

from reliability.relay import Impairment, _fix_length, _swap_address


def test_an_address_is_swapped_only_where_the_port_matches_exactly() -> None:
    text = b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z\r\nContact: <sip:a@127.0.0.1:50601>\r\n"
    swapped = _swap_address(text, 5060, 7000)
    assert b"127.0.0.1:7000;branch" in swapped and b"127.0.0.1:50601" in swapped


def test_the_content_length_follows_a_rewritten_body() -> None:
    message = (b"SIP/2.0 200 OK\r\nContent-Length: 3\r\n\r\n"
               b"v=0\r\nm=audio 40000 RTP/AVP 0\r\n")
    fixed = _fix_length(message)
    head, _, body = fixed.partition(b"\r\n\r\n")
    assert head.endswith(f"Content-Length: {len(body)}".encode())
    compact = _fix_length(b"INVITE sip:x SIP/2.0\r\nl: 99\r\n\r\nabc")
    assert compact.endswith(b"l: 3\r\n\r\nabc")


class _Sink(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.got.put_nowait(data)


async def _pair() -> tuple[asyncio.DatagramTransport, _Sink, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    sink_transport, sink = await loop.create_datagram_endpoint(
        _Sink, local_addr=("127.0.0.1", 0))
    out, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                 local_addr=("127.0.0.1", 0))
    return out, sink, sink_transport.get_extra_info("sockname")  # type: ignore[return-value]


async def test_duplicates_and_drops_are_applied_and_counted() -> None:
    out, sink, to = await _pair()
    twice = Impairment(duplicate=1.0)
    twice.send("rtp", out, b"one", to)
    assert [await sink.got.get(), await sink.got.get()] == [b"one", b"one"]
    dropping = Impairment(drop=1.0)
    dropping.send("rtp", out, b"lost", to)
    twice.send("sip", out, b"marker", to)  # what arrives next is not the dropped one
    assert await sink.got.get() == b"marker"
    assert dropping.counts["rtp_dropped"] == 1 and twice.counts["rtp_duplicated"] == 1
    out.close()


async def test_a_delayed_datagram_is_overtaken_by_the_next_one() -> None:
    out, sink, to = await _pair()
    late = Impairment(reorder=1.0, delay=(0.05, 0.05))
    late.send("rtp", out, b"first", to)
    Impairment().send("rtp", out, b"second", to)
    assert [await sink.got.get(), await sink.got.get()] == [b"second", b"first"]
    assert late.counts["rtp_reordered"] == 1
    out.close()
