"""The FastAGI server: the asyncio edge around :class:`~.protocol.AgiSession`.

Asterisk connects once per call (dialplan ``AGI(agi://host:port/scenario?call_id=…)``), sends
its environment block, then waits for commands. :class:`FastAgiServer` accepts the connections;
:class:`AgiConnection` wraps one of them: a reader task feeds every read to the session and
resolves the command awaiting its reply; :meth:`AgiConnection.command` writes one command and
waits for its reply under a deadline (the core has no clock).

A connection goes, once its environment arrived within ``environment_timeout``, to

* the :class:`ExpectedCall` registered for its ``call_id`` query, or when the request has none,
  for its ``agi_uniqueid`` (which AMI ``Originate``'s ``ChannelId`` sets): the Asterisk backend
  registers a call before it originates it, then runs the scenario on the connection it is
  handed;
* else, when the request names no ``call_id``, the server's default ``handler``;
* else nobody: Asterisk is told ``HANGUP`` and the connection is closed (a stray or late call
  must not sit in the dialplan).

Ownership (STYLE.md rule 6): the server owns one task per connection and cancels and awaits them
all on exit; each connection owns its reader task. A handler's exception, a peer that breaks the
protocol or sends no environment is logged and its connection closed; the server goes on.
Logs carry the ``repr`` of commands and replies only, which masks keys the callee typed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from types import TracebackType

from ...errors import ArsError, CalleeHangup, ChannelError, ProtocolError
from .commands import AgiCommand, Hangup
from .events import AgiEnvironment, AgiEvent, AgiReply, AsyncHangup
from .protocol import AgiSession

__all__ = ["AgiConnection", "AgiHandler", "ExpectedCall", "FastAgiServer", "describe_error"]

log = logging.getLogger("ars_engine.agi")

READ_SIZE = 65536
ENVIRONMENT_TIMEOUT = 5.0  # seconds for Asterisk to send the agi_* block after connecting
REFUSE_TIMEOUT = 5.0  # seconds for the reply to the HANGUP that refuses a stray call
MAX_CONNECTIONS = 512

AgiHandler = Callable[["AgiConnection"], Awaitable[None]]


def describe_error(exc: BaseException) -> str:
    """An exception for a log line, without secrets: ars-engine errors carry no secret in their
    message (errors.py), so theirs is shown; any other exception shows only its type and where
    it was raised (a foreign message may quote data)."""
    if isinstance(exc, ArsError):
        return f"{type(exc).__name__}: {exc}"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"{type(exc).__name__}{where}"


class AgiConnection:
    """One FastAGI connection: the environment, one command at a time, the hang-up signal.

    * :attr:`environment`: the ``agi_*`` block (``environment.query["call_id"]``…);
    * :meth:`command`: send one command and return its reply (errors are not raised here: read
      the reply with :func:`~.replies.check` or a reader);
    * :attr:`hung_up`: set when Asterisk pushes ``HANGUP`` (the channel is down; the connection
      still answers, media commands with 511);
    * :meth:`close`: close the socket (also the only way to abort a running command).
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._session = AgiSession()
        peer = writer.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.hung_up = asyncio.Event()
        self._ready = asyncio.Event()  # the environment arrived, or the reader ended
        self._ended = asyncio.Event()  # the reader ended: peer closed, protocol error or close()
        self._pending: asyncio.Future[AgiReply] | None = None
        self._failure: str | None = None  # why no command can run any more
        self._reader_task: asyncio.Task[None] | None = None

    # -- state --------------------------------------------------------------------------------
    @property
    def environment(self) -> AgiEnvironment:
        """The environment block (ChannelError before it arrived)."""
        env = self._session.environment
        if env is None:
            raise ChannelError(f"AGI connection {self.peer}: no environment yet")
        return env

    @property
    def call_id(self) -> str | None:
        """The request's ``call_id`` query value, None when absent or before the environment."""
        env = self._session.environment
        return env.query.get("call_id") if env is not None else None

    @property
    def usable(self) -> bool:
        """False once the connection closed or failed: every command would raise."""
        return self._failure is None

    def __repr__(self) -> str:
        env = self._session.environment
        what = repr(env) if env is not None else "(no environment)"
        return f"<AgiConnection {self.peer} {what}>"

    # -- life ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start reading (the reader task is this connection's; :meth:`close` ends it)."""
        if self._reader_task is None:
            self._reader_task = asyncio.create_task(self._read_loop(),
                                                    name=f"agi-reader {self.peer}")

    async def wait_environment(self) -> AgiEnvironment:
        """Wait for the environment block; ChannelError if the connection ends first."""
        await self._ready.wait()
        env = self._session.environment
        if env is None:
            raise ChannelError(f"AGI connection {self.peer} ended before its environment: "
                               f"{self._failure}")
        return env

    async def wait_ended(self) -> None:
        """Wait until the connection stopped reading (peer closed, error, or :meth:`close`)."""
        await self._ended.wait()

    async def close(self) -> None:
        """Close the socket and stop the reader (idempotent). A command awaiting its reply
        raises ChannelError (CalleeHangup after a hang-up)."""
        self._fail("the connection was closed by the engine")
        task, self._reader_task = self._reader_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ended.set()
        self._ready.set()
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()

    # -- commands -----------------------------------------------------------------------------
    async def command(self, command: AgiCommand, *, timeout: float) -> AgiReply:
        """Send ``command`` and return its reply, within ``timeout`` seconds.

        One command at a time: a second one while a reply is pending is a bug
        (LocalProtocolError). No reply in time, or a cancelled wait, closes the connection:
        anything written while a command runs makes Asterisk abandon it silently (res_agi.c
        handle_streamfile), so the socket is the only clean way to stop it. Raises
        ChannelError when the connection is closed or fails (CalleeHangup if Asterisk had
        pushed ``HANGUP``).
        """
        if self._failure is not None:
            raise self._closed_error()
        data = self._session.send(command)
        future: asyncio.Future[AgiReply] = asyncio.get_running_loop().create_future()
        self._pending = future
        log.debug("agi %s >> %r", self.peer, command)
        try:
            self._writer.write(data)
            async with asyncio.timeout(timeout):
                await self._writer.drain()
                reply = await future
        except TimeoutError:
            log.warning("agi %s: no reply to %s within %.1f s; closing the connection",
                        self.peer, command.name, timeout)
            self._fail(f"no reply to {command.name} within {timeout:.1f} s")
            self._writer.close()
            raise ChannelError(f"Asterisk sent no reply to {command.name} within "
                               f"{timeout:.1f} s") from None
        except asyncio.CancelledError:
            self._fail(f"{command.name} was cancelled")
            self._writer.close()
            raise
        except OSError as exc:
            self._fail(f"socket error: {type(exc).__name__}")
            self._writer.close()
            raise ChannelError(f"AGI connection {self.peer}: {type(exc).__name__}") from exc
        finally:
            self._pending = None
            _settle(future)
        log.debug("agi %s << %r", self.peer, reply)
        return reply

    def _closed_error(self) -> ChannelError:
        if self.hung_up.is_set():
            return CalleeHangup(f"the callee hung up and the AGI connection ended "
                                f"({self._failure})")
        return ChannelError(f"AGI connection {self.peer} is closed: {self._failure}")

    def _fail(self, why: str) -> None:
        """No command can run any more; the one awaiting its reply raises."""
        if self._failure is None:
            self._failure = why
        pending = self._pending
        if pending is not None and not pending.done():
            pending.set_exception(self._closed_error())

    # -- reading ------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            while True:
                data = await self._reader.read(READ_SIZE)
                for event in self._session.receive_data(data):
                    self._on_event(event)
                if self._session.failed:
                    # The events before the bad line were delivered; this raises its error.
                    self._session.receive_data(b"")
                if not data:
                    self._fail("Asterisk closed the connection")
                    return
        except ProtocolError as exc:
            log.warning("agi %s: the peer broke the protocol (%s); closing", self.peer, exc)
            self._fail(f"protocol error: {exc.message}")
        except OSError as exc:
            self._fail(f"socket error: {type(exc).__name__}")
        finally:
            self._ended.set()
            self._ready.set()
            if self._failure is not None:
                self._writer.close()

    def _on_event(self, event: AgiEvent) -> None:
        if isinstance(event, AgiEnvironment):
            log.debug("agi %s: %r", self.peer, event)
            self._ready.set()
        elif isinstance(event, AgiReply):
            pending = self._pending
            if pending is not None and not pending.done():
                pending.set_result(event)
        elif isinstance(event, AsyncHangup):
            log.debug("agi %s: HANGUP (the channel is down)", self.peer)
            self.hung_up.set()


