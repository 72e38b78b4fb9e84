"""A real Asterisk 22 as a test peer (like SIPp): one private instance per test, on free ports.

The build comes from ``../shared/asterisk/asterisk-22-bookworm.tgz`` (see its README): installed
binaries in ``/opt/asterisk``, a self-contained test config in ``/opt/asterisk-test``. The project
never contains or builds Asterisk; these tests skip, saying why, when it is not there.

Each :class:`AsteriskPeer` gets its own copy of the test config with every port free and every
writable directory private (run, log, spool, db…), so tests, and other sessions on the same
machine, never share an instance. What the config offers (all on 127.0.0.1):

* AMI on ``ami_port``, user ``ami_user``/``ami_secret`` (read/write all; plain and MD5 login).
* PJSIP UDP on ``sip_port``; endpoint ``softphone`` dials ``127.0.0.1:softphone_port``.
* ``ars-out``: ``AGI(agi://127.0.0.1:<agi_port>/scenario)`` then Hangup.
* Far ends for ``Local/s@<context>``: ``callee`` (answer, DTMF 123456 after 1 s, hang up 5 s
  later), ``callee-long`` (same, 40 s), ``callee-noanswer`` (rings 60 s), ``callee-busy``, and
  the contexts this module adds (``EXTRA_DIALPLAN``): ``callee-keys`` (answer, wait
  ``${KEYS_DELAY}`` s (default 1), ``SendDTMF(${KEYS})``, wait 40 s), ``callee-hangup`` (answer,
  hang up after ``${HANGUP_DELAY}`` s (default 1)), ``callee-reject`` (cause 21),
  ``callee-congestion``. Pass the variables on the Originate (``Variable: __KEYS=123#``):
  Asterisk 22 copies every Originate variable to the Local channel's ;2 half, which runs the
  callee context; the ``__`` prefix also keeps them on channels dialled from there
  (tests/integration/test_ami_asterisk.py checks both halves and the keys' arrival).
  ``Answer()`` on the ;2 half takes ~0.5 s (it waits for media), so keys start about
  ``KEYS_DELAY`` + 0.6 s after the answer, 350 ms apart with the default gap and duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pytest

ROOT = Path(__file__).resolve().parents[2]
ASTERISK_TGZ = ROOT.parent / "shared" / "asterisk" / "asterisk-22-bookworm.tgz"
ASTERISK_HOME = Path("/opt/asterisk")
ASTERISK_BIN = ASTERISK_HOME / "sbin" / "asterisk"
TEST_CONFIG = Path("/opt/asterisk-test/etc")
# The runtime libraries the build needs on Debian bookworm (../shared/asterisk/README.md).
RUNTIME_PACKAGES = ("libssl3", "libjansson4", "libxml2", "libxslt1.1", "libsqlite3-0",
                    "libuuid1", "libedit2", "libsrtp2-1")

AMI_USER = "ars"
AMI_SECRET = "ars-secret"
START_TIMEOUT = 30.0  # seconds: Asterisk boots in ~0.5 s here; a loaded CI machine is slower
STOP_TIMEOUT = 10.0  # 'core stop now' → exit; after that the process is killed
CLI_TIMEOUT = 10.0
LOG_TAIL_LINES = 60
# Directories that stay on the installed build: modules, sounds + MOH (astdatadir), AGI scripts,
# binaries. Every other [directories] entry moves under the test's run dir.
_SHARED_DIRS = frozenset({"astmoddir", "astdatadir", "astagidir", "astsbindir"})

# Far ends added for tests (see the module docstring). ${IF(...)} gives the defaults.
EXTRA_DIALPLAN = """
; -- added by tests/integration/asterisk_peer.py ------------------------------------------------
; Far end that answers, presses ${KEYS} (RFC 4733 towards the caller) after ${KEYS_DELAY} s
; (default 1), then stays up 40 s. Optional: ${KEYS_GAP} ms between keys (default 250),
; ${KEYS_DURATION} ms per key (default 100). Originate with Variable: __KEYS=... (inherited).
[callee-keys]
exten => s,1,Answer()
 same => n,Wait(${IF($["${KEYS_DELAY}" = ""]?1:${KEYS_DELAY})})
 same => n,ExecIf($["${KEYS}" != ""]?SendDTMF(${KEYS},${KEYS_GAP},${KEYS_DURATION}))
 same => n,Wait(40)
 same => n,Hangup()

; Far end that answers and hangs up after ${HANGUP_DELAY} s (default 1).
[callee-hangup]
exten => s,1,Answer()
 same => n,Wait(${IF($["${HANGUP_DELAY}" = ""]?1:${HANGUP_DELAY})})
 same => n,Hangup()

