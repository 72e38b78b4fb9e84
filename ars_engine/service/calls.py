"""What the API does with calls: check a request, create the call (idempotently), read, list,
cancel. HTTP knows nothing of the store; this module knows nothing of HTTP.

A request is checked completely before anything is written: the scenario exists and the tenant
may use it, the number is normalised and allowed, the parameters bind to the scenario's
declaration, the callback URL is http(s), the retry policy is in range. Every problem is a
:class:`~ars_engine.errors.FieldError` naming the field (``params.code``, ``retry.max_attempts``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ..errors import Conflict, FieldError, NotFound, ParameterError, RateLimited
from ..scenario.secrets import Secret
from ..store import repo
from ..store.db import Store
from ..store.models import (
    ACTIVE_STATES,
    ANSWERED,
    CANCELED,
    QUEUED,
    TERMINAL_STATES,
    Call,
    IdempotencyRecord,
    Tenant,
)
from .backoff import RetryPolicy
from .catalog import ScenarioCatalog
from .keys import MasterKey
from .masking import mask_value
from .payloads import call_summary
from .policy import DestinationRules, check_destination
from .seal import seal

IDEMPOTENCY_TTL = timedelta(hours=24)
MAX_SCHEDULE_AHEAD = timedelta(days=7)
MAX_KEY_LENGTH = 255
BODY_FIELDS = {"scenario", "to", "params", "callback_url", "schedule_at", "retry", "reference"}


@dataclass(frozen=True, slots=True)
class CallRequest:
    """A checked ``POST /v1/calls`` body."""

    scenario: str
    scenario_sha256: str
    destination: str  # E.164
    clear_params: dict[str, object]  # as stored: secrets masked
    secret_params: dict[str, str]  # sealed before storing
    callback_url: str | None
    not_before: datetime
    retry: RetryPolicy
    reference: str | None


@dataclass(frozen=True, slots=True)
class Created:
    """The response to a create: ``replayed`` when an Idempotency-Key matched a first request."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


def check_request(body: object, tenant: Tenant | _TenantRules, catalog: ScenarioCatalog,
                  now: datetime) -> CallRequest:
    """Check a create-call body for ``tenant``; FieldError naming the first bad field."""
    if not isinstance(body, dict):
        raise FieldError("", "invalid_body", "expected a JSON object")
    unknown = sorted(set(body) - BODY_FIELDS)
    if unknown:
        raise FieldError(unknown[0], "unknown_field",
                         f"unknown field; expected some of {sorted(BODY_FIELDS)}")
    name = _string(body, "scenario", required=True)
    assert name is not None
    scenario = catalog.get(name)
    if scenario is None:
        raise FieldError("scenario", "unknown_scenario",
                         f"no scenario named {name!r} (GET /v1/scenarios lists them)")
    if tenant.allowed_scenarios is not None and name not in tenant.allowed_scenarios:
        raise FieldError("scenario", "scenario_not_allowed",
                         f"scenario {name!r} is not enabled for this tenant")
    to = _string(body, "to", required=True)
    assert to is not None
    rules = DestinationRules.from_json(tenant.destination_rules or {})
    destination = check_destination(to, rules, field="to")
    clear, secret = _bind_params(body.get("params", {}), scenario)
    callback = _string(body, "callback_url")
    if callback is not None:
        parts = urlsplit(callback)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FieldError("callback_url", "invalid_url",
                             "expected an absolute http:// or https:// URL")
    return CallRequest(
        scenario=name, scenario_sha256=scenario.source_sha256, destination=destination.e164,
        clear_params=clear, secret_params=secret, callback_url=callback,
        not_before=_schedule(body.get("schedule_at"), now),
        retry=RetryPolicy.from_json(body.get("retry"), field="retry"),
        reference=_string(body, "reference", max_length=200))


