"""A real PostgreSQL 15 as a test peer: a private throw-away cluster on a free port.

The Debian package ``postgresql-15`` (``make setup`` installs it) puts the server binaries in
``/usr/lib/postgresql/15/bin``; nothing of the system's own cluster is used. :func:`start_postgres`
runs ``initdb`` into a temporary directory and starts the server with ``pg_ctl`` on 127.0.0.1
(TCP port chosen free, UNIX socket in the same directory), tuned for tests (no fsync). The
server refuses to run as root, so as root every server command runs as the ``postgres`` user
(``runuser -u postgres --``) and the directory is handed to that user first.

Blocking API (subprocesses of a few ms to a second); from async code that must keep its event
loop running meanwhile (fault tests), call ``await asyncio.to_thread(server.restart)``.
"""

from __future__ import annotations

import itertools
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN = Path("/usr/lib/postgresql/15/bin")
SERVER_USER = "postgres"  # runs the server when we are root
SUPERUSER = "postgres"  # the cluster's superuser (initdb -U), trusted on 127.0.0.1
START_TIMEOUT = 60  # seconds: pg_ctl -w; it starts in ~0.3 s here, a loaded CI box is slower
COMMAND_TIMEOUT = 120.0
START_ATTEMPTS = 3  # a free port can be taken between choosing and binding it
LOG_TAIL_LINES = 40
UNIX_SOCKET_MAX = 107  # bytes in sockaddr_un.sun_path, minus the final NUL


class PostgresError(RuntimeError):
    """A PostgreSQL command failed; the message holds its output (and the server log tail)."""


def postgres_skip_reason() -> str | None:
    """None when a PostgreSQL 15 server can be started for tests, else the precise reason."""
    for name in ("initdb", "pg_ctl", "postgres", "psql"):
        if not os.access(PG_BIN / name, os.X_OK):
            return (f"PostgreSQL 15 is not installed ({PG_BIN / name} is missing): run "
                    "`make setup` (installs the Debian package postgresql)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return (f"running as root and there is no {SERVER_USER!r} user to run PostgreSQL "
                    "as (the server refuses to run as root)")
        if shutil.which("runuser") is None:
            return "running as root and `runuser` is missing (needed to run PostgreSQL as postgres)"
    return None


def free_port() -> int:
    """A TCP port nobody uses on 127.0.0.1 right now (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_server(command: list[str]) -> list[str]:
    return ["runuser", "-u", SERVER_USER, "--", *command] if os.geteuid() == 0 else command


def _run(command: list[str], *, cwd: Path, what: str) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False,
                              timeout=COMMAND_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PostgresError(f"{what}: `{shlex.join(command)}` failed: {exc}") from exc
    if done.returncode != 0:
        raise PostgresError(f"{what}: `{shlex.join(command)}` exited {done.returncode}:\n"
                            f"{(done.stderr + done.stdout).strip()}")
    return done


@dataclass
class PostgresServer:
    """One private cluster: its directories, its port, and start/stop/restart."""

    base: Path  # the temporary directory holding everything below
    port: int
    data_dir: Path = field(init=False)
    socket_dir: Path = field(init=False)
    log_path: Path = field(init=False)
    starts: int = field(default=0, init=False)  # how many times start() brought it up
    _numbers: itertools.count[int] = field(default_factory=itertools.count, init=False,
                                           repr=False)

    def __post_init__(self) -> None:
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "socket"
        self.log_path = self.base / "postgres.log"

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL of database ``dbname`` on this server."""
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self) -> str:
        """A new, empty database with a unique name; returns the name."""
        name = f"ars_test_{next(self._numbers)}_{secrets.token_hex(4)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` with psql as the superuser (over TCP, as the tests' clients do); returns
        its unaligned output."""
        done = _run([str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                     "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER, "-d", dbname,
                     "-c", sql], cwd=self.base, what="psql")
        return done.stdout

    def init(self) -> None:
        """initdb: trust authentication, superuser ``postgres``, UTF-8, no fsync."""
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            server = pwd.getpwnam(SERVER_USER)
            for path in (self.base, self.socket_dir):
                os.chown(path, server.pw_uid, server.pw_gid)
            probe = subprocess.run(_as_server(["test", "-w", str(self.base), "-a", "-x",
                                               str(self.base)]), check=False)
            if probe.returncode != 0:
                raise PostgresError(f"{self.base}: the {SERVER_USER} user cannot reach it (a "
                                    "parent directory is private?): use tempfile.mkdtemp()")
        # --locale=C: initdb must not depend on which locales this machine generated.
        _run(_as_server([str(PG_BIN / "initdb"), "-D", str(self.data_dir), "-A", "trust",
                         "-U", SUPERUSER, "--no-sync", "-E", "UTF8", "--locale=C"]),
             cwd=self.base, what="initdb")

    def start(self) -> None:
        """Start the server with ``pg_ctl -w`` (returns once it accepts connections); on failure
        PostgresError with the tail of the server log."""
        options = " ".join([
            f"-c port={self.port}", "-c listen_addresses=127.0.0.1",
            f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
            # a test cluster: losing it on a power cut is fine, waiting for the disk is not
            "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off"])
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path),
                   "-w", "-t", str(START_TIMEOUT), "-o", options, "start"]
        try:
            _run(_as_server(command), cwd=self.base, what="pg_ctl start")
        except PostgresError as exc:
            raise PostgresError(f"PostgreSQL did not start on port {self.port}: {exc}\n"
                                f"{self.log_tail()}") from exc
        self.starts += 1

    def stop(self) -> None:
        """``pg_ctl stop -m fast`` (clients are disconnected); nothing if it is not running."""
        if not (self.data_dir / "postmaster.pid").exists():
            return
        _run(_as_server([str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w",
                         "-t", str(START_TIMEOUT), "stop"]), cwd=self.base, what="pg_ctl stop")

    def restart(self) -> None:
        """Stop, then start again on the same port (clients see their connections drop)."""
        self.stop()
        self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of the server log (for failure reports)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"(no PostgreSQL log at {self.log_path})"
        tail = text.splitlines()[-lines:]
        return f"---- {self.log_path} (last {len(tail)} lines)\n" + "\n".join(tail)


def start_postgres(tmp: Path) -> PostgresServer:
    """A new cluster in ``tmp`` (a directory of its own, reachable by the postgres user when
    we are root: make it with ``tempfile.mkdtemp()``, pytest's tmp_path is private to root),
    started on a free port. Raises PostgresError, with the server log, if it cannot start."""
    socket_path = tmp / "socket" / ".s.PGSQL.65535"
    if len(str(socket_path).encode()) > UNIX_SOCKET_MAX:
        raise PostgresError(f"{tmp}: path too long for a UNIX socket inside it ({socket_path})")
    server = PostgresServer(base=tmp, port=free_port())
    server.init()
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            server.start()
            return server
        except PostgresError:
            # The port was taken between free_port() and the server's bind: try another one.
            if attempt == START_ATTEMPTS or "could not bind" not in server.log_tail():
                raise
            server.port = free_port()
    raise AssertionError("unreachable")