; Far end that refuses the call: cause 21 (call rejected).
[callee-reject]
exten => s,1,Hangup(21)

; Far end whose network is congested (Congestion: cause 34).
[callee-congestion]
exten => s,1,Congestion(5)
"""


class AsteriskCliError(RuntimeError):
    """``asterisk -rx`` failed (the instance is not running, or the command timed out)."""


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nobody uses on 127.0.0.1 right now (bind to port 0 and read it back)."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- availability ---------------------------------------------------------------------------------
def _runs() -> str | None:
    """None if the installed binary starts (prints its version), else why not."""
    try:
        done = subprocess.run([str(ASTERISK_BIN), "-V"], capture_output=True, text=True,
                              timeout=CLI_TIMEOUT, check=False)
    except OSError as exc:
        return f"{ASTERISK_BIN} cannot be run: {exc}"
    except subprocess.TimeoutExpired:
        return f"{ASTERISK_BIN} -V did not answer within {CLI_TIMEOUT:.0f} s"
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{ASTERISK_BIN} -V failed (exit {done.returncode}): {detail[0]}"
    return None


def _install() -> str | None:
    """Unpack the shared build to / and install its runtime libraries (`make setup` installs
    them too); None if it worked. apt-get runs `update` first only when the install fails."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def run(command: list[str]) -> str | None:
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=600,
                                  check=False, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"installing Asterisk: `{' '.join(command[:2])}` failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return (f"installing Asterisk: `{' '.join(command[:2])}` exited {done.returncode}:"
                    f" {tail[0]}")
        return None

    install = ["apt-get", "install", "-y", "-qq", *RUNTIME_PACKAGES]
    return (run(["tar", "xzf", str(ASTERISK_TGZ), "-C", "/"])
            or (run(install) and (run(["apt-get", "update", "-qq"]) or run(install))))


@functools.cache
def asterisk_skip_reason() -> str | None:
    """None when a real Asterisk can be started for tests, else the precise reason it cannot.

    Asterisk is used only when ``../shared/asterisk/`` is there (it is a shared test peer, not
    part of the project). When ``/opt/asterisk`` is missing and we are root, it is installed
    from the shared tarball first (tar + apt-get, as its README says).
    """
    if not ASTERISK_TGZ.parent.is_dir():
        return (f"{ASTERISK_TGZ.parent} is absent: no Asterisk test peer on this machine "
                "(the AMI/FastAGI integration tests need it)")
    if not ASTERISK_BIN.exists():
        if not ASTERISK_TGZ.is_file():
            return (f"Asterisk is not installed ({ASTERISK_BIN} missing) and {ASTERISK_TGZ} "
                    "is absent")
        if os.geteuid() != 0:
            return (f"Asterisk is not installed ({ASTERISK_BIN} missing) and installing it needs "
                    f"root: `tar xzf {ASTERISK_TGZ} -C /` and `apt-get install -y "
                    f"{' '.join(RUNTIME_PACKAGES)}`")
        failed = _install()
        if failed is not None:
            return failed
    if not (TEST_CONFIG / "asterisk.conf").is_file():
        return f"{TEST_CONFIG}/asterisk.conf is missing: reinstall {ASTERISK_TGZ}"
    return _runs()


# -- config ---------------------------------------------------------------------------------------
def _substitute(text: str, pattern: str, replacement: str, what: str) -> str:
    new, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count == 0:
        raise RuntimeError(f"{TEST_CONFIG}: no {what} to rewrite ({pattern!r}); config changed?")
    return new


def _asterisk_conf(text: str, dirs: dict[str, Path]) -> str:
    def place(match: re.Match[str]) -> str:
        key = match.group(1)
        return match.group(0) if key not in dirs else f"{key} => {dirs[key]}"
    return re.sub(r"^(ast\w+dir)\s*=>\s*(.*)$", place, text, flags=re.MULTILINE)


