"""The API's OpenAPI 3.1 document, written by hand (served at ``GET /v1/openapi.json``).

Kept next to the routes on purpose: tests/integration/test_api_openapi.py fails when a route is
added without its operation here, or an operation documented that no route serves.
"""

from __future__ import annotations

import copy
from typing import Any

from ..service.signing import DEFAULT_TOLERANCE, HEADER

__all__ = ["openapi_document"]

JSON = "application/json"
PROBLEM = "application/problem+json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM: {"schema": _ref("Problem")}}}


def _errors(*statuses: int) -> dict[str, Any]:
    """The common problem responses of an authenticated route, plus ``statuses``."""
    described = {
        400: "The body is not valid JSON (code invalid_json).",
        401: "No API key, or not a valid one.",
        404: "No such call for this tenant.",
        409: "The call's state forbids it.",
        413: "The body is larger than the server's limit.",
        415: "The body's content type is not accepted.",
        422: "A field or query parameter is invalid; `field` names it.",
        429: "A rate limit refuses the request for now; see Retry-After.",
    }
    out = {"401": {"$ref": "#/components/responses/Unauthorized"}}
    for status in statuses:
        out[str(status)] = _problem(described[status])
    out["503"] = {"$ref": "#/components/responses/StoreUnavailable"}
    return out


