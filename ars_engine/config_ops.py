"""The operations tables of the config file: ``[alerts]`` (rules and where alerts go) and
``[console]`` (the operator console's sessions). docs/configuration.md describes every key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .config import _Where

_ALERTS_KEYS = {"url", "url_env", "url_file", "interval_seconds", "answer_rate_min",
                "answer_window_minutes", "answer_min_calls", "queue_age_seconds",
                "dead_letter_window_minutes", "retry_seconds"}
_CONSOLE_KEYS = {"enabled", "session_hours", "secure_cookies"}
SECURE_COOKIES = ("auto", "always", "never")


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """``[alerts]``: what is watched and where a firing or resolved alert is POSTed.

    Rules (service/alerts.py): the trunk (OPTIONS keepalive) or AMI is down; the answer rate
    of calls that ended within ``answer_window_minutes`` is below ``answer_rate_min`` (only
    once at least ``answer_min_calls`` ended); a webhook event went dead within
    ``dead_letter_window_minutes``; the oldest due queued call waits longer than
    ``queue_age_seconds``. Without ``url`` alerts are still evaluated, logged, counted in
    ``/metrics`` and listed in the console."""

    url: str | None = None
    interval_seconds: float = 15.0
    answer_rate_min: float = 0.3
    answer_window_minutes: float = 15.0
    answer_min_calls: int = 20
    queue_age_seconds: float = 300.0
    dead_letter_window_minutes: float = 60.0
    retry_seconds: float = 30.0  # a failed notification is sent again after this long

    def __repr__(self) -> str:  # the URL may carry a gateway token in its query
        return f"AlertsConfig(url={'set' if self.url else 'none'})"


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """``[console]``: the operator console at ``/console``."""

    enabled: bool = True
    session_hours: float = 12.0  # a sign-in lasts this long
    # The session cookie's Secure flag: auto = when the request came over HTTPS (directly or
    # X-Forwarded-Proto from a trusted proxy is not read: put the engine behind TLS and say
    # "always").
    secure_cookies: str = "auto"


def alerts_config(where: _Where, data: dict[str, object], env: dict[str, str]) -> AlertsConfig:
    table = where.table(data, "alerts")
    where.unknown(table, _ALERTS_KEYS, "[alerts]")
    d = AlertsConfig()
    url = where.string(table, "url", "[alerts]")
    # a gateway URL carrying a token in its query is a secret: name a variable or a file
    secret_url = where.secret(table, "url_env", "url_file", "[alerts]", env)
    if url and secret_url:
        raise where.fail("[alerts]: url and url_env/url_file both given; keep one")
    url = url or secret_url
    if url is not None:
        try:
            parts = urlsplit(url)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            shown = url if not secret_url else "the URL read from url_env/url_file"
            raise where.fail(f"[alerts] url: expected an http:// or https:// URL, got {shown!r}")
    rate = where.number(table, "answer_rate_min", "[alerts]", d.answer_rate_min)
    if rate > 1:
        raise where.fail(f"[alerts] answer_rate_min: expected a fraction from 0 to 1, got {rate!r}")
    return AlertsConfig(
        url=url,
        interval_seconds=where.number(table, "interval_seconds", "[alerts]", d.interval_seconds,
                                      minimum=0.1),
        answer_rate_min=rate,
        answer_window_minutes=where.number(table, "answer_window_minutes", "[alerts]",
                                           d.answer_window_minutes, minimum=0.1),
        answer_min_calls=where.whole(table, "answer_min_calls", "[alerts]", d.answer_min_calls,
                                     minimum=1),
        queue_age_seconds=where.number(table, "queue_age_seconds", "[alerts]",
                                       d.queue_age_seconds, minimum=1.0),
        dead_letter_window_minutes=where.number(table, "dead_letter_window_minutes", "[alerts]",
                                                d.dead_letter_window_minutes, minimum=0.1),
        retry_seconds=where.number(table, "retry_seconds", "[alerts]", d.retry_seconds,
                                   minimum=0.1),
    )


def console_config(where: _Where, data: dict[str, object]) -> ConsoleConfig:
    table = where.table(data, "console")
    where.unknown(table, _CONSOLE_KEYS, "[console]")
    d = ConsoleConfig()
    enabled = table.get("enabled", d.enabled)
    if not isinstance(enabled, bool):
        raise where.fail(f"[console] enabled: expected true or false, got {enabled!r}")
    secure = where.string(table, "secure_cookies", "[console]") or d.secure_cookies
    if secure not in SECURE_COOKIES:
        raise where.fail(f"[console] secure_cookies: expected one of {list(SECURE_COOKIES)}, "
                         f"got {secure!r}")
    return ConsoleConfig(
        enabled=enabled,
        session_hours=where.number(table, "session_hours", "[console]", d.session_hours,
                                   minimum=0.01),
        secure_cookies=secure)
