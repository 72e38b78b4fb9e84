"""``ars-engine serve``, ``ars-engine tenants …`` and ``ars-engine db …``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .config import Settings
from .errors import ArsError, FieldError

if TYPE_CHECKING:
    from .service.keys import MasterKey

T = TypeVar("T")


def _settings(config_path: Path | None) -> Settings:
    from .cli import _settings as env_settings
    from .cli import _with_config_file

    settings = env_settings()
    return _with_config_file(settings, config_path) if config_path else settings


def _master_key(settings: Settings) -> MasterKey:
    """The master key, or a clean error (a short ``ARS_SECRET_KEY``, an unreadable key file)."""
    try:
        return settings.master_key()
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except ArsError as exc:
        raise click.ClickException(str(exc)) from exc


CONFIG = click.option("--config", "config_path", default=None,
                      type=click.Path(exists=True, dir_okay=False, path_type=Path),
                      help="TOML config file (default: $ARS_CONFIG).")


@click.command()
@CONFIG
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="API address (default: [service] listen, 127.0.0.1:8080).")
@click.option("--backend", type=click.Choice(["embedded", "asterisk"]), default=None,
              help="Telephony backend (default: [service] backend, embedded).")
def serve(config_path: Path | None, listen: str | None, backend: str | None) -> None:
    """Run the service: HTTP API, dispatcher, webhook sender (stops on SIGTERM/SIGINT)."""
    import sys

    from .cli import _asterisk_backend, _embedded_backend, _media
    from .config import split_host_port
    from .service.server import serve as run_server

    settings = _settings(config_path)
    host = port = None
    if listen:
        try:
            host, port = split_host_port(listen)
        except ValueError:
            port = None
        if port is None:  # "bad" parses as a host alone; the port is not optional here
            raise click.BadParameter("expected HOST:PORT", param_hint="--listen")
    media = _media(settings)
    media.render_all()
    chosen = backend or settings.service.backend
    factory = (_asterisk_backend(settings, None) if chosen == "asterisk" else
               _embedded_backend(settings, settings.service.trunk, None, None, None, None))

    def ready(url: str) -> None:
        click.echo(f"ars-engine serving on {url} (backend {chosen}, database "
                   f"{settings.service.database_url.split('://', 1)[0]})", err=True)
        sys.stderr.flush()

    if backend:
        settings = replace(settings, service=replace(settings.service, backend=backend))
    try:
        _run(lambda: run_server(settings, media, factory, host=host, port=port, ready=ready))
    except OSError as exc:  # the API port is taken, the host does not resolve…
        raise click.ClickException(f"cannot serve on {host or settings.service.listen_host}:"
                                   f"{settings.service.listen_port if port is None else port}: "
                                   f"{exc.strerror or exc}") from exc


# -- tenants ---------------------------------------------------------------------------------------

@click.group()
def tenants() -> None:
    """Tenants (the verification services) and their API keys."""


async def _with_store(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from .store.db import Store

    store = Store(settings.service.database_url)
    try:
        await store.upgrade()
        async with store.session() as s, s.begin():
            return await work(s)
    finally:
        await store.close()


def _scenarios(value: str | None) -> list[str] | None:
    if value is None or value.strip() in ("", "*", "all"):
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@tenants.command("create")
@CONFIG
@click.argument("tenant_id")
@click.option("--name", default=None, help="Display name (default: the id).")
@click.option("--scenarios", default=None, help="Allowed scenarios, comma-separated (default all).")
@click.option("--max-concurrent", default=10, show_default=True, type=click.IntRange(1, 10000))
@click.option("--per-number-limit", default=5, show_default=True, type=click.IntRange(1, 1000),
              help="Calls to one number per window.")
@click.option("--per-number-window", default=3600, show_default=True,
              type=click.IntRange(1, 86400 * 7), help="Window of the per-number limit (s).")
@click.option("--allow-international", is_flag=True)
@click.option("--allow-premium", is_flag=True)
@click.option("--allow-prefix", "allow_prefixes", multiple=True, metavar="+PREFIX",
              help="E.164 prefix allowed whatever its kind (e.g. +8280 for free-phone QA).")
@click.option("--block-prefix", "block_prefixes", multiple=True, metavar="+PREFIX",
              help="E.164 prefix never dialed for this tenant (wins over everything).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def tenants_create(config_path: Path | None, tenant_id: str, name: str | None,
                   scenarios: str | None, max_concurrent: int, per_number_limit: int,
                   per_number_window: int, allow_international: bool, allow_premium: bool,
                   allow_prefixes: tuple[str, ...], block_prefixes: tuple[str, ...],
                   as_json: bool) -> None:
    """Create a tenant and its first API key (shown once) and print its webhook secret."""
    import re

    from .service.policy import DestinationRules
    from .store import repo
    from .store.models import Tenant

    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", tenant_id):
        raise click.BadParameter("lowercase letters, digits, - and _ (at most 64)",
                                 param_hint="TENANT_ID")
    settings = _settings(config_path)
    keys = _master_key(settings)
    try:
        rules = DestinationRules.from_json({
            "allow_international": allow_international, "allow_premium": allow_premium,
            "allowed_prefixes": list(allow_prefixes), "blocked_prefixes": list(block_prefixes)})
    except FieldError as exc:
        raise click.BadParameter(exc.message, param_hint=exc.field) from exc

    async def work(s: Any) -> str:
        if await repo.get_tenant(s, tenant_id) is not None:
            raise FieldError("TENANT_ID", "tenant_exists", f"tenant {tenant_id!r} exists")
        now = datetime.now(UTC)
        s.add(Tenant(id=tenant_id, name=name or tenant_id, created_at=now, disabled=False,
                     allowed_scenarios=_scenarios(scenarios), max_concurrent=max_concurrent,
                     per_number_limit=per_number_limit, per_number_window_s=per_number_window,
                     destination_rules=rules.as_json()))
        await s.flush()
        _row, key = await repo.create_api_key(s, tenant_id, keys.api_key_pepper, now=now,
                                              label="first key")
        return key

    key = _run(lambda: _with_store(settings, work))
    secret = keys.webhook_secret(tenant_id)
    if as_json:
        click.echo(json.dumps({"tenant": tenant_id, "api_key": key, "webhook_secret": secret}))
        return
    click.echo(f"tenant {tenant_id} created\napi key (shown once, store it now): {key}\n"
               f"webhook signing secret: {secret}")


@tenants.command("list")
@CONFIG
def tenants_list(config_path: Path | None) -> None:
    """List tenants with their limits."""
    from .store import repo

    settings = _settings(config_path)

    async def work(s: Any) -> list[str]:
        rows = await repo.list_tenants(s)
        return [f"{t.id:<20} {'disabled' if t.disabled else 'active':<9} "
                f"max_concurrent={t.max_concurrent} per_number={t.per_number_limit}/"
                f"{t.per_number_window_s}s scenarios="
                f"{','.join(t.allowed_scenarios) if t.allowed_scenarios else 'all'} "
                f"rules={json.dumps(t.destination_rules)}" for t in rows]

    for line in _run(lambda: _with_store(settings, work)) or ["(no tenants)"]:
        click.echo(line)


@tenants.command("key")
@CONFIG
@click.argument("tenant_id")
@click.option("--label", default="", help="What the key is for.")
def tenants_key(config_path: Path | None, tenant_id: str, label: str) -> None:
    """Create another API key for a tenant (shown once)."""
    from .store import repo

    settings = _settings(config_path)
    pepper = _master_key(settings).api_key_pepper

    async def work(s: Any) -> str:
        if await repo.get_tenant(s, tenant_id) is None:
            raise FieldError("TENANT_ID", "unknown_tenant", f"no tenant {tenant_id!r}")
        _row, key = await repo.create_api_key(s, tenant_id, pepper, now=datetime.now(UTC),
                                              label=label)
        return key

    click.echo(_run(lambda: _with_store(settings, work)))


@tenants.command("revoke")
@CONFIG
@click.argument("key_id")
def tenants_revoke(config_path: Path | None, key_id: str) -> None:
    """Revoke an API key by its id (the part after ``ars_``)."""
    from .store.models import ApiKey

    settings = _settings(config_path)

    async def work(s: Any) -> bool:
        row = await s.get(ApiKey, key_id)
        if row is None or row.revoked_at is not None:
            return False
        row.revoked_at = datetime.now(UTC)
        return True

    if not _run(lambda: _with_store(settings, work)):
        raise click.ClickException(f"no active API key {key_id!r}")
    click.echo(f"key {key_id} revoked")


@tenants.command("secret")
@CONFIG
@click.argument("tenant_id")
def tenants_secret(config_path: Path | None, tenant_id: str) -> None:
    """Print a tenant's webhook signing secret (derived from the master key)."""
    click.echo(_master_key(_settings(config_path)).webhook_secret(tenant_id))