_CALL_ID = {"name": "call_id", "in": "path", "required": True,
            "description": "The call's id (`call_…`).", "schema": {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "RetryPolicy": {
        "type": "object",
        "additionalProperties": False,
        "description": "Attempt the call again when an attempt ends busy or unanswered.",
        "properties": {
            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 5, "default": 1,
                             "description": "Attempts in all (1: no retry)."},
            "retry_on": {"type": "array", "uniqueItems": True, "default": [],
                         "items": {"type": "string", "enum": ["busy", "no_answer"]}},
            "interval_seconds": {"type": "number", "minimum": 10, "maximum": 3600,
                                 "default": 60},
        },
    },
    "CallRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["scenario", "to"],
        "properties": {
            "scenario": {"type": "string", "description": "A name from GET /v1/scenarios.",
                         "examples": ["type_c"]},
            "to": {"type": "string", "examples": ["010-1234-5678", "+821012345678"],
                   "description": "The number to call; normalised to E.164. Korean mobile, "
                                  "landline and VoIP numbers unless the tenant allows more."},
            "params": {"type": "object", "default": {},
                       "additionalProperties": {"type": ["string", "integer"]},
                       "description": "The scenario's declared parameters. Secret ones "
                                      "(e.g. `code`) are sealed at rest and masked in every "
                                      "response.",
                       "examples": [{"code": "123456", "company": "에이알에스"}]},
            "callback_url": {"type": "string", "format": "uri", "maxLength": 2000,
                             "description": "http(s) URL that receives the signed webhooks."},
            "schedule_at": {"type": "string", "format": "date-time",
                            "description": "Not before this time (with a UTC offset; at most "
                                           "7 days ahead). Default: now."},
            "retry": _ref("RetryPolicy"),
            "reference": {"type": "string", "maxLength": 200,
                          "description": "Your own reference, echoed back."},
        },
    },
    "Call": {
        "type": "object",
        "required": ["id", "scenario", "to", "state", "params", "attempts", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "scenario": {"type": "string"},
            "to": {"type": "string", "description": "E.164"},
            "state": {"type": "string", "enum": ["queued", "dialing", "ringing", "answered",
                                                 "finished", "failed", "canceled"]},
            "outcome": {**_NULLABLE_STRING,
                        "description": "How it ended: the scenario's outcome (success, "
                                       "failed, timeout…) or a telephony one (busy, "
                                       "no_answer, rejected, unreachable, canceled…)."},
            "reason": _NULLABLE_STRING,
            "result": {"type": ["object", "null"],
                       "description": "The scenario's result fields (secrets masked)."},
            "reference": _NULLABLE_STRING,
            "params": {"type": "object", "description": "As given, secret values masked."},
            "attempts": {"type": "integer", "minimum": 0},
            "retry": {"type": "object"},
            "sip_status": {"type": ["integer", "null"]},
            "callback_url": _NULLABLE_STRING,
            "schedule_at": _NULLABLE_TIME,
            "created_at": {"type": "string", "format": "date-time"},
            "updated_at": {"type": "string", "format": "date-time"},
            "answered_at": _NULLABLE_TIME,
            "ended_at": _NULLABLE_TIME,
            "recording": {**_NULLABLE_STRING, "description": "Path of the recording route."},
            "evidence": {**_NULLABLE_STRING, "description": "Path of the evidence route."},
            "cancel_requested": {"type": "boolean",
                                 "description": "Only in the cancel response: the call is "
                                                "being dialed and its node was asked to stop."},
        },
    },
    "CallDetail": {
        "allOf": [_ref("Call"), {
            "type": "object",
            "properties": {
                "transitions": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"from": _NULLABLE_STRING, "to": {"type": "string"},
                                   "at": {"type": "string", "format": "date-time"},
                                   "attempt": {"type": "integer"}, "reason": _NULLABLE_STRING},
                }},
                "timeline": {"type": "array", "items": {"type": "object"},
                             "description": "The scenario's events (prompts, keys: secret "
                                            "gathers shown as *)."},
                "webhooks": {"type": "array", "items": _ref("WebhookEvent")},
            },
        }],
    },
    "CallPage": {
        "type": "object",
        "required": ["calls", "next_cursor"],
        "properties": {
            "calls": {"type": "array", "items": _ref("Call")},
            "next_cursor": {**_NULLABLE_STRING,
                            "description": "Pass as `cursor` for the next page; null at the end."},
        },
    },
    "WebhookEvent": {
        "type": "object",
        "description": "A webhook delivery as the outbox keeps it.",
        "properties": {
            "id": {"type": "string"}, "type": {"type": "string"},
            "sequence": {"type": "integer"},
            "status": {"type": "string", "enum": ["pending", "delivered", "dead"]},
            "attempts": {"type": "integer"}, "last_status": {"type": ["integer", "null"]},
            "last_error": _NULLABLE_STRING, "created_at": {"type": "string",
                                                           "format": "date-time"},
            "next_attempt_at": _NULLABLE_TIME, "delivered_at": _NULLABLE_TIME,
            "call_id": {"type": "string"},
        },
    },
    "WebhookPayload": {
        "type": "object",
        "required": ["id", "type", "created_at", "sequence", "call"],
        "properties": {
            "id": {"type": "string", "description": "Event id: de-duplicate on it (delivery "
                                                    "is at least once)."},
            "type": {"type": "string", "enum": ["call.finished", "call.failed",
                                                "call.canceled", "call.retrying"],
                     "description": "finished: the scenario ran (see call.outcome); failed: "
                                    "not reached or broken off; canceled; retrying: an "
                                    "attempt ended busy/no_answer and another is scheduled."},
            "created_at": {"type": "string", "format": "date-time"},
            "sequence": {"type": "integer", "minimum": 1,
                         "description": "Per call, increasing: events of a call arrive in "
                                        "order."},
            "call": _ref("Call"),
        },
    },
    "Scenario": {
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "title": _NULLABLE_STRING,
            "description": _NULLABLE_STRING, "sha256": {"type": "string"},
            "params": {"type": "array", "items": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "type": {"type": "string"},
                               "required": {"type": "boolean"}, "secret": {"type": "boolean"},
                               "description": _NULLABLE_STRING, "default": {}},
            }},
            "steps": {"type": "integer"},
            "max_seconds": {"type": ["number", "null"]},
        },
    },
    "ValidationReport": {
        "type": "object",
        "required": ["valid", "name", "errors"],
        "properties": {
            "valid": {"type": "boolean"},
            "name": _NULLABLE_STRING,
            "errors": {"type": "array", "items": {
                "type": "object",
                "required": ["line", "column", "code", "message"],
                "properties": {"line": {"type": "integer"}, "column": {"type": "integer"},
                               "code": {"type": "string"}, "message": {"type": "string"}},
            }},
        },
    },
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details.",
        "required": ["type", "title", "status", "detail", "code"],
        "properties": {
            "type": {"type": "string", "format": "uri",
                     "examples": ["https://ars-engine.example/problems/unknown_scenario"]},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "field": {**_NULLABLE_STRING,
                      "description": "The member at fault: `to`, `params.code`, "
                                     "`retry.max_attempts`, a query parameter…"},
            "code": {"type": "string", "description": "Stable, for programs."},
        },
    },
}

