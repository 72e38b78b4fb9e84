"""Errors as RFC 9457 ``application/problem+json``, and the request id every response carries.

A problem body is ``{type, title, status, detail, field, code}``: ``code`` is stable for programs
(``unknown_scenario``, ``invalid_json``…), ``type`` is ``PROBLEM_BASE + code``, ``field`` names
the request member at fault (``params.code``, ``retry.max_attempts``) or is null. ``detail`` is for
people and never repeats a value from the request body: a body may hold a verification code.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from http import HTTPStatus

from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import (
    Conflict,
    DestinationError,
    FieldError,
    NotFound,
    RateLimited,
    StoreError,
)
from ..service.logs import log_context

log = logging.getLogger("ars_engine.api")

PROBLEM_BASE = "https://ars-engine.example/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID = web.RequestKey("request_id", str)
# A client's own request id is echoed when it is short and plain; anything else is replaced.
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class Problem(Exception):
    """An error response decided by the API itself (auth, bad JSON, a missing recording)."""

    def __init__(self, status: int, code: str, detail: str, *, field: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.headers = dict(headers or {})


def problem_response(status: int, code: str, detail: str, *, field: str | None = None,
                     headers: Mapping[str, str] | None = None) -> web.Response:
    """A problem+json response."""
    body = {"type": PROBLEM_BASE + code, "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, "field": field, "code": code}
    return web.Response(status=status, headers=headers,
                        text=json.dumps(body, ensure_ascii=False),
                        content_type=PROBLEM_CONTENT_TYPE, charset="utf-8")


def problem_for(exc: BaseException) -> Problem | None:
    """The problem an exception maps to; None for an unexpected one (a 500)."""
    match exc:
        case Problem():
            return exc
        case RateLimited():
            return Problem(429, exc.code, exc.message, field=exc.field or None,
                           headers={"Retry-After": str(max(1, int(exc.retry_after)))})
        case Conflict():
            return Problem(409, exc.code, exc.message, field=exc.field or None)
        case DestinationError() | FieldError():
            return Problem(422, exc.code, exc.message, field=exc.field or None)
        case NotFound():
            return Problem(404, "not_found", str(exc))
        case StoreError():
            return Problem(503, "store_unavailable",
                           "the database is unavailable; try again shortly",
                           headers={"Retry-After": "5"})
        case web.HTTPRequestEntityTooLarge():
            return Problem(413, "body_too_large", "the request body is too large")
        case web.HTTPNotFound():
            return Problem(404, "not_found", "no such route")
        case web.HTTPMethodNotAllowed():
            allowed = sorted(exc.allowed_methods)
            return Problem(405, "method_not_allowed",
                           f"{exc.method} is not allowed here; allowed: {', '.join(allowed)}",
                           headers={"Allow": ", ".join(allowed)})
        case web.HTTPException() if exc.status >= 400:
            code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_").replace("-", "_")
            return Problem(exc.status, code, HTTPStatus(exc.status).description)
    return None


def _request_id(request: web.Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _CLIENT_REQUEST_ID.fullmatch(given) else "req_" + secrets.token_hex(8)


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request an id (also in its log records' ``request_id``), turn every error
    into a problem response, tag the response."""
    request_id = _request_id(request)
    request[REQUEST_ID] = request_id
    with log_context(request_id=request_id):
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like pass through as they are
                exc.headers[REQUEST_ID_HEADER] = request_id
                raise
            response = _render(exc, request)
        except Exception as exc:
            response = _render(exc, request)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _render(exc: BaseException, request: web.Request) -> web.Response:
    problem = problem_for(exc)
    if problem is None:
        # The message may quote request data; only the type and the traceback are logged.
        log.error("request %s %s %s failed: %s", request[REQUEST_ID], request.method,
                  request.path, type(exc).__name__, exc_info=exc)
        problem = Problem(500, "internal_error",
                          f"an internal error occurred (request id {request[REQUEST_ID]})")
    elif problem.status == 503:
        log.warning("request %s %s %s: %s", request[REQUEST_ID], request.method, request.path,
                    exc)
    return problem_response(problem.status, problem.code, problem.detail, field=problem.field,
                            headers=problem.headers)
