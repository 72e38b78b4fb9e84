"""``ars-engine db``, ``ars-engine tenants …`` and ``ars-engine serve``.

The store commands run in-process (click's CliRunner) with ``ARS_DATA_DIR`` in pytest's tmp dir,
so the SQLite database and the generated master key land there and nothing is written into the
checkout. ``serve`` runs as a real process on a free port and is stopped with SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
from click.testing import CliRunner, Result

from ars_engine.cli import main
from ars_engine.config import Settings
from ars_engine.service.keys import MasterKey
from ars_engine.store import repo
from ars_engine.store.db import Store

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
API_KEY = re.compile(r"ars_([0-9a-f]+)_[A-Za-z0-9_-]+")
START_TIMEOUT = 120.0  # seconds; the first start may render the prompt cache with espeak-ng
STOP_TIMEOUT = 40.0


class Cli:
    """``ars-engine ARGS…`` in-process, with its data dir (database, master key) in tmp."""

    def __init__(self, data_dir: Path, recordings: Path) -> None:
        self.data_dir = data_dir
        self.env = {"ARS_DATA_DIR": str(data_dir), "ARS_RECORDINGS_DIR": str(recordings)}

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(main, list(args), env={**self.env, **(env or {})})

    def ok(self, *args: str) -> str:
        result = self(*args)
        assert result.exit_code == 0, shown(result)
        return result.stdout

    def settings(self) -> Settings:
        return Settings.from_env({**self.env, "ARS_ROOT": str(ROOT)})


def shown(result: Result) -> str:
    return (f"exit {result.exit_code}\n--- stdout\n{result.stdout}\n--- stderr\n"
            f"{result.stderr}\n--- exception\n{result.exception!r}")


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    for name in list(os.environ):
        if name.startswith("ARS_"):  # a developer's ARS_CONFIG or ARS_SECRET_KEY must not leak in
            monkeypatch.delenv(name)
    return Cli(tmp_path / "data", tmp_path / "recordings")


def created_key(output: str) -> str:
    match = re.search(r"^api key \(shown once, store it now\): (\S+)$", output, re.MULTILINE)
    assert match is not None, output
    return match.group(1)


def authenticated(cli: Cli, key: str) -> str | None:
    """The tenant the engine's store resolves ``key`` to (None: refused)."""
    settings = cli.settings()
    pepper = settings.master_key().api_key_pepper

    async def check() -> str | None:
        store = Store(settings.service.database_url)
        try:
            async with store.session() as s:
                tenant = await repo.authenticate(s, key, pepper)
                return None if tenant is None else tenant.id
        finally:
            await store.close()

    return asyncio.run(check())


# -- db --------------------------------------------------------------------------------------------
def test_db_upgrade_reaches_the_head_revision_and_is_idempotent(cli: Cli) -> None:
    first = cli.ok("db", "upgrade")
    assert first.strip() == (f"database sqlite+aiosqlite:///{cli.data_dir / 'ars.db'} "
                             "at revision 0003")
    assert (cli.data_dir / "ars.db").is_file()
    assert cli.ok("db", "upgrade") == first


def test_db_upgrade_refuses_a_database_it_cannot_use(cli: Cli) -> None:
    result = cli("db", "upgrade", env={"ARS_DATABASE_URL": "mysql://ars:pw-in-url@h/db"})
    assert result.exit_code == 1, shown(result)
    assert "expected sqlite or postgresql, got 'mysql'" in result.stderr
    assert "pw-in-url" not in result.output


# -- tenants create / list -------------------------------------------------------------------------
def test_tenants_create_prints_the_key_once_and_the_webhook_secret(cli: Cli) -> None:
    out = cli.ok("tenants", "create", "bank", "--scenarios", "type_a,type_c",
                 "--max-concurrent", "3")
    key = created_key(out)
    assert API_KEY.fullmatch(key), key
    master = MasterKey.load_or_create(cli.data_dir / "secret.key")
    lines = out.splitlines()
    assert lines[0] == "tenant bank created"
    assert lines[2] == f"webhook signing secret: {master.webhook_secret('bank')}"
    assert stat.S_IMODE((cli.data_dir / "secret.key").stat().st_mode) == 0o600
    assert authenticated(cli, key) == "bank"
    assert key not in cli.ok("tenants", "list")  # shown once: only its hash is kept


