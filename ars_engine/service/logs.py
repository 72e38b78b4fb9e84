"""Structured logs: one JSON object per line, tagged with the call, tenant and request they
belong to, secrets masked.

- The tags come from context variables set with :func:`log_context`: the dispatcher sets
  ``call_id`` and ``tenant`` in each call's task (tasks it starts inherit them), the webhook
  sender while it delivers an event, the API's problem middleware sets ``request_id`` for the
  request. A record's own attributes (``logger.info(..., extra={"call_id": ...})``) win.
- :class:`JsonFormatter` renders ``ts`` (ISO 8601 UTC, milliseconds), ``level``, ``logger``,
  ``msg`` (arguments merged in), ``call_id``, ``tenant``, ``request_id`` (when set) and ``exc``
  (the formatted traceback, when there is one).
- Secrets: :func:`configure_logging` installs :class:`~.masking.ScrubbingFilter` on every
  handler, and the formatter scrubs what it writes from the message, the traceback and the
  client-given request id again, so a handler added without the filter leaks nothing either.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from .masking import DEFAULT_REGISTRY, SecretRegistry, install

__all__ = ["LOG_FORMATS", "JsonFormatter", "configure_logging", "current_context", "log_context"]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"  # as `ars-engine --log-level`

_CALL_ID: ContextVar[str | None] = ContextVar("ars_log_call_id", default=None)
_TENANT: ContextVar[str | None] = ContextVar("ars_log_tenant", default=None)
_REQUEST_ID: ContextVar[str | None] = ContextVar("ars_log_request_id", default=None)
_VARS = {"call_id": _CALL_ID, "tenant": _TENANT, "request_id": _REQUEST_ID}


@contextmanager
def log_context(*, call_id: str | None = None, tenant: str | None = None,
                request_id: str | None = None) -> Iterator[None]:
    """Tag the log records of the enclosed code (and of the tasks it creates) with the given
    fields; fields left ``None`` keep their outer value. Restored on exit."""
    given = {"call_id": call_id, "tenant": tenant, "request_id": request_id}
    tokens = [(_VARS[name], _VARS[name].set(value)) for name, value in given.items()
              if value is not None]
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_context() -> dict[str, str]:
    """The fields :func:`log_context` set in the running context (those that are set)."""
    return {name: value for name, var in _VARS.items() if (value := var.get()) is not None}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def __init__(self, registry: SecretRegistry | None = None) -> None:
        super().__init__()
        self.registry = DEFAULT_REGISTRY if registry is None else registry

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line: ts, level, logger, msg, call_id, tenant, then
        request_id and exc when present."""
        scrub = self.registry.scrub
        at = datetime.fromtimestamp(record.created, UTC)
        entry: dict[str, Any] = {
            "ts": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": scrub(_message(record)),
            "call_id": _field(record, "call_id"),
            "tenant": _field(record, "tenant"),
        }
        request_id = _field(record, "request_id")
        if request_id is not None:
            entry["request_id"] = scrub(request_id)  # may come from the client's header
        # As logging.Formatter.format: render exc_info once into exc_text. ScrubbingFilter
        # leaves a scrubbed exc_text (and drops exc_info) when a traceback held a secret.
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = scrub(record.exc_text)
        if record.stack_info:
            entry["stack"] = scrub(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a broken format string must not make logging raise
        return f"{record.msg} (arguments: {record.args!r})"


def _field(record: logging.LogRecord, name: str) -> str | None:
    value = getattr(record, name, None)
    if value is None:
        value = _VARS[name].get()
    return None if value is None else str(value)


def configure_logging(fmt: str = "text", level: int | str | None = None, *,
                      logger: logging.Logger | None = None,
                      stream: TextIO | None = None) -> logging.Logger:
    """Make ``logger`` (default: the root logger) write ``fmt`` ("text" or "json"), keeping
    the secret scrubbing: a stream handler on ``stream`` (default stderr) is added when the
    logger has none; with "json" every handler gets a :class:`JsonFormatter` ("text" leaves
    the formatters as they are); every handler gets the :class:`~.masking.ScrubbingFilter`.
    ``level`` (when given) sets the logger's level. Returns the logger."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {list(LOG_FORMATS)}, not {fmt!r}")
    target = logging.getLogger() if logger is None else logger
    if not target.handlers:
        added = logging.StreamHandler(sys.stderr if stream is None else stream)
        added.setFormatter(logging.Formatter(TEXT_FORMAT))
        target.addHandler(added)
    if fmt == "json":
        for handler in target.handlers:
            handler.setFormatter(JsonFormatter())
    install(target)
    if level is not None:
        target.setLevel(level.upper() if isinstance(level, str) else level)
    # Alembic announces each of its autogenerate plugins at INFO on every start: noise
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    return target
