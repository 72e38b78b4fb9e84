"""The asyncio AMI client (ars_engine/telephony/ami/client.py) against a scripted peer.

The peer is an in-process asyncio TCP server that answers with the bytes Asterisk 22 sent in
tests/transcripts/asterisk/ (ActionIDs rewritten to the client's): login, MD5 challenge, bad
login, Ping, Command, Logoff, and whole Originate sequences (response, channel events,
OriginateResponse, Hangup). Tests synchronise on what the peer received or on the client's
own events and states, never on sleeps; the short timeouts below are the behaviour under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from ars_engine.errors import ChannelError, ConfigError
from ars_engine.telephony.ami import Action, Response
from ars_engine.telephony.ami.client import (
    AmiAuthenticationError,
    AmiClient,
    AmiClosed,
    AmiConnectError,
    AmiConnectionLost,
    AmiSettings,
    AmiState,
    AmiTimeout,
    OriginateStatus,
    escape_variable_value,
)
from ars_engine.telephony.outcomes import Outcome

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts" / "asterisk"
SECRET = "ars-secret"
CHALLENGE = "840113541"
SHORT = 0.2  # seconds: a timeout that must expire in the test (no answer is coming)
WAIT = 5.0  # seconds: a bound on what must happen soon; exceeding it fails the test
BANNER = b"Asterisk Call Manager/11.0.0\r\n"


# -- recorded bytes -------------------------------------------------------------------------------
def messages(name: str) -> list[bytes]:
    """The AMI messages Asterisk sent in a transcript, each with its final empty line."""
    rx = (TRANSCRIPTS / f"{name}.rx.bin").read_bytes()
    assert rx.startswith(BANNER)
    return [block + b"\r\n\r\n" for block in rx[len(BANNER):].split(b"\r\n\r\n") if block]


def field(block: bytes, key: str) -> str | None:
    match = re.search(rb"(?m)^" + key.encode() + rb": ?(.*)\r$", block)
    return None if match is None else match.group(1).decode()


def answer(name: str, action_id: str) -> bytes:
    """The recorded response to the action sent with ``action_id``."""
    return next(m for m in messages(name)
                if m.startswith(b"Response:") and field(m, "ActionID") == action_id)


def with_id(block: bytes, action_id: str | None) -> bytes:
    """``block`` with its ActionID replaced (the client numbers its own actions)."""
    assert action_id is not None
    return re.sub(rb"(?m)^ActionID: .*\r$", f"ActionID: {action_id}\r".encode(), block, count=1)


def originate_sequence(name: str, action_id: str, uniqueid: str) -> list[bytes]:
    """What Asterisk sent for one Originate: its response, then every event up to the
    originated channel's Hangup (or the OriginateResponse when it came last)."""
    recorded = messages(name)
    start = recorded.index(answer(name, action_id))
    out: list[bytes] = []
    last = start
    for index, block in enumerate(recorded[start:], start):
        if block.startswith(b"Response:") and index != start:
            continue  # other actions' answers
        out.append(block)
        is_hangup = block.startswith(b"Event: Hangup\r") and field(block, "Uniqueid") == uniqueid
        is_result = field(block, "ActionID") == action_id and block.startswith(b"Event:")
        if is_hangup or is_result:
            last = len(out)
    return out[:last]


LOGIN_OK = [answer("ami_main_local_originate", "login-1"),
            *[m for m in messages("ami_main_local_originate")[:3] if m.startswith(b"Event:")]]
LOGIN_BAD = answer("ami_login_bad", "login-bad")
PONG = answer("ami_main_local_originate", "ping-1")
GOODBYE = answer("ami_main_local_originate", "logoff-1")
CORE_SETTINGS = answer("ami_main_local_originate", "cs-1")
CORE_STATUS = answer("ami_main_local_originate", "cst-1")
COMMAND = answer("ami_main_local_originate", "cmd-1")
DTMF_END = [m for m in messages("ami_main_local_originate") if m.startswith(b"Event: DTMFEnd\r")]


