"""The AMI client against a real Asterisk 22 (tests/integration/asterisk_peer.py).

Calls go to Local channels whose far half runs a test context (callee, callee-busy…); the
originated half runs ``Application: Wait`` instead of the FastAGI scenario, so no AGI server
is needed. Each test starts its own Asterisk (~0.4 s) on free ports.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from asterisk_peer import AsteriskPeer

from ars_engine.telephony.ami import Action, Response
from ars_engine.telephony.ami.client import (
    AmiAuthenticationError,
    AmiClient,
    AmiSettings,
    AmiState,
    OriginateStatus,
)
from ars_engine.telephony.outcomes import Outcome

pytestmark = pytest.mark.integration

WAIT = 10.0  # seconds: a bound on what must happen; exceeding it fails the test


def settings(peer: AsteriskPeer, **kw: object) -> AmiSettings:
    base: dict[str, object] = {"host": peer.ami_host, "port": peer.ami_port,
                               "username": peer.ami_user, "secret": peer.ami_secret,
                               "reconnect_min": 0.05, "reconnect_max": 0.5,
                               "ping_interval": 0.5, "ping_timeout": 2.0}
    base.update(kw)
    return AmiSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
async def ami(asterisk_peer: AsteriskPeer) -> AsyncIterator[AmiClient]:
    async with AmiClient(settings(asterisk_peer)) as client:
        yield client


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_login_ping_and_command(asterisk_peer: AsteriskPeer, auth: str) -> None:
    async with AmiClient(settings(asterisk_peer, auth=auth)) as client:
        assert client.state is AmiState.CONNECTED
        assert client.banner is not None and client.banner.version == "11.0.0"
        await client.ping()
        version = await client.command("core show version")
        assert version[0].startswith("Asterisk GIT-22") or version[0].startswith("Asterisk 22")
    assert client.state is AmiState.CLOSED


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_bad_login_is_refused_with_a_precise_error(asterisk_peer: AsteriskPeer,
                                                          auth: str) -> None:
    started = time.monotonic()
    with pytest.raises(AmiAuthenticationError) as caught:
        await AmiClient(settings(asterisk_peer, auth=auth, secret="wrong-secret")).connect()
    message = str(caught.value)
    assert f"{asterisk_peer.ami_host}:{asterisk_peer.ami_port}" in message
    assert "Authentication failed" in message and "wrong-secret" not in message
    assert time.monotonic() - started >= 0.9  # Asterisk answers a bad login after ~1 s


@pytest.mark.parametrize(("context", "reason", "cause", "outcome"), [
    # Busy(): Reason 5; the originated ;1 half hangs up with cause 0 (only ;2 has 17)
    ("callee-busy", 5, 0, Outcome.BUSY),
    # Hangup(21): Reason 0, cause 21 on both halves
    ("callee-reject", 0, 21, Outcome.REJECTED),
    # Congestion(): Reason 8; ;1 has cause 0 (;2 has 34)
    ("callee-congestion", 8, 0, Outcome.NETWORK_ERROR),
])
async def test_originate_to_a_refusing_far_end_maps_to_its_outcome(
        ami: AmiClient, context: str, reason: int, cause: int, outcome: Outcome) -> None:
    handle = await ami.originate(f"Local/s@{context}", application="Wait", data="1",
                                 ring_timeout=5)
    result = await handle.result()
    assert (result.status, result.reason, result.hangup_cause) == (
        OriginateStatus.FAILURE, reason, cause)
    assert result.outcome is outcome


async def test_callee_hangup_ends_an_answered_call_after_its_delay(ami: AmiClient) -> None:
    handle = await ami.originate("Local/s@callee-hangup", application="Wait", data="10",
                                 variables={"__HANGUP_DELAY": "0.2"})
    assert (await handle.result()).outcome is Outcome.ANSWERED
    async with asyncio.timeout(WAIT):
        hangup = await handle.wait_hangup()
    assert hangup is not None and hangup.cause == 16  # normal clearing, from the far end


async def test_originate_ringing_past_its_timeout_is_no_answer(ami: AmiClient) -> None:
    started = time.monotonic()
    handle = await ami.originate("Local/s@callee-noanswer", application="Wait", data="1",
                                 ring_timeout=1)
    result = await handle.result()
    assert (result.status, result.reason, result.hangup_cause) == (
        OriginateStatus.FAILURE, 3, 19)
    assert result.outcome is Outcome.NO_ANSWER
    assert 0.9 <= time.monotonic() - started < 3


async def test_answered_originate_resolves_at_answer_and_its_hangup_follows(
        ami: AmiClient) -> None:
    handle = await ami.originate("Local/s@callee", application="Wait", data="1", ring_timeout=5,
                                 caller_id='"ARS" <5551000>')
    result = await handle.result()
    assert result.status is OriginateStatus.SUCCESS and result.outcome is Outcome.ANSWERED
    assert result.uniqueid == handle.channel_id and result.hangup_cause is None
    assert result.channel is not None and result.channel.startswith("Local/s@callee-")
    answered = time.monotonic()
    async with asyncio.timeout(WAIT):
        hangup = await handle.wait_hangup()
    assert hangup is not None and hangup.uniqueid == handle.channel_id
    assert 0.9 <= time.monotonic() - answered < 3  # Wait(1) on our half, then it hangs up


async def test_unknown_technology_fails_and_names_our_channel_id_anyway(
        asterisk_peer: AsteriskPeer) -> None:
    async with AmiClient(settings(asterisk_peer, hangup_grace=0.3)) as client:
        handle = await client.originate("Nope/foo", application="Wait", data="1")
        result = await handle.result()
    # With a ChannelId, Asterisk 22 reports it as the Uniqueid although no channel was made
    # (without one: "<unknown>"); no Hangup comes, the handle waited hangup_grace for it.
    assert (result.status, result.reason, result.uniqueid, result.hangup_cause) == (
        OriginateStatus.FAILURE, 0, handle.channel_id, None)
    assert result.outcome is Outcome.FAILED


async def test_keys_variables_reach_the_far_half_and_its_dtmf_reaches_our_channel(
        ami: AmiClient) -> None:
    with ami.subscribe({"DTMFEnd"}) as keys:
        handle = await ami.originate("Local/s@callee-keys", application="Wait", data="10",
                                     ring_timeout=5,
                                     variables={"__KEYS": "42#", "__KEYS_DELAY": "0.2"})
        assert (await handle.result()).status is OriginateStatus.SUCCESS
        received: list[str] = []
        async with asyncio.timeout(WAIT):
            while len(received) < 3:
                event = await keys.get()
                if event.get("Uniqueid") == handle.channel_id:
                    assert event.get("Direction") == "Received"
                    received.append(event.get("Digit") or "")
        assert received == ["4", "2", "#"]
        assert await handle.cancel()
        async with asyncio.timeout(WAIT):
            assert await handle.wait_hangup() is not None


async def test_variable_values_with_special_characters_arrive_intact_on_both_halves(
        ami: AmiClient) -> None:
    value = r'a,b "q" \x (y [z] ;|&$ 한국'
    handle = await ami.originate("Local/s@callee-long", application="Wait", data="10",
                                 ring_timeout=5, variables={"__V": value, "PLAIN": "p"})
    assert (await handle.result()).status is OriginateStatus.SUCCESS
    far_half = handle.other_channel_id or f"{handle.channel_id};2"  # Asterisk's default
    for channel in (handle.channel_id, far_half):
        for name, expected in (("V", value), ("PLAIN", "p")):
            got = await ami.action(Action.build("Getvar", Channel=channel, Variable=name))
            assert isinstance(got, Response) and got.success, got
            # A Local channel copies every variable to its ;2 half, prefixed or not.
            assert got.get("Value") == expected
    await handle.cancel()


async def test_cancel_while_ringing_is_canceled(ami: AmiClient) -> None:
    with ami.subscribe({"Newchannel"}) as created:
        handle = await ami.originate("Local/s@callee-noanswer", application="Wait", data="1",
                                     ring_timeout=10)
        async with asyncio.timeout(WAIT):
            while (await created.get()).get("Uniqueid") != handle.channel_id:
                pass
    assert await handle.cancel()  # Hangup by Uniqueid: Asterisk looks names and ids up
    result = await handle.result()
    assert result.status is OriginateStatus.FAILURE and result.canceled
    assert result.outcome is Outcome.CANCELED
    assert not await ami.hangup(handle.channel_id)  # gone: "No such channel"


async def test_restart_while_idle_reconnects_and_actions_work_again(
        asterisk_peer: AsteriskPeer, ami: AmiClient) -> None:
    await asterisk_peer.restart()
    # The stop took ~1 s after Asterisk closed our socket: the client has seen it by now.
    assert ami.disconnects == 1 and ami.state is not AmiState.CLOSED
    started = time.monotonic()
    async with asyncio.timeout(WAIT):
        await ami.wait_connected()
    assert time.monotonic() - started < 2  # backoff ≤ 0.5 s, login, FullyBooted
    assert ami.connects == 2
    assert (await ami.command("core show version"))[0].startswith("Asterisk")
    handle = await ami.originate("Local/s@callee-busy", application="Wait", data="1")
    assert (await handle.result()).outcome is Outcome.BUSY


async def test_connection_lost_mid_call_resolves_handles_and_the_call_lives_on(
        ami: AmiClient) -> None:
    answered = await ami.originate("Local/s@callee-long", application="Wait", data="20")
    assert (await answered.result()).status is OriginateStatus.SUCCESS
    ringing = await ami.originate("Local/s@callee-noanswer", application="Wait", data="1",
                                  ring_timeout=20)
    ami.drop_connection("test: socket aborted")  # transport.abort() on our side
    async with asyncio.timeout(WAIT):
        assert await answered.wait_hangup() is None
        lost = await ringing.result()
    assert lost.status is OriginateStatus.CONNECTION_LOST and not lost.known
    assert "test: socket aborted" in (lost.message or "")
    async with asyncio.timeout(WAIT):
        await ami.wait_connected()
    # Asterisk keeps both calls: an Async Originate does not belong to the AMI session.
    assert await ami.hangup(ringing.channel_id)
    assert await ami.hangup(answered.channel_id)
