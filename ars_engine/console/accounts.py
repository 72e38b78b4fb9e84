"""Operators and their sign-in sessions in the store.

A session token is 32 random bytes (URL-safe base64) in an HttpOnly cookie; the store keeps only
its SHA-256. The CSRF token of a session is ``HMAC(csrf key, token hash)``: it needs no storage,
changes with every session, and a copy of the database cannot forge it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from ..store import repo
from ..store.models import ADMIN, ROLES, ConsoleSession, Operator, Tenant
from .passwords import check_policy, dummy_hash, hash_password, verify_password


class AccountError(ValueError):
    """A bad operator request (unknown tenant, duplicate name…); the message says which."""


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def csrf_token(key: bytes, session_hash: str) -> str:
    return hmac.new(key, session_hash.encode(), hashlib.sha256).hexdigest()


def csrf_matches(key: bytes, session_hash: str, presented: str) -> bool:
    return hmac.compare_digest(csrf_token(key, session_hash), presented)


async def create_operator(s: AsyncSession, username: str, password: str, role: str,
                          tenant_id: str | None, *, now: datetime) -> Operator:
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise AccountError("a user name is 1 to 100 characters without spaces")
    if role not in ROLES:
        raise AccountError(f"role: expected one of {list(ROLES)}, got {role!r}")
    if role == ADMIN and tenant_id:
        raise AccountError("an admin sees every tenant; leave --tenant out")
    if role != ADMIN:
        if not tenant_id:
            raise AccountError("a tenant operator needs --tenant")
        if await s.get(Tenant, tenant_id) is None:
            raise AccountError(f"no tenant {tenant_id!r}")
    check_policy(password, username)
    if await operator_by_name(s, username) is not None:
        raise AccountError(f"an operator {username!r} exists already")
    operator = Operator(id=repo.new_id("op"), username=username,
                        password_hash=hash_password(password), role=role,
                        tenant_id=tenant_id if role != ADMIN else None, created_at=now,
                        disabled=False)
    s.add(operator)
    return operator


async def operator_by_name(s: AsyncSession, username: str) -> Operator | None:
    return (await s.execute(select(Operator).where(Operator.username == username))
            ).scalar_one_or_none()


async def list_operators(s: AsyncSession) -> Sequence[Operator]:
    return (await s.execute(select(Operator).order_by(Operator.username))).scalars().all()


async def set_password(s: AsyncSession, username: str, password: str) -> None:
    operator = await operator_by_name(s, username)
    if operator is None:
        raise AccountError(f"no operator {username!r}")
    check_policy(password, username)
    operator.password_hash = hash_password(password)
    await s.execute(delete(ConsoleSession).where(ConsoleSession.operator_id == operator.id))


async def set_disabled(s: AsyncSession, username: str, disabled: bool) -> None:
    operator = await operator_by_name(s, username)
    if operator is None:
        raise AccountError(f"no operator {username!r}")
    operator.disabled = disabled
    if disabled:
        await s.execute(delete(ConsoleSession).where(ConsoleSession.operator_id == operator.id))


def check_credentials(operator: Operator | None, password: str) -> bool:
    """Same cost whether or not the operator exists (dummy_hash), False when disabled."""
    ok = verify_password(password, operator.password_hash if operator else dummy_hash())
    return ok and operator is not None and not operator.disabled


async def open_session(s: AsyncSession, operator: Operator, *, now: datetime,
                       lifetime: timedelta) -> str:
    """A new session for ``operator``; returns the cookie's token (shown nowhere else)."""
    token = secrets.token_urlsafe(32)
    s.add(ConsoleSession(token_hash=token_hash(token), operator_id=operator.id, created_at=now,
                         expires_at=now + lifetime))
    await s.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    return token


async def session_operator(s: AsyncSession, token: str, *, now: datetime
                           ) -> tuple[Operator, str] | None:
    """(operator, token hash) of a live session; None when unknown, expired or disabled."""
    hashed = token_hash(token)
    row = (await s.execute(
        select(Operator, ConsoleSession.expires_at).join(
            ConsoleSession, ConsoleSession.operator_id == Operator.id)
        .where(ConsoleSession.token_hash == hashed))).first()
    if row is None:
        return None
    operator, expires_at = row
    if expires_at <= now or operator.disabled:
        return None
    return operator, hashed


async def close_session(s: AsyncSession, hashed: str) -> None:
    await s.execute(delete(ConsoleSession).where(ConsoleSession.token_hash == hashed))