# -- the scripted peer ----------------------------------------------------------------------------
class PeerSession:
    """One TCP connection to the scripted peer."""

    def __init__(self, number: int, writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.writer = writer
        self.actions: asyncio.Queue[Action] = asyncio.Queue()
        self.received: list[Action] = []
        self.closed = asyncio.Event()

    def send(self, *blocks: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(b"".join(blocks))

    def close(self) -> None:
        self.writer.close()

    async def next_action(self, name: str) -> Action:
        """The next action received with this name (others before it are skipped)."""
        async with asyncio.timeout(WAIT):
            while (action := await self.actions.get()).name != name:
                pass
        return action


Handler = Callable[[PeerSession, Action], None]


class ScriptedAmi:
    """An AMI server answering from recorded bytes; ``handlers[name]`` overrides an action's
    answer (a handler that sends nothing leaves the action unanswered)."""

    def __init__(self) -> None:
        self.sessions: asyncio.Queue[PeerSession] = asyncio.Queue()
        self.all: list[PeerSession] = []
        self.handlers: dict[str, Handler] = {
            "Login": self.login, "Challenge": self.challenge, "Logoff": self.logoff,
            "Ping": reply(PONG), "CoreSettings": reply(CORE_SETTINGS),
            "CoreStatus": reply(CORE_STATUS), "Command": reply(COMMAND),
        }
        self.send_banner = True
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self.port = 0

    async def __aenter__(self) -> ScriptedAmi:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for session in self.all:
            session.close()
        await self._server.wait_closed()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def settings(self, **kw: object) -> AmiSettings:
        base: dict[str, object] = {"port": self.port, "username": "ars", "secret": SECRET,
                                   "auth": "plain", "reconnect_min": 0.01,
                                   "reconnect_max": 0.05, "ping_interval": None}
        base.update(kw)
        return AmiSettings(**base)  # type: ignore[arg-type]

    async def session(self) -> PeerSession:
        """The next connection the client opens."""
        async with asyncio.timeout(WAIT):
            return await self.sessions.get()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = PeerSession(len(self.all) + 1, writer)
        self.all.append(session)
        self.sessions.put_nowait(session)
        if self.send_banner:
            session.send(BANNER)
        try:
            while True:
                action = Action.parse(await reader.readuntil(b"\r\n\r\n"))
                session.received.append(action)
                session.actions.put_nowait(action)
                self.handlers.get(action.name, unknown)(session, action)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            session.closed.set()
            writer.close()

    # default answers
    @staticmethod
    def login(session: PeerSession, action: Action) -> None:
        if action.get("AuthType") == "MD5":
            good = action.get("Key") == hashlib.md5((CHALLENGE + SECRET).encode()).hexdigest()
        else:
            good = action.get("Secret") == SECRET
        if good:
            session.send(with_id(LOGIN_OK[0], action.action_id), *LOGIN_OK[1:])
        else:  # Asterisk answers after ~1 s, then closes the connection
            session.send(with_id(LOGIN_BAD, action.action_id))
            session.close()

    @staticmethod
    def challenge(session: PeerSession, action: Action) -> None:
        # Not in the recordings: the form of manager.c's action_challenge().
        session.send(f"Response: Success\r\nActionID: {action.action_id}\r\n"
                     f"Challenge: {CHALLENGE}\r\n\r\n".encode())

    @staticmethod
    def logoff(session: PeerSession, action: Action) -> None:
        session.send(with_id(GOODBYE, action.action_id))
        session.close()


def reply(block: bytes) -> Handler:
    def handler(session: PeerSession, action: Action) -> None:
        session.send(with_id(block, action.action_id))
    return handler


def unknown(session: PeerSession, action: Action) -> None:
    session.send(f"Response: Error\r\nActionID: {action.action_id}\r\nMessage: Invalid/unknown "
                 f"command: {action.name}.\r\n\r\n".encode())


def silent(session: PeerSession, action: Action) -> None:
    """Leave the action unanswered."""


def client_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_name().startswith("ami-")}


@pytest.fixture
async def peer() -> AsyncIterator[ScriptedAmi]:
    async with ScriptedAmi() as server:
        yield server


@pytest.fixture(autouse=True)
def no_asyncio_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """'Task was destroyed but it is pending!' and unretrieved exceptions are logged by asyncio,
    not raised: fail on them."""
    yield
    errors = [r for r in caplog.records if r.name == "asyncio" and r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


# -- login ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_login_sends_credentials_and_waits_for_fully_booted(
        peer: ScriptedAmi, auth: str) -> None:
    async with AmiClient(peer.settings(auth=auth)) as ami:
        assert ami.state is AmiState.CONNECTED and ami.is_connected
        assert ami.banner is not None and ami.banner.version == "11.0.0"
        session = await peer.session()
        login = session.received[-1]
        assert (login.name, login.get("Username"), login.get("Events")) == ("Login", "ars", "on")
        if auth == "md5":
            assert [a.name for a in session.received] == ["Challenge", "Login"]
            assert login.get("Secret") is None and login.get("Key") is not None
        else:
            assert login.get("Secret") == SECRET
        assert ami.connects == 1
    assert ami.state is AmiState.CLOSED


@pytest.mark.parametrize("auth", ["plain", "md5"])
async def test_bad_login_is_an_authentication_config_error_naming_the_address(
        peer: ScriptedAmi, auth: str) -> None:
    settings = peer.settings(auth=auth, secret="wrong-secret")
    with pytest.raises(AmiAuthenticationError) as caught:
        async with AmiClient(settings):
            pass
    assert isinstance(caught.value, ConfigError) and isinstance(caught.value, ChannelError)
    text = str(caught.value)
    assert f"127.0.0.1:{peer.port}" in text and "'ars'" in text
    assert "Authentication failed" in text and "wrong-secret" not in text
    assert not client_tasks()


async def test_connection_refused_is_a_connect_error_naming_the_address() -> None:
    async with ScriptedAmi() as gone:
        settings = gone.settings()
    with pytest.raises(AmiConnectError, match=rf"127\.0\.0\.1:{settings.port}: connection refused"):
        await AmiClient(settings).connect()


async def test_a_peer_without_banner_times_out_on_connect(peer: ScriptedAmi) -> None:
    peer.send_banner = False
    with pytest.raises(AmiTimeout, match=r"sent no banner within 0.2 s"):
        await AmiClient(peer.settings(connect_timeout=SHORT)).connect()
    assert not client_tasks()


async def test_unanswered_login_times_out(peer: ScriptedAmi) -> None:
    peer.handlers["Login"] = silent
    with pytest.raises(AmiTimeout, match=r"login .* as 'ars' got no answer"):
        await AmiClient(peer.settings(action_timeout=SHORT)).connect()


# -- actions --------------------------------------------------------------------------------------
async def test_command_returns_its_output_lines(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings()) as ami:
        assert (await ami.command("core show version"))[0].startswith("Asterisk GIT-22")
        session = await peer.session()
        assert (await session.next_action("Command")).get("Command") == "core show version"


async def test_action_timeout_forgets_the_action_and_drops_its_late_answer(
        peer: ScriptedAmi) -> None:
    peer.handlers["CoreSettings"] = silent
    async with AmiClient(peer.settings()) as ami:
        session = await peer.session()
        with pytest.raises(AmiTimeout, match=r"no answer to CoreSettings within 0.2 s"):
            await ami.action(Action("CoreSettings"), timeout=SHORT)
        late = (await session.next_action("CoreSettings")).action_id
        session.send(with_id(CORE_SETTINGS, late))
        await ami.ping()  # answered after the late answer: it has been read by then
        assert ami.late_responses == 1
        assert ami.is_connected


async def test_responses_out_of_order_are_matched_by_action_id(peer: ScriptedAmi) -> None:
    peer.handlers["CoreSettings"] = peer.handlers["CoreStatus"] = silent
    async with AmiClient(peer.settings()) as ami:
        session = await peer.session()
        settings = asyncio.create_task(ami.action(Action("CoreSettings")))
        status = asyncio.create_task(ami.action(Action("CoreStatus")))
        first = await session.next_action("CoreSettings")
        second = await session.next_action("CoreStatus")
        session.send(with_id(CORE_STATUS, second.action_id),
                     with_id(CORE_SETTINGS, first.action_id))
        got_settings, got_status = await settings, await status
        assert isinstance(got_settings, Response) and isinstance(got_status, Response)
        assert got_settings.get("AMIversion") == "11.0.0"
        assert got_status.get("CoreCurrentCalls") == "0"


async def test_a_given_action_id_is_replaced_by_the_clients_own(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings()) as ami:
        await ami.action(Action("Ping", action_id="mine"))
        session = await peer.session()
        sent = (await session.next_action("Ping")).action_id
        assert sent is not None and sent != "mine" and sent.startswith("ars-")


async def test_cancelled_action_is_forgotten(peer: ScriptedAmi) -> None:
    peer.handlers["CoreSettings"] = silent
    async with AmiClient(peer.settings()) as ami:
        session = await peer.session()
        waiting = asyncio.create_task(ami.action(Action("CoreSettings")))
        late = (await session.next_action("CoreSettings")).action_id
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        session.send(with_id(CORE_SETTINGS, late))
        await ami.ping()
        assert ami.late_responses == 1


# -- losing the connection ------------------------------------------------------------------------
async def test_dropped_connection_fails_pending_actions_then_reconnects_and_logs_in(
        peer: ScriptedAmi) -> None:
    peer.handlers["CoreSettings"] = silent
    async with AmiClient(peer.settings()) as ami:
        first = await peer.session()
        pending = asyncio.create_task(ami.action(Action("CoreSettings")))
        await first.next_action("CoreSettings")
        first.close()  # as Asterisk does when it stops
        with pytest.raises(AmiConnectionLost, match=r"lost .* before the answer to CoreSettings"):
            await pending
        second = await peer.session()
        assert (await second.next_action("Login")).get("Username") == "ars"
        async with asyncio.timeout(WAIT):
            await ami.wait_connected()
        assert ami.connects == 2 and ami.disconnects == 1
        await ami.ping()
        first_ids = {a.action_id for a in first.received}
        second_ids = {a.action_id for a in second.received}
        assert not first_ids & second_ids  # a new AmiConnection: its own ActionID prefix


async def lose_connection(ami: AmiClient, peer: ScriptedAmi) -> None:
    """Close the client's connection from the peer's side and return once the client has
    seen it (an action pending at that moment fails)."""
    peer.handlers["CoreSettings"] = silent
    session = await peer.session()
    pending = asyncio.create_task(ami.action(Action("CoreSettings")))
    await session.next_action("CoreSettings")
    session.close()
    with pytest.raises(AmiConnectionLost):
        await pending


async def test_state_changed_is_set_when_the_connection_is_lost(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings(reconnect_min=WAIT, reconnect_max=WAIT)) as ami:
        assert ami.state is AmiState.CONNECTED
        ami.state_changed.clear()  # an observer has read the state
        await lose_connection(ami, peer)
        assert ami.state_changed.is_set() and ami.state is AmiState.RECONNECTING


async def test_action_while_reconnecting_fails_at_once(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings(reconnect_min=WAIT, reconnect_max=WAIT)) as ami:
        await lose_connection(ami, peer)
        assert ami.state is AmiState.RECONNECTING and not ami.is_connected
        with pytest.raises(AmiConnectionLost, match="not connected"):
            await ami.ping()


async def test_missed_pong_drops_the_connection_and_reconnects(peer: ScriptedAmi) -> None:
    peer.handlers["Ping"] = silent
    settings = peer.settings(ping_interval=0.05, ping_timeout=SHORT)
    async with AmiClient(settings) as ami:
        first = await peer.session()
        await first.next_action("Ping")
        async with asyncio.timeout(WAIT):
            await first.closed.wait()  # the client hung up on the silent peer
        peer.handlers["Ping"] = reply(PONG)
        second = await peer.session()
        await second.next_action("Login")
        async with asyncio.timeout(WAIT):
            await ami.wait_connected()
        await second.next_action("Ping")  # the keepalive goes on on the new connection
        assert ami.connects == 2


async def test_protocol_error_drops_the_connection_and_reconnects(
        peer: ScriptedAmi, caplog: pytest.LogCaptureFixture) -> None:
    async with AmiClient(peer.settings()) as ami:
        first = await peer.session()
        first.send(b"Neither: event nor response\r\n\r\n")
        async with asyncio.timeout(WAIT):
            await first.closed.wait()
        await (await peer.session()).next_action("Login")
        async with asyncio.timeout(WAIT):
            await ami.wait_connected()
    assert "message with neither Event nor Response" in caplog.text


async def test_bad_login_on_reconnect_is_retried_at_the_longest_backoff(
        peer: ScriptedAmi, caplog: pytest.LogCaptureFixture) -> None:
    async with AmiClient(peer.settings()) as ami:
        first = await peer.session()
        def refuse(session: PeerSession, action: Action) -> None:
            session.send(with_id(LOGIN_BAD, action.action_id))
            session.close()
        peer.handlers["Login"] = refuse
        first.close()
        await (await peer.session()).next_action("Login")  # refused
        peer.handlers["Login"] = ScriptedAmi.login
        await (await peer.session()).next_action("Login")  # accepted
        async with asyncio.timeout(WAIT):
            await ami.wait_connected()
    assert "retrying at the longest backoff" in caplog.text


async def test_malformed_typed_event_is_dropped_and_the_connection_stays(
        peer: ScriptedAmi, caplog: pytest.LogCaptureFixture) -> None:
    peer.handlers["Originate"] = lambda s, a: s.send(
        f"Response: Success\r\nActionID: {a.action_id}\r\nMessage: Originate successfully "
        f"queued\r\n\r\nEvent: OriginateResponse\r\nActionID: {a.action_id}\r\nResponse: "
        f"Failure\r\nChannel: Local/s@x\r\nReason: x\r\nUniqueid: u1\r\n\r\n".encode())
    async with AmiClient(peer.settings(originate_grace=SHORT)) as ami:
        handle = await ami.originate("Local/s@x", application="Wait", data="1",
                                     ring_timeout=SHORT, channel_id="u1")
        result = await handle.result()  # the broken event did not count: no response by then
        assert result.status is OriginateStatus.NO_RESPONSE and not result.known
        assert ami.is_connected
        await ami.ping()
    assert "malformed OriginateResponse event dropped" in caplog.text


# -- events ---------------------------------------------------------------------------------------
async def test_subscription_filters_by_name(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings()) as ami:
        session = await peer.session()
        with ami.subscribe({"DTMFEnd"}) as keys:
            session.send(*LOGIN_OK[1:], *DTMF_END[:2])
            async with asyncio.timeout(WAIT):
                got = [await keys.get(), await keys.get()]
        assert [e.get("Digit") for e in got] == ["1", "2"]


async def test_slow_consumer_loses_the_oldest_events_with_a_counted_warning(
        peer: ScriptedAmi, caplog: pytest.LogCaptureFixture) -> None:
    async with AmiClient(peer.settings()) as ami:
        session = await peer.session()
        with ami.subscribe({"DTMFEnd"}, maxsize=2, label="slow") as slow:
            session.send(*DTMF_END)  # six keys, nobody reading
            await ami.ping()  # the Pong comes after them: all six were read
            assert len(slow) == 2 and slow.dropped == 4
            assert [(await slow.get()).get("Digit") for _ in range(2)] == ["5", "6"]
    warnings = [r.getMessage() for r in caplog.records if "too slow" in r.getMessage()]
    assert warnings == [f"AMI event subscriber 'slow' is too slow: {n} event(s) dropped so far "
                        "(queue of 2)" for n in (1, 2, 4)]


async def test_subscriptions_end_when_the_client_closes(peer: ScriptedAmi) -> None:
    ami = AmiClient(peer.settings())
    await ami.connect()
    events = ami.events()
    reader = asyncio.create_task(anext(events, None))
    await ami.close()
    assert await reader is None
    with pytest.raises(AmiClosed):
        await events.get()


# -- originate ------------------------------------------------------------------------------------
def script_originate(peer: ScriptedAmi, name: str, action_id: str, uniqueid: str,
                     *, close_after: int | None = None) -> None:
    """Answer the Originate with the recorded sequence (``close_after``: then hang up the
    connection after that many messages)."""
    sequence = originate_sequence(name, action_id, uniqueid)

    def handler(session: PeerSession, action: Action) -> None:
        assert action.get("ChannelId") == uniqueid
        blocks = [with_id(b, action.action_id) if field(b, "ActionID") == action_id else b
                  for b in sequence]
        session.send(*blocks[:close_after])
        if close_after is not None:
            session.close()
    peer.handlers["Originate"] = handler


@pytest.mark.parametrize(("name", "action_id", "uniqueid", "outcome", "reason", "cause"), [
    # Local Busy(): Reason 5; the ;1 Hangup (cause 0) follows the response
    ("ami_originate_local_noanswer_busy", "orig-busy", "ars-busy-1", Outcome.BUSY, 5, 0),
    # Local ringing past Timeout: Reason 3, cause 19
    ("ami_originate_local_noanswer_busy", "orig-noans", "ars-noans-1", Outcome.NO_ANSWER, 3, 19),
    # PJSIP 486: Reason 0, and the Hangup (cause 17) after the response: waited for
    ("ami_originate_pjsip_sipp_busy", "orig-pjsip-busy", "ars-sippbusy-1", Outcome.BUSY, 0, 17),
    # Timer B: the Hangup (cause 18) before the response
    ("ami_originate_pjsip_unreachable_timerb", "orig-pjsip-timerb", "ars-pjtb-1",
     Outcome.NO_ANSWER, 0, 18),
])
async def test_failed_originate_resolves_with_reason_and_hangup_cause(
        peer: ScriptedAmi, name: str, action_id: str, uniqueid: str, outcome: Outcome,
        reason: int, cause: int) -> None:
    script_originate(peer, name, action_id, uniqueid)
    async with AmiClient(peer.settings()) as ami:
        handle = await ami.originate("Local/s@callee", application="Wait", data="1",
                                     channel_id=uniqueid)
        result = await handle.result()
        assert (result.status, result.reason, result.hangup_cause) == (
            OriginateStatus.FAILURE, reason, cause)
        assert result.outcome is outcome and handle.outcome is outcome


async def test_answered_originate_resolves_then_reports_the_hangup(peer: ScriptedAmi) -> None:
    script_originate(peer, "ami_main_local_originate", "orig-local-1", "ars-abc-1")
    async with AmiClient(peer.settings()) as ami:
        handle = await ami.originate(
            "Local/s@callee", context="ars-out", exten="s", channel_id="ars-abc-1",
            other_channel_id="ars-abc-1-callee", caller_id='"ARS" <5551000>',
            variables={"ARS_CALL_ID": "abc", "ARS_OTHER": "xyz"})
        result = await handle.result()
        assert result.status is OriginateStatus.SUCCESS and result.outcome is Outcome.ANSWERED
        assert result.channel == "Local/s@callee-00000005;1" and result.reason == 4
        hangup = await handle.wait_hangup()
        assert hangup is not None and hangup.cause == 16
        sent = await (await peer.session()).next_action("Originate")
        assert sent.get("Async") == "true" and sent.get("Timeout") == "30000"
        assert sent.get_all("Variable") == ["ARS_CALL_ID=abc", "ARS_OTHER=xyz"]
        assert (sent.get("Context"), sent.get("Exten"), sent.get("Priority")) == (
            "ars-out", "s", "1")


async def test_originate_generates_a_channel_id_and_escapes_variables(peer: ScriptedAmi) -> None:
    peer.handlers["Originate"] = reply(answer("ami_originate_local_noanswer_busy",
                                              "orig-sync-badtech"))
    async with AmiClient(peer.settings()) as ami:
        handle = await ami.originate("Nope/foo", application="Wait", data="1",
                                     variables=["__KEYS=1,2", 'NOTE=say "hi" (x)'])
        result = await handle.result()
        assert result.status is OriginateStatus.REFUSED and result.message == "Originate failed"
        assert result.outcome is Outcome.FAILED
        sent = await (await peer.session()).next_action("Originate")
        assert sent.get("ChannelId") == handle.channel_id and len(handle.channel_id) == 36
        assert sent.get_all("Variable") == [r"__KEYS=1\,2", r'NOTE=say \"hi\" \(x\)']
        assert (sent.get("Application"), sent.get("Data"), sent.get("Priority")) == (
            "Wait", "1", None)


async def test_connection_lost_before_the_originate_response_resolves_as_unknown(
        peer: ScriptedAmi) -> None:
    script_originate(peer, "ami_main_local_originate", "orig-local-1", "ars-abc-1",
                     close_after=3)  # the response and two Newchannel events, then gone
    async with AmiClient(peer.settings()) as ami:
        handle = await ami.originate("Local/s@callee", application="Wait", data="1",
                                     channel_id="ars-abc-1")
        async with asyncio.timeout(WAIT):
            result = await handle.result()
            assert await handle.wait_hangup() is None
        assert result.status is OriginateStatus.CONNECTION_LOST and result.success is None
        assert "lost" in (result.message or "") and result.outcome is Outcome.NETWORK_ERROR


async def test_connection_lost_mid_call_ends_the_wait_for_the_hangup(peer: ScriptedAmi) -> None:
    sequence = originate_sequence("ami_main_local_originate", "orig-local-1", "ars-abc-1")
    answered = next(i for i, b in enumerate(sequence) if b.startswith(b"Event: OriginateResp"))
    script_originate(peer, "ami_main_local_originate", "orig-local-1", "ars-abc-1",
                     close_after=answered + 1)
    async with AmiClient(peer.settings()) as ami:
        handle = await ami.originate("Local/s@callee", application="Wait", data="1",
                                     channel_id="ars-abc-1")
        assert (await handle.result()).status is OriginateStatus.SUCCESS
        async with asyncio.timeout(WAIT):
            assert await handle.wait_hangup() is None


async def test_close_resolves_originates_in_flight(peer: ScriptedAmi) -> None:
    peer.handlers["Originate"] = lambda s, a: s.send(
        with_id(answer("ami_main_local_originate", "orig-local-1"), a.action_id))
    ami = AmiClient(peer.settings())
    await ami.connect()
    handle = await ami.originate("Local/s@callee", application="Wait", data="1")
    await ami.close()
    result = await handle.result()
    assert result.status is OriginateStatus.CONNECTION_LOST
    assert result.message == "the AMI client was closed"


async def test_originate_needs_a_destination(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings()) as ami:
        with pytest.raises(ValueError, match="not both/neither"):
            await ami.originate("Local/s@x")
        with pytest.raises(ValueError, match="both context and exten"):
            await ami.originate("Local/s@x", context="ars-out")
        with pytest.raises(ValueError, match="no '='"):
            await ami.originate("Local/s@x", application="Wait", variables=["SECRET"])


# -- closing --------------------------------------------------------------------------------------
async def test_close_logs_off_and_awaits_its_tasks(peer: ScriptedAmi) -> None:
    async with AmiClient(peer.settings(ping_interval=1.0)) as ami:
        session = await peer.session()
        assert len(client_tasks()) == 2  # the supervisor and the connection's reader
    assert not client_tasks()
    assert session.received[-1].name == "Logoff"
    async with asyncio.timeout(WAIT):
        await session.closed.wait()
    with pytest.raises(AmiClosed):
        await ami.wait_connected()
    with pytest.raises(AmiClosed):
        await ami.ping()
    await ami.close()  # idempotent


async def test_close_while_reconnecting_stops_at_once(peer: ScriptedAmi) -> None:
    ami = AmiClient(peer.settings(reconnect_min=WAIT * 2, reconnect_max=WAIT * 2))
    await ami.connect()
    await lose_connection(ami, peer)
    waiter = asyncio.create_task(ami.wait_connected())
    async with asyncio.timeout(WAIT):
        await ami.close()  # within the 10 s backoff: the sleep is cancelled
    with pytest.raises(AmiClosed):
        await waiter
    assert not client_tasks()


# -- secrets --------------------------------------------------------------------------------------
async def test_secrets_and_variable_values_never_reach_the_logs(
        peer: ScriptedAmi, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    script_originate(peer, "ami_main_local_originate", "orig-local-1", "ars-abc-1")
    for auth in ("plain", "md5"):
        async with AmiClient(peer.settings(auth=auth)) as ami:
            handle = await ami.originate("PJSIP/01012345678@trunk", application="Wait",
                                         channel_id="ars-abc-1",
                                         variables={"ARS_TOKEN": "tok-5f1e9c"})
            await handle.result()
    with pytest.raises(AmiAuthenticationError) as caught:
        await AmiClient(peer.settings(secret="wrong-secret")).connect()
    settings = peer.settings()
    shown = caplog.text + str(caught.value) + repr(settings)
    for secret in (SECRET, "wrong-secret", "tok-5f1e9c", "01012345678"):
        assert secret not in shown
    assert "secret='***'" in repr(settings) and "ARS_TOKEN" in caplog.text


# -- settings -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("change", "message"), [
    ({"auth": "sha"}, "auth must be 'plain' or 'md5'"),
    ({"username": ""}, "username is empty"),
    ({"port": 0}, "not a TCP port"),
    ({"action_timeout": 0}, "action_timeout must be > 0"),
    ({"ping_interval": 0}, "ping_interval must be > 0"),
    ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect_min must not exceed"),
    ({"event_queue_size": 0}, "event_queue_size must be at least 1"),
])
def test_settings_are_checked(change: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"username": "ars", "secret": SECRET}
    with pytest.raises(ConfigError, match=message):
        AmiSettings(**{**base, **change})  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "escaped"), [
    ("123#", "123#"),
    ("a,b", r"a\,b"),
    ('say "hi"', r'say \"hi\"'),
    (r"c:\x", r"c:\\x"),
    ("f(x)[0]", r"f\(x\)\[0\]"),
    ("", ""),
])
def test_variable_values_are_escaped_for_asterisk_argument_parsing(value: str,
                                                                    escaped: str) -> None:
    assert escape_variable_value(value) == escaped