def _settle(future: asyncio.Future[AgiReply]) -> None:
    """Leave no future with an unread exception behind (asyncio would log it)."""
    if not future.done():
        future.cancel()
    elif not future.cancelled():
        future.exception()


class ExpectedCall:
    """A call the backend is about to originate: the server hands it the connection whose
    request carries its ``call_id`` (or, with no ``call_id`` query, whose ``agi_uniqueid`` is
    it: Originate's ``ChannelId``). Use as ``async with server.expect(call_id) as call``;
    leaving the block unregisters it and closes the connection it was handed."""

    def __init__(self, server: FastAgiServer, call_id: str) -> None:
        self.call_id = call_id
        self._server = server
        self._arrived: asyncio.Future[AgiConnection] = (
            asyncio.get_running_loop().create_future())

    async def connection(self, timeout: float | None = None) -> AgiConnection:
        """The call's AGI connection once Asterisk opened it (TimeoutError after ``timeout``
        seconds; waiting again later is allowed)."""
        async with asyncio.timeout(timeout):
            return await asyncio.shield(self._arrived)

    @property
    def arrived(self) -> bool:
        """True once the connection was handed over."""
        return self._arrived.done() and not self._arrived.cancelled()

    def _take(self, conn: AgiConnection) -> bool:
        if self._arrived.done():
            return False  # a second connection for the same call: refuse it
        self._arrived.set_result(conn)
        return True

    async def __aenter__(self) -> ExpectedCall:
        self._server._register(self)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self._server._unregister(self)
        if self.arrived:
            await self._arrived.result().close()
        else:
            self._arrived.cancel()