def test_tenants_create_json_output_parses(cli: Cli) -> None:
    created = json.loads(cli.ok("tenants", "create", "card", "--json"))
    assert set(created) == {"tenant", "api_key", "webhook_secret"}
    assert created["tenant"] == "card" and API_KEY.fullmatch(created["api_key"])
    assert created["webhook_secret"] == cli.settings().master_key().webhook_secret("card")


def test_creating_a_tenant_twice_fails_clearly(cli: Cli) -> None:
    cli.ok("tenants", "create", "bank")
    result = cli("tenants", "create", "bank")
    assert result.exit_code == 1, shown(result)
    assert "tenant 'bank' exists" in result.stderr
    assert "api key" not in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("tenant_id", ["Bank", "bank!", "_bank", "a" * 65, "은행"])
def test_a_bad_tenant_id_is_refused(cli: Cli, tenant_id: str) -> None:
    result = cli("tenants", "create", tenant_id)
    assert result.exit_code == 2, shown(result)
    assert "Invalid value for TENANT_ID: lowercase letters, digits, - and _" in result.stderr
    assert cli.ok("tenants", "list").strip() == "(no tenants)"


def test_tenants_list_shows_the_limits(cli: Cli) -> None:
    assert cli.ok("tenants", "list").strip() == "(no tenants)"
    cli.ok("tenants", "create", "bank", "--scenarios", "type_a,type_c", "--max-concurrent", "3",
           "--per-number-limit", "2", "--per-number-window", "600", "--allow-international")
    cli.ok("tenants", "create", "card")
    lines = cli.ok("tenants", "list").splitlines()
    assert [line.split()[0] for line in lines] == ["bank", "card"]
    bank, card = lines
    assert "active" in bank and "max_concurrent=3" in bank and "per_number=2/600s" in bank
    assert "scenarios=type_a,type_c" in bank and '"allow_international": true' in bank
    assert "max_concurrent=10" in card and "per_number=5/3600s" in card
    assert "scenarios=all" in card and '"allow_premium": false' in card


# -- keys ------------------------------------------------------------------------------------------
def test_a_second_key_works_and_revoking_one_leaves_the_other(cli: Cli) -> None:
    first = created_key(cli.ok("tenants", "create", "bank"))
    second = cli.ok("tenants", "key", "bank", "--label", "rotation").strip()
    assert API_KEY.fullmatch(second) and second != first
    assert authenticated(cli, first) == "bank" and authenticated(cli, second) == "bank"

    first_id = API_KEY.fullmatch(first).group(1)  # type: ignore[union-attr]
    assert cli.ok("tenants", "revoke", first_id).strip() == f"key {first_id} revoked"
    assert authenticated(cli, first) is None
    assert authenticated(cli, second) == "bank"

    again = cli("tenants", "revoke", first_id)
    assert again.exit_code == 1, shown(again)
    assert f"no active API key {first_id!r}" in again.stderr
    assert authenticated(cli, second) == "bank"


def test_revoking_an_unknown_key_fails(cli: Cli) -> None:
    cli.ok("db", "upgrade")
    result = cli("tenants", "revoke", "0123456789ab")
    assert result.exit_code == 1, shown(result)
    assert "no active API key '0123456789ab'" in result.stderr


def test_a_key_for_an_unknown_tenant_is_refused(cli: Cli) -> None:
    result = cli("tenants", "key", "nobody")
    assert result.exit_code == 1, shown(result)
    assert "no tenant 'nobody'" in result.stderr
    assert not API_KEY.search(result.stdout)


def test_a_key_is_tied_to_the_master_key(cli: Cli) -> None:
    key = created_key(cli.ok("tenants", "create", "bank"))
    (cli.data_dir / "secret.key").write_text("ee" * 32 + "\n")  # another master key
    assert authenticated(cli, key) is None