_PATHS: dict[str, Any] = {
    "/v1/calls": {
        "post": {
            "operationId": "createCall",
            "summary": "Place a call",
            "description": "Checks the whole request, then queues the call. With an "
                           "Idempotency-Key the first response is kept 24 h and replayed for "
                           "the same body (header Idempotent-Replayed: true); the key with "
                           "another body is a 422 idempotency_key_reused.",
            "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
            "requestBody": {"required": True,
                            "content": {JSON: {"schema": _ref("CallRequest")}}},
            "responses": {
                "201": {**_json_body(_ref("Call"), "The call, queued."),
                        "headers": {
                            "Location": {"schema": {"type": "string"}},
                            "Idempotent-Replayed": {"schema": {"type": "string",
                                                               "enum": ["true"]}},
                        }},
                **_errors(400, 413, 422, 429),
            },
        },
        "get": {
            "operationId": "listCalls",
            "summary": "List calls, newest first",
            "parameters": [
                _query("state", "Comma-separated states.", {"type": "string",
                                                            "examples": ["queued,failed"]}),
                _query("scenario", "A scenario name.", {"type": "string"}),
                _query("to", "A number (normalised like `to` of a new call).",
                       {"type": "string"}),
                _query("outcome", "An outcome.", {"type": "string"}),
                _query("created_from", "Created at or after (with UTC offset).",
                       {"type": "string", "format": "date-time"}),
                _query("created_to", "Created before (with UTC offset).",
                       {"type": "string", "format": "date-time"}),
                _query("limit", "Page size.", {"type": "integer", "minimum": 1,
                                               "maximum": 200, "default": 50}),
                _query("cursor", "`next_cursor` of the previous page.", {"type": "string"}),
            ],
            "responses": {"200": _json_body(_ref("CallPage"), "A page of calls."),
                          **_errors(422)},
        },
    },
    "/v1/calls/{call_id}": {
        "get": {
            "operationId": "getCall",
            "summary": "A call with its transitions, timeline and webhook deliveries",
            "parameters": [_CALL_ID],
            "responses": {"200": _json_body(_ref("CallDetail"), "The call."),
                          **_errors(404)},
        },
    },
    "/v1/calls/{call_id}/cancel": {
        "post": {
            "operationId": "cancelCall",
            "summary": "Cancel a call",
            "description": "A queued call is canceled at once. A call being dialed or ringing "
                           "keeps its state with cancel_requested: true until its node hangs "
                           "up. An answered or ended call is a 409.",
            "parameters": [_CALL_ID],
            "responses": {"200": _json_body(_ref("Call"), "The call after the request."),
                          **_errors(404, 409)},
        },
    },
    "/v1/calls/{call_id}/recording": {
        "get": {
            "operationId": "getRecording",
            "summary": "The call's recording",
            "parameters": [_CALL_ID, _query("format", "wav (as recorded) or mp3 (the "
                                                      "evidence bundle's compressed copy).",
                                            {"type": "string", "enum": ["wav", "mp3"],
                                             "default": "wav"})],
            "responses": {
                "200": {"description": "The audio.",
                        "content": {"audio/wav": {"schema": {"type": "string",
                                                             "contentMediaType": "audio/wav"}},
                                    "audio/mpeg": {"schema": {
                                        "type": "string", "contentMediaType": "audio/mpeg"}}}},
                **_errors(404, 422),
            },
        },
    },
    "/v1/calls/{call_id}/evidence": {
        "get": {
            "operationId": "getEvidence",
            "summary": "The call's signed evidence manifest",
            "description": "Byte for byte as written: the prompt texts, the key-press "
                           "timeline, the SHA-256 of the audio, an HMAC-SHA256 signature.",
            "parameters": [_CALL_ID],
            "responses": {"200": _json_body({"type": "object"}, "The manifest."),
                          **_errors(404)},
        },
    },
    "/v1/webhooks": {
        "get": {
            "operationId": "listWebhookEvents",
            "summary": "Webhook events and their delivery state (dead letters included)",
            "parameters": [
                _query("status", "Delivery state.", {"type": "string",
                                                     "enum": ["pending", "delivered", "dead"]}),
                _query("call_id", "Events of one call.", {"type": "string"}),
                _query("limit", "At most this many.", {"type": "integer", "minimum": 1,
                                                      "maximum": 200, "default": 100}),
            ],
            "responses": {"200": _json_body(
                {"type": "object", "required": ["events"],
                 "properties": {"events": {"type": "array", "items": _ref("WebhookEvent")}}},
                "Events, newest first."), **_errors(422)},
        },
    },
    "/v1/scenarios": {
        "get": {
            "operationId": "listScenarios",
            "summary": "The scenarios this tenant may use",
            "responses": {"200": _json_body(
                {"type": "object", "required": ["scenarios"],
                 "properties": {"scenarios": {"type": "array", "items": _ref("Scenario")}}},
                "Scenarios."), **_errors()},
        },
    },
    "/v1/scenarios/validate": {
        "post": {
            "operationId": "validateScenario",
            "summary": "Validate scenario YAML without saving it",
            "requestBody": {"required": True, "content": {
                "text/yaml": {"schema": {"type": "string"}},
                "application/yaml": {"schema": {"type": "string"}},
                "text/plain": {"schema": {"type": "string"}},
                JSON: {"schema": {"type": "object", "required": ["yaml"],
                                  "properties": {"yaml": {"type": "string"}}}},
            }},
            "responses": {"200": _json_body(_ref("ValidationReport"),
                                            "Valid or not, with line-numbered errors."),
                          **_errors(400, 413, 415, 422)},
        },
    },
    "/v1/openapi.json": {
        "get": {
            "operationId": "getOpenApi",
            "summary": "This document",
            "security": [],
            "responses": {"200": _json_body({"type": "object"}, "OpenAPI 3.1.")},
        },
    },
}