def _string(body: Mapping[str, object], key: str, *, required: bool = False,
            max_length: int = 2000) -> str | None:
    value = body.get(key)
    if value is None:
        if required:
            raise FieldError(key, "required", "this field is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise FieldError(key, "invalid_type", "expected a non-empty string")
    if len(value) > max_length:
        raise FieldError(key, "too_long", f"at most {max_length} characters")
    return value


def _bind_params(given: object, scenario: Any) -> tuple[dict[str, object], dict[str, str]]:
    if not isinstance(given, dict):
        raise FieldError("params", "invalid_type", "expected an object of parameter values")
    for key, value in given.items():
        if key not in scenario.params:
            raise FieldError(f"params.{key}", "unknown_parameter",
                             f"scenario {scenario.name!r} declares: "
                             + (", ".join(scenario.params) or "no parameters"))
        if not isinstance(value, str | int) or isinstance(value, bool):
            raise FieldError(f"params.{key}", "invalid_type", "expected a string or a number")
    clear: dict[str, object] = {}
    secret: dict[str, str] = {}
    for name, param in scenario.params.items():
        try:
            bound = param.bind(given.get(name))
        except ParameterError as exc:
            raise FieldError(f"params.{name}", "invalid_parameter", str(exc)) from None
        if isinstance(bound, Secret):
            secret[name] = bound.reveal()
            clear[name] = mask_value(bound.reveal())
        elif name in given:
            clear[name] = bound
    return clear, secret


def _schedule(value: object, now: datetime) -> datetime:
    if value is None:
        return now
    if not isinstance(value, str):
        raise FieldError("schedule_at", "invalid_type", "expected an ISO 8601 date-time string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise FieldError("schedule_at", "invalid_datetime",
                         "expected an ISO 8601 date-time such as 2026-11-25T09:00:00+09:00"
                         ) from None
    if moment.tzinfo is None:
        raise FieldError("schedule_at", "missing_timezone",
                         "give a UTC offset (Z or +09:00): a time without one is ambiguous")
    if moment - now > MAX_SCHEDULE_AHEAD:
        raise FieldError("schedule_at", "too_far", "at most 7 days ahead")
    return max(moment.astimezone(UTC), now)


class CallService:
    """Calls as the API sees them. ``on_created`` wakes the dispatcher; ``on_cancel`` asks it to
    stop a call it is dialing."""

    def __init__(self, store: Store, catalog: ScenarioCatalog, keys: MasterKey, *,
                 clock: Callable[[], datetime],
                 on_created: Callable[[], None] = lambda: None,
                 on_cancel: Callable[[str], object] = lambda call_id: None) -> None:
        self.store = store
        self.catalog = catalog
        self.keys = keys
        self.clock = clock
        self.on_created = on_created
        self.on_cancel = on_cancel
        self._fingerprint_key = keys.derive("idempotency")

    async def create(self, tenant: Tenant, body: object, *, idempotency_key: str | None,
                     render: Callable[[Call], dict[str, Any]]) -> Created:
        """Create a call (201), or replay the first response for the same Idempotency-Key and
        body; a reused key with another body is a FieldError (422).

        One unit of work (:meth:`Store.run`): the replay look-up, the checks, the per-number
        count and the inserts commit together, so two requests with one key cannot both create.
        """
        now = self.clock()
        fingerprint = None
        if idempotency_key is not None:
            if not idempotency_key or len(idempotency_key) > MAX_KEY_LENGTH or \
                    not idempotency_key.isprintable():
                raise FieldError("Idempotency-Key", "invalid_header",
                                 f"1 to {MAX_KEY_LENGTH} printable characters")
            fingerprint = repo.request_fingerprint(self._fingerprint_key, body)
        snapshot = _TenantRules.of(tenant)
        try:
            created = await self.store.run(lambda s: self._create_unit(
                s, snapshot, body, idempotency_key, fingerprint, now, render))
        except IntegrityError:  # PostgreSQL: the same key committed first by a concurrent request
            if idempotency_key is None or fingerprint is None:
                raise
            replay = await self.store.run(lambda s: _replay(s, snapshot.id, idempotency_key,
                                                             fingerprint, now))
            if replay is None:
                raise
            return replay
        if not created.replayed:
            self.on_created()
        return created

    def _create_unit(self, s: Session, tenant: _TenantRules, body: object, key: str | None,
                     fingerprint: str | None, now: datetime,
                     render: Callable[[Call], dict[str, Any]]) -> Created:
        if key is not None and fingerprint is not None:
            replay = _replay(s, tenant.id, key, fingerprint, now)
            if replay is not None:
                return replay
        request = check_request(body, tenant, self.catalog, now)
        window = timedelta(seconds=tenant.per_number_window_s)
        recent = int(s.scalar(repo.calls_to_query(tenant.id, request.destination,
                                                  now - window)) or 0)
        if recent >= tenant.per_number_limit:
            raise RateLimited("to", "number_rate_limited",
                              f"at most {tenant.per_number_limit} calls to one number per "
                              f"{tenant.per_number_window_s} s", tenant.per_number_window_s)
        call_id = repo.new_id("call")
        call = Call(
            id=call_id, tenant_id=tenant.id, scenario=request.scenario,
            scenario_sha256=request.scenario_sha256, destination=request.destination,
            params=request.clear_params,
            sealed_params=(seal(self.keys.seal_key, call_id, request.secret_params)
                           if request.secret_params else None),
            callback_url=request.callback_url, reference=request.reference,
            retry_policy=request.retry.as_json(), attempts=0, not_before=request.not_before,
            created_at=now, updated_at=now, next_event_seq=1, cancel_requested=False,
            state=QUEUED)
        response = render(call)
        record = None
        if key is not None and fingerprint is not None:
            record = IdempotencyRecord(tenant_id=tenant.id, key=key, request_hash=fingerprint,
                                       call_id=call_id, status=201, response=response,
                                       created_at=now, expires_at=now + IDEMPOTENCY_TTL)
        repo.insert_new_call(s, call, now, record)
        return Created(201, response)

    async def get(self, tenant_id: str, call_id: str) -> tuple[Call, list[Any]]:
        """The call with its transitions and webhook events; NotFound for another tenant's.
        One unit of work (:meth:`Store.run`: one thread hop on SQLite, not one per query)."""

        def unit(s: Session) -> tuple[Call, list[Any]]:
            call = s.scalars(repo.call_query(tenant_id, call_id, transitions=True)).first()
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            return call, list(s.scalars(repo.events_query(tenant_id, call_id=call_id)).all())

        return await self.store.run(unit)

    async def cancel(self, tenant_id: str, call_id: str) -> Call:
        """Cancel a queued call at once; a call being dialed is asked to stop (its node hangs
        up the attempt and records ``canceled``); an answered or ended call is a Conflict."""
        now = self.clock()
        async with self.store.session() as s, s.begin():
            call = await repo.get_call(s, tenant_id, call_id, lock=True)
            if call is None:
                raise NotFound(f"no call {call_id!r}")
            if call.state in TERMINAL_STATES or call.state == ANSWERED:
                raise Conflict("state", "not_cancelable",
                               f"the call is {call.state}; only queued, dialing or ringing "
                               "calls can be canceled")
            if call.state == QUEUED:
                repo.transition(s, call, CANCELED, now, reason="canceled by the client")
                call.outcome, call.reason, call.ended_at = "canceled", "canceled", now
                call.sealed_params = None
                repo.add_event(s, call, "call.canceled", call_summary(call), now)
            elif call.state in ACTIVE_STATES:
                call.cancel_requested = True
                call.updated_at = now
        if call.cancel_requested:
            with contextlib.suppress(Exception):  # the node that runs it also polls the flag
                self.on_cancel(call_id)
        return call


def dumps(body: Any) -> str:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class _TenantRules:
    """What a create needs of the tenant, read on the event loop (the ORM row stays there)."""

    id: str
    allowed_scenarios: list[str] | None
    destination_rules: dict[str, Any]
    per_number_limit: int
    per_number_window_s: int

    @classmethod
    def of(cls, tenant: Tenant) -> _TenantRules:
        return cls(tenant.id, list(tenant.allowed_scenarios) if tenant.allowed_scenarios
                   is not None else None, dict(tenant.destination_rules or {}),
                   tenant.per_number_limit, tenant.per_number_window_s)


def _replay(s: Session, tenant_id: str, key: str, fingerprint: str,
            now: datetime) -> Created | None:
    """The first response to (tenant, key), or None; FieldError when the body differs."""
    record = repo.live_idempotency(s, tenant_id, key, now)
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise FieldError("Idempotency-Key", "idempotency_key_reused",
                         "this key was used with another request body")
    return Created(record.status, record.response, replayed=True)