# -- the peer -------------------------------------------------------------------------------------
@dataclass
class AsteriskPeer:
    """One private Asterisk: its config dir, its ports, and start/stop/restart."""

    etc_dir: Path
    run_dir: Path
    ami_port: int
    sip_port: int
    agi_port: int  # where ars-out's AGI() connects: the test's FastAGI server listens here
    softphone_port: int  # where endpoint "softphone" sends INVITEs (a softphone/SIPp listens)
    sounds_dir: Path  # prompts for STREAM FILE by absolute path (without the extension)
    ami_host: str = "127.0.0.1"
    ami_user: str = AMI_USER
    ami_secret: str = AMI_SECRET
    log_path: Path = field(init=False)
    starts: int = field(default=0, init=False)  # how many times start() brought it up
    _process: asyncio.subprocess.Process | None = field(default=None, init=False, repr=False)
    _log_task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)
    _ready: asyncio.Event | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.log_path = self.run_dir / "asterisk-console.log"

    @classmethod
    def configure(cls, run_dir: Path, socket_dir: Path) -> AsteriskPeer:
        """Write a private copy of the test config under ``run_dir`` with free ports.

        ``socket_dir`` becomes astrundir (the CLI's control socket lives there): keep its path
        short, a UNIX socket path has at most 107 bytes.
        """
        etc = run_dir / "etc"
        shutil.copytree(TEST_CONFIG, etc)
        peer = cls(etc_dir=etc, run_dir=run_dir, ami_port=free_port(),
                   sip_port=free_port(socket.SOCK_DGRAM), agi_port=free_port(),
                   softphone_port=free_port(socket.SOCK_DGRAM), sounds_dir=run_dir / "sounds")
        peer.sounds_dir.mkdir()
        dirs = {"astetcdir": etc, "astrundir": socket_dir}
        for key in ("astcachedir", "astvarlibdir", "astdbdir", "astkeydir", "astspooldir",
                    "astlogdir"):
            dirs[key] = run_dir / "var" / key.removeprefix("ast").removesuffix("dir")
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        (dirs["astspooldir"] / "tmp").mkdir(exist_ok=True)
        (dirs["astkeydir"] / "keys").mkdir(exist_ok=True)  # res_crypto reads <astkeydir>/keys
        conf = etc / "asterisk.conf"
        # transmit_silence: while a channel waits (WAIT FOR DIGIT between prompts) Asterisk sends
        # silence instead of no RTP at all, as the production sample asks (asterisk/README.md):
        # carriers drop calls after an RTP timeout, and the QA softphone hears prompt ends.
        conf.write_text(_substitute(_asterisk_conf(conf.read_text(), dirs),
                                    r"^transmit_silence\s*=\s*no", "transmit_silence = yes",
                                    "transmit_silence option"))
        manager = etc / "manager.conf"
        manager.write_text(_substitute(manager.read_text(), r"^port\s*=\s*\d+",
                                       f"port = {peer.ami_port}", "AMI port"))
        pjsip = _substitute((etc / "pjsip.conf").read_text(), r"^bind\s*=\s*127\.0\.0\.1:\d+",
                            f"bind = 127.0.0.1:{peer.sip_port}", "PJSIP transport bind")
        pjsip = _substitute(pjsip, r"^contact\s*=\s*sip:softphone@127\.0\.0\.1:\d+",
                            f"contact = sip:softphone@127.0.0.1:{peer.softphone_port}",
                            "softphone contact")
        (etc / "pjsip.conf").write_text(pjsip)
        dialplan = _substitute((etc / "extensions.conf").read_text(),
                               r"agi://127\.0\.0\.1:\d+/", f"agi://127.0.0.1:{peer.agi_port}/",
                               "FastAGI URL")
        (etc / "extensions.conf").write_text(dialplan + EXTRA_DIALPLAN)
        return peer

    @property
    def conf_path(self) -> Path:
        """This instance's asterisk.conf (``asterisk -C``)."""
        return self.etc_dir / "asterisk.conf"

    @property
    def running(self) -> bool:
        """True while the Asterisk process started by :meth:`start` is alive."""
        return self._process is not None and self._process.returncode is None

    @property
    def pid(self) -> int | None:
        """The running Asterisk's process id."""
        return self._process.pid if self.running and self._process is not None else None

    # -- CLI --------------------------------------------------------------------------------------
    def _cli_args(self, command: str) -> list[str]:
        return [str(ASTERISK_BIN), "-C", str(self.conf_path), "-rx", command]

    def cli(self, command: str) -> str:
        """Run one CLI command on this instance (``asterisk -C … -rx``) and return its output.

        Blocking (a few ms): fine between awaits in a test; inside a running call use
        :meth:`cli_async`.
        """
        try:
            done = subprocess.run(self._cli_args(command), capture_output=True, text=True,
                                  timeout=CLI_TIMEOUT, check=False)
        except subprocess.TimeoutExpired as exc:
            raise AsteriskCliError(f"asterisk -rx {command!r}: no answer in {CLI_TIMEOUT} s"
                                   ) from exc
        if done.returncode != 0:
            raise AsteriskCliError(f"asterisk -rx {command!r} exited {done.returncode}: "
                                   f"{(done.stderr or done.stdout).strip()}")
        return done.stdout

    async def cli_async(self, command: str) -> str:
        """:meth:`cli` without blocking the event loop."""
        process = await asyncio.create_subprocess_exec(
            *self._cli_args(command), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            async with asyncio.timeout(CLI_TIMEOUT):
                out, _ = await process.communicate()
        except TimeoutError as exc:
            process.kill()
            await process.wait()
            raise AsteriskCliError(f"asterisk -rx {command!r}: no answer in {CLI_TIMEOUT} s"
                                   ) from exc
        text = out.decode("utf-8", "replace")
        if process.returncode != 0:
            raise AsteriskCliError(f"asterisk -rx {command!r} exited {process.returncode}: "
                                   f"{text.strip()}")
        return text

    # -- lifecycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Start Asterisk in the foreground as a child process and wait until it serves:
        it printed ``Asterisk Ready.``, AMI accepts a TCP connection (and sends its banner),
        and ``core waitfullybooted`` returned. Raises RuntimeError (with the log tail) if it
        exits or takes longer than START_TIMEOUT."""
        if self.running:
            raise RuntimeError("Asterisk is already running")
        self._ready = asyncio.Event()
        log = self.log_path.open("ab")
        log.write(f"---- start #{self.starts + 1}\n".encode())
        log.flush()
        self._process = await asyncio.create_subprocess_exec(
            str(ASTERISK_BIN), "-C", str(self.conf_path), "-f", "-n", "-vvv",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        self._log_task = asyncio.create_task(self._copy_console(self._process, log, self._ready),
                                             name="asterisk-console")
        try:
            async with asyncio.timeout(START_TIMEOUT):
                await self._ready.wait()
                if not self.running:
                    raise RuntimeError(f"Asterisk exited with {self._process.returncode} while "
                                       "starting")
                _, writer = await asyncio.open_connection(self.ami_host, self.ami_port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                await self.cli_async("core waitfullybooted")
        except BaseException as exc:
            await self.stop()
            if isinstance(exc, TimeoutError | RuntimeError | OSError | AsteriskCliError):
                raise RuntimeError(f"Asterisk did not start: {exc!r}\n{self.log_tail()}") from exc
            raise
        self.starts += 1

    @staticmethod
    async def _copy_console(process: asyncio.subprocess.Process, log: BinaryIO,
                            ready: asyncio.Event) -> None:
        """Copy Asterisk's console output to the log file; set ``ready`` when it says it is
        ready (or when it exits, so start() stops waiting)."""
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                log.write(line)
                if line.startswith(b"Asterisk Ready."):
                    log.flush()
                    ready.set()
        finally:
            ready.set()
            log.close()

    async def stop(self) -> None:
        """``core stop now`` and wait for the process to exit; kill it after STOP_TIMEOUT."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            with contextlib.suppress(AsteriskCliError, OSError):
                await self._cli_stop()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        task, self._log_task = self._log_task, None
        if task is not None:
            await task  # ends at EOF: the process (and so its stdout) is gone

    async def _cli_stop(self) -> None:
        process = await asyncio.create_subprocess_exec(
            *self._cli_args("core stop now"), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        try:
            async with asyncio.timeout(CLI_TIMEOUT):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def restart(self) -> None:
        """Stop, then start again on the same ports (AMI clients see their connection drop)."""
        await self.stop()
        await self.start()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last lines of Asterisk's console output (for failure reports)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no Asterisk console log)"
        tail = text.splitlines()[-lines:]
        return f"---- {self.log_path} (last {len(tail)} lines)\n" + "\n".join(tail)


# -- fixture --------------------------------------------------------------------------------------
FAILED_KEY = pytest.StashKey[bool]()
"""Set on a test item by tests/integration/conftest.py when its call phase failed."""


@pytest.fixture
async def asterisk_peer(request: pytest.FixtureRequest,
                        tmp_path: Path) -> AsyncIterator[AsteriskPeer]:
    """A started private Asterisk (skips with the reason when there is none); stopped after the
    test. When the test fails, the tail of Asterisk's console output is printed."""
    reason = asterisk_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    socket_dir = Path(tempfile.mkdtemp(prefix="ars-ast-"))
    try:
        peer = AsteriskPeer.configure(tmp_path / "asterisk", socket_dir)
        await peer.start()
        try:
            yield peer
        finally:
            await peer.stop()
            if request.node.stash.get(FAILED_KEY, False):
                print(peer.log_tail())
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