_SIGNATURE_DESCRIPTION = (
    f"`t=<unix seconds>,v1=<hex HMAC-SHA256(secret, t + \".\" + raw body)>`. Verify it before "
    f"trusting the body and refuse timestamps more than {DEFAULT_TOLERANCE} s from your clock "
    "(replays). Several v1= entries may appear while a secret rotates; accept any that matches. "
    "The tenant's secret is printed by `ars-engine tenants secret`; "
    "ars_engine/service/signing.py (standard library only) implements verify()."
)

_DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "ars-engine API",
        "version": "1.0.0",
        "summary": "Outbound ARS calls: trigger a call, receive its signed outcome.",
        "description": "See docs/api.md. Errors are RFC 9457 application/problem+json; every "
                       "response carries X-Request-Id.",
    },
    "servers": [{"url": "/"}],
    "security": [{"bearerAuth": []}],
    "paths": _PATHS,
    "webhooks": {
        "callEvent": {
            "post": {
                "operationId": "callEvent",
                "summary": "A call changed state (sent to the call's callback_url)",
                "description": "Delivered at least once, retried with backoff for 24 h; "
                               "de-duplicate on `id`. Answer 2xx within 10 s.",
                "parameters": [{"name": HEADER, "in": "header", "required": True,
                                "description": _SIGNATURE_DESCRIPTION,
                                "schema": {"type": "string",
                                           "pattern": "^t=[0-9]+(,v[0-9]+=[0-9a-f]+)+$"}},
                               {"name": "X-ARS-Event-Id", "in": "header", "required": True,
                                "description": "The body's `id`.",
                                "schema": {"type": "string"}},
                               {"name": "X-ARS-Event-Type", "in": "header", "required": True,
                                "description": "The body's `type`.",
                                "schema": {"type": "string"}}],
                "requestBody": {"required": True,
                                "content": {JSON: {"schema": _ref("WebhookPayload")}}},
                "responses": {"2XX": {"description": "Received; not sent again."},
                              "default": {"description": "Retried later."}},
                "security": [],
            },
        },
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer",
                           "description": "A tenant API key: `ars_<id>_<secret>`."},
        },
        "parameters": {
            "IdempotencyKey": {
                "name": "Idempotency-Key", "in": "header", "required": False,
                "description": "1-255 printable characters; the first response is replayed "
                               "for 24 h for the same body.",
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
            },
        },
        "responses": {
            "Unauthorized": {
                **_problem("No API key, or not a valid one (unknown, revoked, disabled)."),
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
            },
            "StoreUnavailable": _problem("The database is unavailable; retry shortly."),
        },
        "schemas": _SCHEMAS,
    },
}


def openapi_document() -> dict[str, Any]:
    """A fresh copy of the document (callers may change theirs)."""
    return copy.deepcopy(_DOCUMENT)
