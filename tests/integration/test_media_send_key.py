"""MediaSession.send_key between two RTP sessions on loopback: RFC 4733 and in-band keys arrive,
in order, in the sender's one stream."""

from __future__ import annotations

import asyncio

import pytest

from ars_engine.telephony.rtp.media import MediaSession
from ars_engine.telephony.sip.sdp import NegotiatedMedia

pytestmark = pytest.mark.integration


def media_to(port: int, *, dtmf: int | None) -> NegotiatedMedia:
    return NegotiatedMedia("127.0.0.1", port, port + 1, "PCMU", 8000, 0, dtmf, dtmf, 20,
                           "sendrecv")


@pytest.mark.parametrize(("method", "dtmf"), [("rfc4733", 101), ("inband", None),
                                              ("rfc4733", None)])
async def test_keys_sent_arrive_in_order(method: str, dtmf: int | None) -> None:
    sender, receiver = await MediaSession.open("127.0.0.1"), await MediaSession.open("127.0.0.1")
    try:
        sender.configure(media_to(receiver.port, dtmf=dtmf))
        receiver.configure(media_to(sender.port, dtmf=dtmf))
        sender.start()
        receiver.start()
        used = []
        async with asyncio.timeout(10):
            for key in "19#":
                used.append(await sender.send_key(key, method=method,  # type: ignore[arg-type]
                                                  duration_ms=100))
                # 100 ms of silence on the line between presses (in-band tones need a gap)
                await sender.play(bytes(1600), barge_in=False)
            got = [(await receiver.keys.get())[0] for _ in range(3)]
        assert got == list("19#")
        assert used == ["rfc4733" if dtmf else "inband"] * 3  # no telephone-event: in-band
        stats = receiver.receiver.stats
        assert stats.lost == 0 and stats.duplicates == 0  # one sequence space, no gap
    finally:
        await sender.close()
        await receiver.close()


async def test_send_key_refuses_a_non_key_without_showing_it() -> None:
    session = await MediaSession.open("127.0.0.1")
    try:
        session.configure(media_to(9, dtmf=101))
        session.start()
        with pytest.raises(ValueError) as info:
            await session.send_key("Z")
        assert "Z" not in str(info.value)
    finally:
        await session.close()


async def test_a_peer_that_stops_sending_ends_its_prompt() -> None:
    """A PBX between prompts may send no RTP at all (Asterisk waiting for a digit): the
    listener's prompt-end detector counts the missing audio as silence."""
    import numpy as np

    peer, listener = await MediaSession.open("127.0.0.1"), await MediaSession.open("127.0.0.1")
    peer_socket = peer._sock
    try:
        peer.configure(media_to(listener.port, dtmf=101))
        listener.configure(media_to(peer.port, dtmf=101))
        listener.detect_prompt_ends()
        listener.start()
        peer.start()
        tone = (np.sin(np.arange(8000) * 0.3) * 8000).astype("<i2").tobytes()  # 1 s of prompt
        await peer.play(tone, barge_in=False)
        peer._sock = None  # the peer goes quiet: its stream keeps its schedule, sends nothing
        async with asyncio.timeout(5):
            at = await listener.wait_prompt_end(1)
        assert listener.prompt_ends == [at]
    finally:
        peer._sock = peer_socket
        await peer.close()
        await listener.close()
