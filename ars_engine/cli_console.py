"""``ars-engine operators …``: the console's users (admins and tenant operators)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from .cli_service import CONFIG, _run, _settings, _with_store


@click.group()
def operators() -> None:
    """Console users: admins see every tenant, tenant operators one tenant."""


def _password(password_env: str | None, username: str) -> str:
    """From the named environment variable, else asked twice on the terminal (never an
    argument: it would sit in the shell history and the process list)."""
    if password_env:
        value = os.environ.get(password_env)
        if not value:
            raise click.BadParameter(f"the environment variable {password_env} is not set "
                                     "or empty", param_hint="--password-env")
        return value
    value = click.prompt(f"password for {username}", hide_input=True,
                         confirmation_prompt=True)
    return str(value)


def _account_errors(work: Any) -> Any:
    from .console.accounts import AccountError
    from .console.passwords import WeakPassword

    try:
        return work()
    except (AccountError, WeakPassword) as exc:
        raise click.ClickException(str(exc)) from exc


@operators.command("create")
@CONFIG
@click.argument("username")
@click.option("--role", type=click.Choice(["admin", "tenant"]), required=True,
              help="admin: every tenant; tenant: one tenant's calls and usage.")
@click.option("--tenant", "tenant_id", default=None, help="The tenant of a tenant operator.")
@click.option("--password-env", default=None, metavar="VAR",
              help="Read the password from this environment variable (else it is asked).")
def operators_create(config_path: Path | None, username: str, role: str,
                     tenant_id: str | None, password_env: str | None) -> None:
    """Create a console user."""
    from .console import accounts

    settings = _settings(config_path)
    password = _password(password_env, username)

    async def work(s: Any) -> str:
        operator = await accounts.create_operator(s, username, password, role, tenant_id,
                                                  now=datetime.now(UTC))
        return operator.id

    operator_id = _account_errors(lambda: _run(lambda: _with_store(settings, work)))
    scope = "every tenant" if role == "admin" else f"tenant {tenant_id}"
    click.echo(f"created operator {username} ({operator_id}, {role}, {scope})")


@operators.command("list")
@CONFIG
def operators_list(config_path: Path | None) -> None:
    """List console users."""
    from .console import accounts

    settings = _settings(config_path)

    async def work(s: Any) -> list[str]:
        return [f"{o.username}\t{o.role}\t{o.tenant_id or '*'}\t"
                f"{'disabled' if o.disabled else 'active'}"
                for o in await accounts.list_operators(s)]

    for line in _run(lambda: _with_store(settings, work)):
        click.echo(line)


@operators.command("password")
@CONFIG
@click.argument("username")
@click.option("--password-env", default=None, metavar="VAR",
              help="Read the new password from this environment variable (else it is asked).")
def operators_password(config_path: Path | None, username: str,
                       password_env: str | None) -> None:
    """Set a new password (signs the user out everywhere)."""
    from .console import accounts

    settings = _settings(config_path)
    password = _password(password_env, username)

    async def work(s: Any) -> None:
        await accounts.set_password(s, username, password)

    _account_errors(lambda: _run(lambda: _with_store(settings, work)))
    click.echo(f"password of {username} changed; their sessions are closed")


@operators.command("disable")
@CONFIG
@click.argument("username")
@click.option("--enable", is_flag=True, help="Enable the user again instead.")
def operators_disable(config_path: Path | None, username: str, enable: bool) -> None:
    """Disable a console user (their sessions end at once)."""
    from .console import accounts

    settings = _settings(config_path)

    async def work(s: Any) -> None:
        await accounts.set_disabled(s, username, not enable)

    _account_errors(lambda: _run(lambda: _with_store(settings, work)))
    click.echo(f"operator {username} {'enabled' if enable else 'disabled'}")


@click.group()
def alerts() -> None:
    """Alert notifications (docs/alerts.md)."""


@alerts.command("secret")
@CONFIG
def alerts_secret(config_path: Path | None) -> None:
    """Print the secret the alert receiver verifies X-ARS-Signature with."""
    from .cli_service import _master_key
    from .service.alerting import alert_secret

    click.echo(alert_secret(_master_key(_settings(config_path))))