# -- secrets ---------------------------------------------------------------------------------------
def test_tenants_secret_is_derived_from_the_master_key_and_stable(cli: Cli) -> None:
    created = json.loads(cli.ok("tenants", "create", "bank", "--json"))
    first = cli.ok("tenants", "secret", "bank").strip()
    assert first == cli.ok("tenants", "secret", "bank").strip() == created["webhook_secret"]
    assert first == MasterKey.load_or_create(cli.data_dir / "secret.key").webhook_secret("bank")
    assert cli.ok("tenants", "secret", "card").strip() != first


def test_ars_secret_key_sets_the_master_key(cli: Cli) -> None:
    text = "5a" * 32
    result = cli("tenants", "secret", "bank", env={"ARS_SECRET_KEY": text})
    assert result.exit_code == 0, shown(result)
    assert result.stdout.strip() == MasterKey.from_text(text, "x").webhook_secret("bank")
    assert not (cli.data_dir / "secret.key").exists()


@pytest.mark.parametrize("command", [["tenants", "secret", "bank"], ["tenants", "key", "bank"],
                                     ["tenants", "create", "bank"]])
def test_a_short_master_key_is_a_clean_error_that_does_not_echo_it(cli: Cli,
                                                                   command: list[str]) -> None:
    result = cli(*command, env={"ARS_SECRET_KEY": "too-short-secret"})
    assert result.exit_code == 1, shown(result)
    assert "ARS_SECRET_KEY: the secret key must be at least 32 bytes" in result.stderr
    assert "too-short-secret" not in result.output
    assert isinstance(result.exception, SystemExit), shown(result)  # no traceback


# -- serve -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("listen", ["bad", "8080", "h:", ":8080", "h:99999", "[::1]"])
def test_serve_refuses_a_listen_address_without_host_and_port(cli: Cli, listen: str) -> None:
    result = cli("serve", "--listen", listen)
    assert result.exit_code == 2, shown(result)
    assert "Invalid value for --listen: expected HOST:PORT" in result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_until_serving(process: asyncio.subprocess.Process, lines: list[str]) -> str:
    """The URL from the "serving on" line; every stderr line read is kept in ``lines``."""
    assert process.stderr is not None
    async with asyncio.timeout(START_TIMEOUT):
        while True:
            line = (await process.stderr.readline()).decode(errors="replace")
            if not line:
                raise AssertionError("serve exited before serving:\n" + "".join(lines))
            lines.append(line)
            match = re.search(r"serving on (http://\S+)", line)
            if match:
                return match.group(1)


async def _drain(stream: asyncio.StreamReader, lines: list[str]) -> None:
    while line := await stream.readline():
        lines.append(line.decode(errors="replace"))


async def test_serve_answers_http_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env.update(ARS_DATA_DIR=str(tmp_path / "data"), ARS_RECORDINGS_DIR=str(tmp_path / "rec"),
               ARS_TTS_ONLINE="0")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ars_engine.cli", "serve", "--listen", f"127.0.0.1:{port}",
        env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    lines: list[str] = []
    drain: asyncio.Task[None] | None = None
    try:
        url = await _wait_until_serving(process, lines)
        assert url == f"http://127.0.0.1:{port}"
        assert process.stderr is not None
        drain = asyncio.create_task(_drain(process.stderr, lines))
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
            async with http.get(f"{url}/v1/openapi.json") as resp:
                assert resp.status == 200
                assert (await resp.json())["openapi"].startswith("3.")
            async with http.get(f"{url}/v1/calls") as resp:
                assert resp.status == 401
                assert resp.content_type == "application/problem+json"
                problem = await resp.json()
                assert problem["status"] == 401
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(STOP_TIMEOUT):
            code = await process.wait()
        assert code == 0, "".join(lines)
        assert (tmp_path / "data" / "ars.db").is_file()
        assert stat.S_IMODE((tmp_path / "data" / "secret.key").stat().st_mode) == 0o600
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if drain is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await drain
