"""The tables. A call is a row with an explicit state; every change of state is a row in
``call_transitions`` with its time; results leave through ``webhook_events`` (the outbox), written
in the same transaction as the state they report.

Call states (the only moves :func:`ars_engine.store.repo.transition` allows):

    queued ──> dialing ──> ringing ──> answered ──> finished
      │  ^        │           │            │
      │  └────────┴───────────┘ (retry)    └──────> failed
      ├──> canceled   (before a node took it, or while dialing/ringing)
      └──> failed     (refused at dispatch: scenario gone, parameters unusable…)

    dialing / ringing / answered ──> failed  (telephony outcome, engine_restart, error)
    dialing / ringing ──> canceled           (cancel honoured before answer)

No secret is stored in clear: ``params`` holds masked values, the secret ones sit sealed
(AES-GCM, key derived from the master key) in ``sealed_params`` until the call ends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

QUEUED = "queued"
DIALING = "dialing"
RINGING = "ringing"
ANSWERED = "answered"
FINISHED = "finished"
FAILED = "failed"
CANCELED = "canceled"
STATES = (QUEUED, DIALING, RINGING, ANSWERED, FINISHED, FAILED, CANCELED)
ACTIVE_STATES = (DIALING, RINGING, ANSWERED)
TERMINAL_STATES = (FINISHED, FAILED, CANCELED)

# state → the states it may move to (module docstring)
TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({DIALING, CANCELED, FAILED}),
    DIALING: frozenset({RINGING, ANSWERED, QUEUED, FAILED, CANCELED}),
    RINGING: frozenset({ANSWERED, QUEUED, FAILED, CANCELED}),
    ANSWERED: frozenset({FINISHED, FAILED}),
    FINISHED: frozenset(),
    FAILED: frozenset(),
    CANCELED: frozenset(),
}

# webhook_events.status
PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite keeps no zone: stored naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store (use datetime.now(UTC))")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    allowed_scenarios: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)  # None: all
    max_concurrent: Mapped[int] = mapped_column(Integer, default=10)
    per_number_limit: Mapped[int] = mapped_column(Integer, default=5)  # calls per number …
    per_number_window_s: Mapped[int] = mapped_column(Integer, default=3600)  # … per window
    destination_rules: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public part of the key
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))  # HMAC-SHA256(pepper, secret part)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Call(Base):
    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_due", "state", "not_before", "created_at"),  # due_calls sorts on both
        Index("ix_calls_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_calls_destination_created", "destination", "created_at"),
        Index("ix_calls_created", "created_at"),  # usage per month, history of all tenants
        Index("ix_calls_state_outcome", "state", "outcome"),  # /metrics: a covering GROUP BY
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    scenario: Mapped[str] = mapped_column(String(100))
    scenario_sha256: Mapped[str] = mapped_column(String(64))
    destination: Mapped[str] = mapped_column(String(20))  # E.164
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # secrets masked
    sealed_params: Mapped[str | None] = mapped_column(Text, nullable=True)
    callback_url: Mapped[str | None] = mapped_column(String(2000), nullable=True)
    reference: Mapped[str | None] = mapped_column(String(200), nullable=True)  # the client's own
    retry_policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    state: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(64), nullable=True)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    timeline: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    sip_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    not_before: Mapped[datetime]
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    answered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    recording: Mapped[str | None] = mapped_column(String(500), nullable=True)
    evidence: Mapped[str | None] = mapped_column(String(500), nullable=True)
    next_event_seq: Mapped[int] = mapped_column(Integer, default=1)

    transitions: Mapped[list[CallTransition]] = relationship(
        order_by="CallTransition.id", cascade="all, delete-orphan", lazy="raise")

    @property
    def is_terminal(self) -> bool:
        return self.state in TERMINAL_STATES


class CallTransition(Base):
    __tablename__ = "call_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"), index=True)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str | None] = mapped_column(String(500), nullable=True)
    node: Mapped[str | None] = mapped_column(String(100), nullable=True)


class IdempotencyRecord(Base):
    """The first response to a (tenant, Idempotency-Key); replayed for the same body."""

    __tablename__ = "idempotency_keys"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    call_id: Mapped[str | None] = mapped_column(String(40), nullable=True)
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


class WebhookEvent(Base):
    """One event for the verification service, delivered at least once, in ``seq`` order per
    call. ``body`` is the exact JSON sent; the signature is made at each attempt (it dates it)."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("call_id", "seq", name="uq_webhook_events_call_seq"),
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id"))
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(40))
    url: Mapped[str] = mapped_column(String(2000))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)
    lease_owner: Mapped[str | None] = mapped_column(String(100), nullable=True)
    lease_expires_at: Mapped[datetime | None] = mapped_column(nullable=True)


# operators.role
ADMIN = "admin"  # every tenant, every page
TENANT_OPERATOR = "tenant"  # one tenant's calls and usage
ROLES = (ADMIN, TENANT_OPERATOR)


class Operator(Base):
    """A console user. ``password_hash`` is scrypt (``console.passwords``); a tenant operator
    sees only ``tenant_id``'s calls and usage, an admin sees all."""

    __tablename__ = "operators"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    password_hash: Mapped[str] = mapped_column(String(300))
    role: Mapped[str] = mapped_column(String(16))
    tenant_id: Mapped[str | None] = mapped_column(ForeignKey("tenants.id"), nullable=True)
    created_at: Mapped[datetime]
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class ConsoleSession(Base):
    """A signed-in browser. The cookie holds a random token; the table keeps only its SHA-256,
    so a copy of the database opens no session."""

    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    operator_id: Mapped[str] = mapped_column(ForeignKey("operators.id"), index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)


# alerts.state
FIRING = "firing"
RESOLVED = "resolved"


class Alert(Base):
    """One alert condition (``key``: rule and subject, e.g. ``trunk_down:10.0.0.1:5060``), shared
    by every node so that a condition is announced once. ``notified`` is the state last delivered
    to the alert webhook; a change of ``state`` not yet ``notified`` is (re)sent."""

    __tablename__ = "alerts"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    rule: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(String(1000))
    value: Mapped[float | None] = mapped_column(nullable=True)
    since: Mapped[datetime]  # when the current state began
    updated_at: Mapped[datetime]
    notified: Mapped[str | None] = mapped_column(String(16), nullable=True)
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_notify_at: Mapped[datetime | None] = mapped_column(nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(500), nullable=True)


class Node(Base):
    """One engine process sharing the store (``service.nodes``). ``instance`` is random per
    process start: a second process under a live node's id is refused, and a row whose
    ``heartbeat_at`` is older than the lease belongs to a dead node. ``stopped_at`` is set by a
    clean stop."""

    __tablename__ = "nodes"

    node_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    instance: Mapped[str] = mapped_column(String(40))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    site: Mapped[str | None] = mapped_column(String(100), nullable=True)
    key_id: Mapped[str | None] = mapped_column(String(40), nullable=True)  # master key's public id
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime] = mapped_column(index=True)
    stopped_at: Mapped[datetime | None] = mapped_column(nullable=True)
