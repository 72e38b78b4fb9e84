"""The asyncio AMI client: a thin shell around the sans-I/O :class:`AmiConnection`.

``async with AmiClient(settings) as ami:`` connects and logs in (or raises a precise error),
then keeps the session up: a Ping every ``ping_interval`` (no Pong in ``ping_timeout`` → the
connection is dead) and, when the connection drops (Asterisk restarted, network, protocol
error), a new TCP connection and login after an exponential backoff with jitter. Tasks: one
supervisor (keepalive + reconnect) owned by the client, and one reader per TCP connection owned
by the supervisor; :meth:`AmiClient.close` logs off, cancels and awaits them.

Rules of the shell (the core's author's notes, and Asterisk 22 as recorded in
tests/transcripts/asterisk/):

* Every action gets its ActionID from the connection (``with_action_id``), and its future is
  keyed by it: responses are matched by ActionID only. ActionIDs start with a random per-client
  tag and the connection number, because OriginateResponse events carry the Originate's
  ActionID to *every* AMI session: another client's ``ars-1`` must never be taken for ours.
* A timed-out or cancelled action is ``forget``-ed: its late answer arrives with
  ``action=None`` and is logged and dropped. A new TCP connection gets a new AmiConnection;
  nothing pending carries over: actions waiting at a disconnect fail with
  :class:`AmiConnectionLost`.
* A bad login is answered after ~1 s by ``Response: Error`` and the peer closes: on the first
  connect that is :class:`AmiAuthenticationError` (a ConfigError: do not retry), on a reconnect
  it is logged and retried at the longest backoff. ``FullyBooted`` follows a good login (when
  the login asks for system events); the client waits for it, so actions never race a booting
  Asterisk after a restart.
* Async Originate: the immediate ``Originate successfully queued`` answers the action; the
  outcome comes later in an ``OriginateResponse`` event with the Originate's ActionID, and the
  originated channel's ``Hangup`` (Uniqueid = our ChannelId), in either order; without a
  channel (``Uniqueid: <unknown>``, unknown technology) no Hangup comes. See
  :class:`OriginateHandle`.

Secrets: the settings' repr masks the secret, errors name host:port and the username only,
Originate variables are logged by name only (their values can carry call ids), and actions are
logged by name and ActionID, never by their fields.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
import random
import secrets
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Self, TypeVar

from ...errors import ChannelError, ConfigError, ProtocolError
from .events import Hangup, OriginateResponse
from .messages import Action, Banner, ConnectionClosed, Event, EventListResult, Response
from .messages import header_value as _header
from .originate import (
    OriginateHandle,
    OriginateResult,
    OriginateStatus,
    escape_variable_value,
    originate_variables,
)
from .protocol import (
    AmiConnection,
    challenge_action,
    login_action,
    logoff_action,
    md5_login_action,
    ping_action,
)

__all__ = ["AmiActionError", "AmiAuthenticationError", "AmiClient", "AmiClosed", "AmiConnectError",
           "AmiConnectionLost", "AmiError", "AmiSettings", "AmiState", "AmiTimeout",
           "EventSubscription", "OriginateHandle", "OriginateResult", "OriginateStatus",
           "escape_variable_value"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
_T = TypeVar("_T")
_EVENT_CLASSES_WITH_BOOT = frozenset({"on", "all", "system"})


# -- errors ---------------------------------------------------------------------------------------
class AmiError(ChannelError):
    """An AMI client failure. Messages name the AMI address and what failed, never a secret."""


class AmiConnectError(AmiError):
    """No AMI session could be opened: connection refused or unreachable, or the peer is not
    an AMI server (no banner)."""


class AmiAuthenticationError(AmiError, ConfigError):
    """Asterisk refused the login (username, secret, or manager.conf's permit/deny): a
    configuration error, retrying will not help."""


class AmiTimeout(AmiError):
    """No answer in time: TCP connect, banner, login, FullyBooted, or an action."""


class AmiConnectionLost(AmiError):
    """The AMI connection dropped (or was not up) before the answer came; for an action this
    means its effect is unknown."""


class AmiClosed(AmiConnectionLost):
    """The client was closed."""


class AmiActionError(AmiError):
    """An action was answered ``Response: Error`` (by the convenience methods that check);
    ``response`` holds the answer."""

    def __init__(self, response: Response, message: str) -> None:
        super().__init__(message)
        self.response = response


# -- settings -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class AmiSettings:
    """Where and how to reach the AMI. Times are seconds; ``ping_interval`` None disables the
    keepalive. ``events`` is Login's ``Events`` (``on``, ``off``, ``call,system``…; None: as
    manager.conf says). ``auth="md5"`` answers a Challenge so the secret never crosses the
    wire (needs a plain ``secret`` in manager.conf, which is what Asterisk supports)."""

    host: str = "127.0.0.1"
    port: int = 5038
    username: str
    secret: str
    auth: Literal["plain", "md5"] = "md5"
    connect_timeout: float = 5.0  # TCP connect, banner, and FullyBooted after the login
    action_timeout: float = 10.0  # default for action(); also the login's
    ping_interval: float | None = 20.0
    ping_timeout: float = 5.0
    reconnect_min: float = 0.5  # first retry after 0.5×..1× this, doubling up to reconnect_max
    reconnect_max: float = 30.0
    events: str | None = "on"
    event_queue_size: int = 1000  # per subscription; the oldest are dropped beyond it
    logoff_timeout: float = 2.0
    originate_grace: float = 15.0  # OriginateResponse expected by ring timeout + this
    hangup_grace: float = 2.0  # after a Failure OriginateResponse, wait this for its Hangup cause

    def __post_init__(self) -> None:
        if self.auth not in ("plain", "md5"):
            raise ConfigError(f"AMI auth must be 'plain' or 'md5', not {self.auth!r}")
        if not self.username:
            raise ConfigError("AMI username is empty")
        if not 0 < self.port < 65536:
            raise ConfigError(f"AMI port {self.port} is not a TCP port")
        for name in ("connect_timeout", "action_timeout", "ping_timeout", "reconnect_min",
                     "reconnect_max", "logoff_timeout", "originate_grace", "hangup_grace"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"AMI {name} must be > 0")
        if self.ping_interval is not None and not self.ping_interval > 0:
            raise ConfigError("AMI ping_interval must be > 0 (or None: no keepalive)")
        if self.reconnect_min > self.reconnect_max:
            raise ConfigError("AMI reconnect_min must not exceed reconnect_max")
        if self.event_queue_size < 1:
            raise ConfigError("AMI event_queue_size must be at least 1")

    @property
    def address(self) -> str:
        """``host:port``, for messages."""
        return f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return (f"AmiSettings(host={self.host!r}, port={self.port}, username={self.username!r}, "
                f"secret='***', auth={self.auth!r}, events={self.events!r})")


class AmiState(enum.Enum):
    """Where the client is: IDLE (not yet connected), CONNECTING (first connect), CONNECTED,
    RECONNECTING (the connection dropped; backing off / logging in again), CLOSED."""

    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


# -- one TCP connection ---------------------------------------------------------------------------
class _Link:
    """One TCP connection: its protocol state, streams, reader task and waiting actions."""

    def __init__(self, number: int, conn: AmiConnection, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        self.number = number
        self.conn = conn
        self.reader = reader
        self.writer = writer
        self.futures: dict[str, tuple[str, asyncio.Future[Response | EventListResult]]] = {}
        self.banner: asyncio.Future[Banner] = loop.create_future()
        self.booted: asyncio.Future[None] = loop.create_future()
        self.reader_task: asyncio.Task[None] | None = None
        self.drop_reason: str | None = None  # why we dropped it (ping, protocol error…)
        self.lost: str | None = None  # set once: why the connection is gone

    def write(self, data: bytes) -> None:
        if self.lost is not None or self.writer.is_closing():
            raise AmiConnectionLost(f"connection #{self.number} is closed")
        self.writer.write(data)

    def drop(self, reason: str) -> None:
        """Abort the TCP connection now (the reader then sees the end of the stream)."""
        if self.drop_reason is None:
            self.drop_reason = reason
        self.writer.transport.abort()

    async def close(self) -> None:
        """Abort the connection and await the reader task."""
        self.drop("closed by us")
        if self.reader_task is not None:
            await _cancel_and_wait(self.reader_task)


async def _cancel_and_wait(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it to end, without swallowing our own cancellation."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        log.exception("AMI task %s failed", task.get_name())


def _os_reason(exc: OSError) -> str:
    """A short reason for a socket error ("connection refused", not asyncio's "Connect call
    failed ('127.0.0.1', 5038)")."""
    if exc.errno is not None:
        return os.strerror(exc.errno).lower()
    return str(exc) or type(exc).__name__


def _single(answer: Response | EventListResult) -> Response:
    """The Response of an action that is not a list action."""
    return answer if isinstance(answer, Response) else answer.response


def _fail(future: asyncio.Future[_T], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
        future.exception()  # mark it retrieved: nobody may be waiting any more


# -- events ---------------------------------------------------------------------------------------
class EventSubscription:
    """AMI events for one consumer, in order, through a bounded queue.

    Iterate it (``async for event in sub``) until the client closes or :meth:`close` is called.
    The reader never waits for a consumer: when the queue is full the oldest event is dropped
    and counted (:attr:`dropped`), with a warning at 1, 2, 4, 8… drops. Events keep flowing
    across reconnects; those Asterisk sent while the client was disconnected are lost.
    """

    def __init__(self, client: AmiClient, names: frozenset[str] | None,
                 where: Callable[[Event], bool] | None, maxsize: int, label: str) -> None:
        self._client = client
        self._names = names
        self._where = where
        self.maxsize = maxsize
        self.label = label
        self.dropped = 0
        self._queue: deque[Event] = deque()
        self._nonempty = asyncio.Event()
        self._ended = False

    def _offer(self, event: Event) -> None:
        if self._ended or (self._names is not None and event.name not in self._names):
            return
        if self._where is not None:
            try:
                if not self._where(event):
                    return
            except Exception:
                log.exception("AMI event filter of subscriber %r failed; event dropped",
                              self.label)
                return
        if len(self._queue) >= self.maxsize:
            self._queue.popleft()
            self.dropped += 1
            if self.dropped & (self.dropped - 1) == 0:  # 1, 2, 4, 8…
                log.warning("AMI event subscriber %r is too slow: %d event(s) dropped so far "
                            "(queue of %d)", self.label, self.dropped, self.maxsize)
        self._queue.append(event)
        self._nonempty.set()

    def _end(self) -> None:
        self._ended = True
        self._nonempty.set()

    def close(self) -> None:
        """Stop receiving; iteration ends once the queued events are consumed."""
        self._client._unsubscribe(self)
        self._end()

    def __len__(self) -> int:
        return len(self._queue)

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event:
        while not self._queue:
            if self._ended:
                raise StopAsyncIteration
            self._nonempty.clear()
            await self._nonempty.wait()
        return self._queue.popleft()

    async def get(self) -> Event:
        """The next event; AmiClosed once the subscription ended and its queue is empty."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise AmiClosed(f"event subscription {self.label!r} ended") from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the client -----------------------------------------------------------------------------------
class AmiClient:
    """An AMI session that stays up: see the module doc."""

    def __init__(self, settings: AmiSettings) -> None:
        self.settings = settings
        self._tag = secrets.token_hex(4)  # this client's ActionID prefix (see the module doc)
        # FullyBooted follows a login that asked for system events (Events: on / system / all)
        classes = (settings.events or "").lower().replace(" ", "").split(",")
        self._expect_boot = not _EVENT_CLASSES_WITH_BOOT.isdisjoint(classes)
        self._state = AmiState.IDLE
        self._link: _Link | None = None
        self._links_opened = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False
        self._wake = asyncio.Event()  # set on CONNECTED or CLOSED (wait_connected)
        # set at every change of `state`; an observer (health alerts) clears it and re-reads
        self.state_changed = asyncio.Event()
        self._subscriptions: list[EventSubscription] = []
        self._by_action: dict[str, OriginateHandle] = {}
        self._by_channel: dict[str, OriginateHandle] = {}
        self.connects = 0  # successful logins (1 + reconnects)
        self.disconnects = 0
        self.late_responses = 0  # answers that came after their action timed out
        self.banner: Banner | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def state(self) -> AmiState:
        """The connection state (for health checks and metrics)."""
        return self._state

    @property
    def is_connected(self) -> bool:
        """True when logged in and the connection is up."""
        return self._state is AmiState.CONNECTED

    def _set_state(self, state: AmiState) -> None:
        if state is self._state:
            return
        log.debug("AMI %s: %s → %s", self.settings.address, self._state.value, state.value)
        self._state = state
        self.state_changed.set()
        if state in (AmiState.CONNECTED, AmiState.CLOSED):
            self._wake.set()
        else:
            self._wake.clear()

    async def wait_connected(self) -> None:
        """Return once connected (at once if so); AmiClosed if the client is closed first.
        Bound it with ``asyncio.timeout`` as needed."""
        while True:
            if self._state is AmiState.CLOSED:
                raise AmiClosed(f"AMI client for {self.settings.address} is closed")
            if self._state is AmiState.CONNECTED:
                return
            await self._wake.wait()

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def connect(self) -> None:
        """Connect and log in once, raising AmiConnectError, AmiTimeout or
        AmiAuthenticationError; then keep the session up in the background."""
        if self._state is not AmiState.IDLE:
            raise RuntimeError(f"AmiClient.connect() in state {self._state.value}")
        self._set_state(AmiState.CONNECTING)
        try:
            link = await self._open_link()
        except BaseException:
            self._set_state(AmiState.CLOSED)
            raise
        self._on_connected(link)
        self._supervisor = asyncio.create_task(self._supervise(link),
                                               name=f"ami-supervisor-{self.settings.address}")

    async def close(self) -> None:
        """Log off (if connected), stop the tasks and wait for them; resolve what still waits
        (actions fail with AmiClosed, originate handles as CONNECTION_LOST, subscriptions
        end). Idempotent."""
        if self._closing:
            return
        self._closing = True
        link = self._link
        if link is not None and link.lost is None and self._state is AmiState.CONNECTED:
            try:
                await self._send(link, logoff_action(), self.settings.logoff_timeout)
            except AmiError as exc:
                log.debug("AMI %s: no Goodbye to our Logoff: %s", self.settings.address, exc)
        if self._supervisor is not None:
            await _cancel_and_wait(self._supervisor)
        if self._link is not None:
            await self._link.close()
        self._shutdown("the AMI client was closed")

    def _shutdown(self, reason: str) -> None:
        self._set_state(AmiState.CLOSED)
        self._link = None
        for handle in {*self._by_action.values(), *self._by_channel.values()}:
            handle.on_lost(reason)
        self._by_action.clear()
        self._by_channel.clear()
        for subscription in self._subscriptions:
            subscription._end()
        self._subscriptions.clear()

    def drop_connection(self, reason: str = "dropped on request") -> None:
        """Abort the current TCP connection now (as a dead peer would): waiting actions fail,
        originate handles resolve as CONNECTION_LOST, and the client reconnects."""
        if self._link is not None:
            self._link.drop(reason)

    # -- connections --------------------------------------------------------------------------
    async def _open_link(self) -> _Link:
        """A new TCP connection, logged in and fully booted, with its reader running."""
        s = self.settings
        self._links_opened += 1
        number = self._links_opened
        conn = AmiConnection(action_id_prefix=f"ars-{self._tag}-{number}-")
        try:
            async with asyncio.timeout(s.connect_timeout):
                reader, writer = await asyncio.open_connection(s.host, s.port)
        except TimeoutError:
            raise AmiTimeout(f"connecting to AMI at {s.address} timed out after "
                             f"{s.connect_timeout:g} s") from None
        except OSError as exc:
            raise AmiConnectError(f"cannot connect to AMI at {s.address}: "
                                  f"{_os_reason(exc)}") from exc
        link = _Link(number, conn, reader, writer)
        link.reader_task = asyncio.create_task(self._read(link),
                                               name=f"ami-reader-{s.address}-{number}")
        try:
            try:
                async with asyncio.timeout(s.connect_timeout):
                    self.banner = await link.banner
            except TimeoutError:
                raise AmiTimeout(f"AMI at {s.address} sent no banner within "
                                 f"{s.connect_timeout:g} s") from None
            except AmiConnectionLost as exc:
                raise AmiConnectError(f"AMI at {s.address} closed the connection before its "
                                      f"banner ({exc})") from None
            await self._login(link)
            if self._expect_boot:
                try:
                    async with asyncio.timeout(s.connect_timeout):
                        await link.booted
                except TimeoutError:
                    raise AmiTimeout(f"AMI at {s.address}: Asterisk was not fully booted within "
                                     f"{s.connect_timeout:g} s of the login") from None
        except BaseException:
            await link.close()
            raise
        return link

    async def _login(self, link: _Link) -> None:
        s = self.settings
        if s.auth == "md5":
            answer = await self._send(link, challenge_action(), s.action_timeout)
            challenge = answer.get("Challenge") if isinstance(answer, Response) else None
            if not challenge:
                message = answer.message if isinstance(answer, Response) else None
                raise AmiAuthenticationError(f"AMI at {s.address} gave no MD5 challenge "
                                             f"({message or 'no Challenge field'})")
            login = md5_login_action(s.username, s.secret, challenge, events=s.events)
        else:
            login = login_action(s.username, s.secret, events=s.events)
        try:
            answer = await self._send(link, login, s.action_timeout)
        except AmiTimeout:
            raise AmiTimeout(f"AMI login to {s.address} as {s.username!r} got no answer within "
                             f"{s.action_timeout:g} s") from None
        if not isinstance(answer, Response) or not answer.success:
            message = answer.message if isinstance(answer, Response) else "a list"
            raise AmiAuthenticationError(
                f"AMI login to {s.address} as {s.username!r} ({s.auth}) was refused: {message}"
                " (check the username and secret, and manager.conf's permit/deny)")

    def _on_connected(self, link: _Link) -> None:
        self._link = link
        self.connects += 1
        self._set_state(AmiState.CONNECTED)
        version = self.banner.version if self.banner is not None else "?"
        log.info("AMI connected to %s as %r (AMI %s, connection #%d)", self.settings.address,
                 self.settings.username, version, link.number)
        if link.lost is not None:  # dropped between the login and now: the supervisor reconnects
            self._current_lost(link)

    async def _supervise(self, link: _Link) -> None:
        """Keep the session up: keepalive on the live link; when it dies, reconnect."""
        try:
            while True:
                await self._keepalive(link)
                await link.close()
                if self._closing:
                    return
                link = await self._reconnect()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("AMI %s: the supervisor failed; the client is closed",
                          self.settings.address)
            self._closing = True
            await link.close()
            self._shutdown("the AMI client failed")

    async def _keepalive(self, link: _Link) -> None:
        """Return when ``link`` is dead: its reader ended, or a Ping went unanswered."""
        reader_task = link.reader_task
        assert reader_task is not None
        interval = self.settings.ping_interval
        while not reader_task.done():
            done, _ = await asyncio.wait({reader_task}, timeout=interval)
            if done:
                return
            if self._closing:
                continue  # close() is logging off on this link: leave it be
            try:
                await self._send(link, ping_action(), self.settings.ping_timeout)
            except AmiTimeout:
                log.warning("AMI %s: no Pong within %g s: the connection is dead, reconnecting",
                            self.settings.address, self.settings.ping_timeout)
                link.drop("no answer to Ping")
                return
            except AmiConnectionLost:
                return

    def _backoff(self, attempt: int) -> float:
        s = self.settings
        ceiling = min(s.reconnect_max, s.reconnect_min * 2 ** min(attempt, 32))
        return random.uniform(ceiling / 2, ceiling)

    async def _reconnect(self) -> _Link:
        attempt = 0
        while True:
            delay = self._backoff(attempt)
            attempt += 1
            log.info("AMI %s: reconnecting in %.2f s (attempt %d)", self.settings.address, delay,
                     attempt)
            await asyncio.sleep(delay)
            try:
                link = await self._open_link()
            except AmiAuthenticationError as exc:
                log.error("%s; retrying at the longest backoff", exc)
                attempt = max(attempt, 64)
                continue
            except AmiError as exc:
                log.warning("AMI %s: reconnect attempt %d failed: %s", self.settings.address,
                            attempt, exc)
                continue
            self._on_connected(link)
            return link

    async def _read(self, link: _Link) -> None:
        """The reader of one connection: bytes → core → dispatch, until the stream ends."""
        reason = "the peer closed the connection"
        try:
            while True:
                data = await link.reader.read(READ_SIZE)
                try:
                    received = link.conn.receive_data(data)
                except ProtocolError as exc:
                    reason = f"protocol error: {exc}"
                    log.error("AMI %s: %s; dropping the connection", self.settings.address, exc)
                    break
                for item in received:
                    self._dispatch(link, item)
                if not data:
                    break
        except OSError as exc:
            reason = f"connection error: {_os_reason(exc)}"
        finally:
            link.drop(reason)
            self._link_lost(link, link.drop_reason or reason)

    def _link_lost(self, link: _Link, reason: str) -> None:
        """Fail everything waiting on ``link``; start reconnecting (unless closing)."""
        if link.lost is not None:
            return
        link.lost = reason
        address = self.settings.address
        error_text = f"AMI connection to {address} lost ({reason})"
        _fail(link.banner, AmiConnectionLost(error_text))
        _fail(link.booted, AmiConnectionLost(error_text))
        for name, future in link.futures.values():
            _fail(future, AmiConnectionLost(f"{error_text} before the answer to {name}"))
        link.futures.clear()
        if self._link is link:  # else it never became current (a failed login)
            self._current_lost(link)

    def _current_lost(self, link: _Link) -> None:
        """The current connection is gone: originates in flight become unknown, and the
        supervisor reconnects (unless closing)."""
        error_text = f"AMI connection to {self.settings.address} lost ({link.lost})"
        self._link = None
        self.disconnects += 1
        handles = {*self._by_action.values(), *self._by_channel.values()}
        self._by_action.clear()
        self._by_channel.clear()
        for handle in handles:
            handle.on_lost("the AMI client was closed" if self._closing else error_text)
        if not self._closing:
            log.warning("%s; %d originate(s) in flight now unknown", error_text, len(handles))
            self._set_state(AmiState.RECONNECTING)

    # -- receiving ----------------------------------------------------------------------------
    def _dispatch(self, link: _Link, item: object) -> None:
        if isinstance(item, Event):
            self._on_event(link, item)
        elif isinstance(item, Response | EventListResult):
            action_id = item.action_id
            entry = link.futures.pop(action_id, None) if action_id is not None else None
            if entry is None or item.action is None:
                self.late_responses += 1
                log.debug("AMI %s: dropping %r (no action waits for it)", self.settings.address,
                          item)
            elif not entry[1].done():
                entry[1].set_result(item)
        elif isinstance(item, Banner):
            if not link.banner.done():
                link.banner.set_result(item)
        elif isinstance(item, ConnectionClosed) and item.truncated:
            log.debug("AMI %s: the stream ended inside a message", self.settings.address)

    def _on_event(self, link: _Link, event: Event) -> None:
        name = event.name
        if name == "OriginateResponse" or name == "Hangup":
            self._track_originate(event)
        elif name == "FullyBooted" and not link.booted.done():
            link.booted.set_result(None)
        for subscription in self._subscriptions:
            subscription._offer(event)

    def _track_originate(self, event: Event) -> None:
        try:
            if event.name == "OriginateResponse":
                action_id = _header(event.raw, "ActionID")
                handle = self._by_action.get(action_id) if action_id is not None else None
                if handle is not None:
                    response = OriginateResponse.from_event(event)
                    del self._by_action[handle.action_id]
                    handle.on_response(response)
                    if not handle.tracking:
                        self._by_channel.pop(handle.channel_id, None)
            else:
                uniqueid = _header(event.raw, "Uniqueid")
                handle = self._by_channel.get(uniqueid) if uniqueid is not None else None
                if handle is not None:
                    hangup = Hangup.from_event(event)
                    del self._by_channel[handle.channel_id]
                    handle.on_hangup(hangup)
        except ProtocolError as exc:
            log.warning("AMI %s: malformed %s event dropped: %s", self.settings.address,
                        event.name, exc)

    def _untrack(self, handle: OriginateHandle) -> None:
        if self._by_action.get(handle.action_id) is handle:
            del self._by_action[handle.action_id]
        if self._by_channel.get(handle.channel_id) is handle:
            del self._by_channel[handle.channel_id]

    # -- actions ------------------------------------------------------------------------------
    def _current_link(self) -> _Link:
        link = self._link
        if link is None or link.lost is not None or self._state is not AmiState.CONNECTED:
            if self._state is AmiState.CLOSED or self._closing:
                raise AmiClosed(f"AMI client for {self.settings.address} is closed")
            raise AmiConnectionLost(f"AMI {self.settings.address} is not connected "
                                    f"({self._state.value})")
        return link

    async def _send(self, link: _Link, action: Action,
                    timeout: float) -> Response | EventListResult:
        """Send ``action`` on ``link`` and wait for its answer. The ActionID must be unset or
        one ``link.conn`` gave (``next_action_id``)."""
        action = link.conn.with_action_id(action)
        action_id = action.action_id
        assert action_id is not None
        if link.lost is not None:
            raise AmiConnectionLost(f"AMI connection to {self.settings.address} lost "
                                    f"({link.lost})")
        future: asyncio.Future[Response | EventListResult] = (
            asyncio.get_running_loop().create_future())
        link.futures[action_id] = (action.name, future)
        try:
            link.write(link.conn.send(action))
            log.debug("AMI %s >> %s id=%s", self.settings.address, action.name, action_id)
            async with asyncio.timeout(timeout):
                await link.writer.drain()
                return await future
        except TimeoutError:
            raise AmiTimeout(f"AMI {self.settings.address}: no answer to {action.name} within "
                             f"{timeout:g} s") from None
        except OSError as exc:
            raise AmiConnectionLost(f"AMI connection to {self.settings.address} failed while "
                                    f"sending {action.name}: {_os_reason(exc)}") from exc
        finally:
            if link.futures.pop(action_id, None) is not None:  # timed out or cancelled
                link.conn.forget(action_id)

    async def action(self, action: Action, *,
                     timeout: float | None = None) -> Response | EventListResult:
        """Send ``action`` and return its answer: a Response (check ``.success``), or an
        EventListResult for a list action. The client sets the ActionID (any given one is
        replaced). AmiConnectionLost if not connected or the connection drops first,
        AmiTimeout after ``timeout`` (default ``action_timeout``); a late answer is dropped."""
        link = self._current_link()
        fresh = Action(action.name, action.fields)  # the client owns ActionIDs
        return await self._send(link, fresh, timeout or self.settings.action_timeout)

    async def command(self, command: str, *, timeout: float | None = None) -> list[str]:
        """Run a CLI command (``Action: Command``) and return its output lines."""
        answer = _single(await self.action(Action.build("Command", Command=command),
                                           timeout=timeout))
        if not answer.success:
            raise AmiActionError(answer, f"AMI Command failed: {answer.message}")
        return list(answer.output)

    async def ping(self, *, timeout: float | None = None) -> None:
        """One Ping/Pong round trip (AmiTimeout if none)."""
        await self.action(ping_action(), timeout=timeout)

    async def hangup(self, channel: str, cause: int | None = None) -> bool:
        """Hang up a channel by name or Uniqueid (Asterisk looks both up). True if one was hung
        up, False for ``No such channel``; AmiActionError for any other refusal."""
        answer = _single(await self.action(Action.build("Hangup", Channel=channel, Cause=cause)))
        if answer.success:
            return True
        if (answer.message or "").lower() == "no such channel":
            return False
        raise AmiActionError(answer, f"AMI Hangup failed: {answer.message}")

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, names: Iterable[str] | None = None, *,
                  where: Callable[[Event], bool] | None = None, maxsize: int | None = None,
                  label: str | None = None) -> EventSubscription:
        """Receive events whose name is in ``names`` (all if None) and for which ``where``
        returns True. Use as ``with ami.subscribe({"Hangup"}) as events: async for …``."""
        if self._state is AmiState.CLOSED:
            raise AmiClosed(f"AMI client for {self.settings.address} is closed")
        subscription = EventSubscription(
            self, None if names is None else frozenset(names), where,
            maxsize or self.settings.event_queue_size,
            label or f"subscriber-{len(self._subscriptions) + 1}")
        self._subscriptions.append(subscription)
        return subscription

    def events(self, *, maxsize: int | None = None) -> EventSubscription:
        """Every event (``subscribe()`` without a filter)."""
        return self.subscribe(maxsize=maxsize, label="all-events")

    def _unsubscribe(self, subscription: EventSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(subscription)

    # -- originate ----------------------------------------------------------------------------
    async def originate(self, channel: str, *, context: str | None = None,
                        exten: str | None = None, priority: int | str = 1,
                        application: str | None = None, data: str | None = None,
                        ring_timeout: float = 30.0, caller_id: str | None = None,
                        variables: Mapping[str, str] | Iterable[str] = (),
                        channel_id: str | None = None, other_channel_id: str | None = None,
                        account: str | None = None, codecs: str | None = None,
                        timeout: float | None = None) -> OriginateHandle:
        """Start an Async Originate of ``channel`` (``PJSIP/…``, ``Local/s@ctx``) to
        ``context``/``exten``/``priority`` or to ``application``/``data``, ringing at most
        ``ring_timeout`` seconds, with ``variables`` (``{"__X": "1"}`` or ``["__X=1"]``;
        values are escaped). On a Local channel every Originate variable reaches both halves;
        ``__`` also carries it into channels dialled from there.

        ``channel_id`` becomes the channel's Uniqueid (a uuid4 when None), how its Hangup is
        found. Raises (nothing was sent) ValueError for bad arguments, AmiConnectionLost or
        AmiClosed when not connected. Anything after the write is reported by the handle:
        REFUSED for ``Response: Error``, CONNECTION_LOST when the connection drops.
        """
        if (application is None) == (context is None and exten is None):
            raise ValueError("originate to context+exten, or to application, not both/neither")
        if application is None and (context is None or exten is None):
            raise ValueError("originate to the dialplan needs both context and exten")
        if not ring_timeout > 0:
            raise ValueError("ring_timeout must be > 0")
        fields, names = originate_variables(variables)
        channel_id = channel_id or str(uuid.uuid4())
        if channel_id in self._by_channel:
            raise ValueError(f"channel id {channel_id!r} is already in use")
        link = self._current_link()
        action = Action.build(
            "Originate", action_id=link.conn.next_action_id(), Channel=channel,
            Context=context, Exten=exten, Priority=None if application else priority,
            Application=application, Data=data, Timeout=round(ring_timeout * 1000),
            CallerID=caller_id, Account=account, Codecs=codecs, Async=True,
            ChannelId=channel_id, OtherChannelId=other_channel_id, Variable=fields)
        action_id = action.action_id
        assert action_id is not None
        loop = asyncio.get_running_loop()
        handle = OriginateHandle(
            action_id, channel_id, other_channel_id,
            deadline=loop.time() + ring_timeout + self.settings.originate_grace,
            hangup_grace=self.settings.hangup_grace, hangup=self.hangup, release=self._untrack)
        self._by_action[action_id] = handle  # before sending: events may follow the answer
        self._by_channel[channel_id] = handle
        log.info("AMI %s: originate %s channel id %s (variables: %s)", self.settings.address,
                 channel.partition("/")[0] or "?", channel_id, ", ".join(names) or "none")
        try:
            answer = await self._send(link, action, timeout or self.settings.action_timeout)
        except AmiConnectionLost as exc:
            handle.on_lost(str(exc))
            self._untrack(handle)
            return handle
        except AmiTimeout as exc:
            log.warning("%s; following the Originate's events anyway", exc)
            return handle
        except BaseException:
            self._untrack(handle)
            raise
        if not isinstance(answer, Response) or not answer.success:
            message = answer.message if isinstance(answer, Response) else "a list"
            log.warning("AMI %s: Originate %s refused: %s", self.settings.address, channel_id,
                        message)
            handle.on_refused(message or "Error")
            self._untrack(handle)
        return handle