# -- database --------------------------------------------------------------------------------------

@click.group()
def db() -> None:
    """The database: migrations."""


@db.command("upgrade")
@CONFIG
def db_upgrade(config_path: Path | None) -> None:
    """Apply the migrations (Alembic) up to the newest."""
    from .store.db import Store

    settings = _settings(config_path)

    async def work() -> str | None:
        store = Store(settings.service.database_url)
        try:
            await store.upgrade()
            return await store.current_revision()
        finally:
            await store.close()

    from sqlalchemy.engine import make_url

    revision = _run(work)  # first: a malformed URL is refused there as a clean error
    shown = make_url(settings.service.database_url).render_as_string(hide_password=True)
    click.echo(f"database {shown} at revision {revision}")


# -- nodes -----------------------------------------------------------------------------------------

@click.command()
@CONFIG
@click.option("--json", "as_json", is_flag=True, help="One JSON array instead of a table.")
def nodes(config_path: Path | None, as_json: bool) -> None:
    """The engine nodes sharing this database: alive, dead (no heartbeat for a lease), stopped."""
    from datetime import timedelta

    from .service.nodes import list_nodes

    settings = _settings(config_path)
    lease = timedelta(seconds=settings.service.lease_seconds)
    views = _run(lambda: _with_store(settings, lambda s: list_nodes(s, datetime.now(UTC),
                                                                      lease)))
    if as_json:
        click.echo(json.dumps([{
            "node_id": v.node_id, "site": v.site, "host": v.host, "pid": v.pid,
            "status": v.status, "started_at": v.started_at.isoformat(),
            "heartbeat_at": v.heartbeat_at.isoformat(),
            "stopped_at": v.stopped_at.isoformat() if v.stopped_at else None,
            "heartbeat_age_seconds": round(v.heartbeat_age, 1)} for v in views], indent=2))
        return
    if not views:
        click.echo("no node has run on this database yet")
        return
    click.echo(f"{'node':20} {'site':12} {'status':8} {'heartbeat':>10}  host (pid)")
    for v in views:
        click.echo(f"{v.node_id:20} {v.site or '-':12} {v.status:8} "
                   f"{v.heartbeat_age:>8.1f} s  {v.host} ({v.pid})")
