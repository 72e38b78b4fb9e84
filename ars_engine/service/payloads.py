"""How a call looks from outside: the JSON of the API and of the webhooks (one shape for both,
so the verification service parses one thing). Secrets are masked in the stored row already."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..store import repo
from ..store.models import Call, CallTransition, WebhookEvent


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else repo.iso(moment)


def call_summary(call: Call) -> dict[str, Any]:
    """The call as listed and as sent in webhooks."""
    return {
        "id": call.id,
        "scenario": call.scenario,
        "to": call.destination,
        "state": call.state,
        "outcome": call.outcome,
        "reason": call.reason,
        "result": call.result,
        "reference": call.reference,
        "params": call.params,
        "attempts": call.attempts,
        "retry": call.retry_policy,
        "sip_status": call.sip_status,
        "callback_url": call.callback_url,
        "schedule_at": iso(call.not_before),
        "created_at": iso(call.created_at),
        "updated_at": iso(call.updated_at),
        "answered_at": iso(call.answered_at),
        "ended_at": iso(call.ended_at),
        "recording": f"/v1/calls/{call.id}/recording" if call.recording else None,
        "evidence": f"/v1/calls/{call.id}/evidence" if call.evidence else None,
    }


def transition_json(t: CallTransition) -> dict[str, Any]:
    return {"from": t.from_state, "to": t.to_state, "at": iso(t.at), "attempt": t.attempt,
            "reason": t.reason}


def event_json(e: WebhookEvent) -> dict[str, Any]:
    return {"id": e.id, "type": e.type, "sequence": e.seq, "status": e.status,
            "attempts": e.attempts, "last_status": e.last_status, "last_error": e.last_error,
            "created_at": iso(e.created_at), "next_attempt_at": iso(e.next_attempt_at),
            "delivered_at": iso(e.delivered_at), "call_id": e.call_id}


def call_detail(call: Call, events: list[WebhookEvent]) -> dict[str, Any]:
    """GET /v1/calls/{id}: the summary, every state change with its time, the scenario's
    timeline (keys of secret gathers shown as *), and the webhook deliveries."""
    return {**call_summary(call),
            "transitions": [transition_json(t) for t in call.transitions],
            "timeline": call.timeline or [],
            "webhooks": [event_json(e) for e in sorted(events, key=lambda e: e.seq)]}