class FastAgiServer:
    """Accepts Asterisk's FastAGI connections: ``async with FastAgiServer(host, port, handler)``.

    ``port`` 0 picks a free port (:attr:`port` tells which). ``allowed_hosts``, when given, is
    the set of peer addresses accepted (others are closed at once). ``handler(conn)`` serves a
    connection whose request names no ``call_id`` and matches no expected call; calls
    registered with :meth:`expect` are routed by ``call_id`` query, else ``agi_uniqueid``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, handler: AgiHandler | None = None,
                 *, environment_timeout: float = ENVIRONMENT_TIMEOUT,
                 allowed_hosts: Collection[str] | None = None,
                 max_connections: int = MAX_CONNECTIONS,
                 refuse_timeout: float = REFUSE_TIMEOUT) -> None:
        self.host = host
        self.requested_port = port
        self.handler = handler
        self.environment_timeout = environment_timeout
        self.allowed_hosts = frozenset(allowed_hosts) if allowed_hosts is not None else None
        self.max_connections = max_connections
        self.refuse_timeout = refuse_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._expected: dict[str, ExpectedCall] = {}

    @property
    def port(self) -> int:
        """The port listened on."""
        if self._server is None:
            raise RuntimeError("the FastAGI server is not running")
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        """``agi://host:port`` for the dialplan."""
        return f"agi://{self.host}:{self.port}"

    @property
    def connections(self) -> int:
        """Connections being served now."""
        return len(self._tasks)

    async def __aenter__(self) -> FastAgiServer:
        self._server = await asyncio.start_server(self._accepted, self.host,
                                                  self.requested_port)
        log.info("FastAGI server listening on %s", self.url)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop accepting, cancel every connection's task and wait for them."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    def expect(self, call_id: str) -> ExpectedCall:
        """Register a call about to be originated (see :class:`ExpectedCall`)."""
        return ExpectedCall(self, call_id)

    def _register(self, call: ExpectedCall) -> None:
        if call.call_id in self._expected:
            raise ValueError(f"call {call.call_id} is already expected")
        self._expected[call.call_id] = call

    def _unregister(self, call: ExpectedCall) -> None:
        if self._expected.get(call.call_id) is call:
            del self._expected[call.call_id]

    # -- connections --------------------------------------------------------------------------
    def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else None
        if self.allowed_hosts is not None and host not in self.allowed_hosts:
            log.warning("FastAGI: refused a connection from %s (not an allowed host)", host)
            writer.close()
            return
        if len(self._tasks) >= self.max_connections:
            log.warning("FastAGI: refused a connection from %s (%d connections already)",
                        host, len(self._tasks))
            writer.close()
            return
        conn = AgiConnection(reader, writer)
        task = asyncio.create_task(self._serve(conn), name=f"agi {conn.peer}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: AgiConnection) -> None:
        try:
            conn.start()
            try:
                async with asyncio.timeout(self.environment_timeout):
                    env = await conn.wait_environment()
            except TimeoutError:
                log.warning("agi %s: no environment within %.1f s; closing", conn.peer,
                            self.environment_timeout)
                return
            except ChannelError as exc:  # closed or broke the protocol (logged by the reader)
                log.info("agi %s: %s", conn.peer, exc)
                return
            await self._dispatch(conn, env)
        finally:
            await conn.close()

    async def _dispatch(self, conn: AgiConnection, env: AgiEnvironment) -> None:
        # Route by the request's ?call_id=, else by the channel's unique id (AMI Originate's
        # ChannelId sets it: agi_uniqueid in tests/transcripts/asterisk/agi_*.rx.bin).
        call_id = env.query.get("call_id")
        key = call_id if call_id is not None else env.uniqueid
        expected = self._expected.get(key) if key else None
        if expected is not None:
            if not expected._take(conn):
                log.warning("agi %s: call %r already has its connection (channel %s); hanging "
                            "this one up", conn.peer, key, env.channel)
                await self._refuse(conn)
                return
            log.info("agi %s: call %s arrived (channel %s)", conn.peer, key, env.channel)
            await conn.wait_ended()  # the ExpectedCall's owner runs the call and closes it
            return
        if call_id is not None or self.handler is None:
            log.warning("agi %s: no call awaits call_id %r (channel %s, uniqueid %s); hanging "
                        "it up", conn.peer, call_id, env.channel, env.uniqueid)
            await self._refuse(conn)
            return
        try:
            await self.handler(conn)
        except Exception as exc:  # a handler's bug must not take the server down
            log.error("agi %s: handler failed: %s", conn.peer, describe_error(exc))

    async def _refuse(self, conn: AgiConnection) -> None:
        with contextlib.suppress(ArsError):
            await conn.command(Hangup(), timeout=self.refuse_timeout)
