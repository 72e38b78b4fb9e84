"""The console sub-application, mounted at ``/console`` by :func:`ars_engine.api.app.create_app`.

Every page but the sign-in page and the static files needs a session (``ars_session`` cookie,
HttpOnly, SameSite=Strict, path /console). Every POST carries the session's CSRF token (a form
field ``csrf_token`` or an ``X-CSRF-Token`` header) and, when the browser sends one, an Origin
equal to the page's own. Responses carry a strict Content-Security-Policy (scripts and styles
from /console/static only) and are never cached. Errors are HTML pages in the operator's
language; nothing a request sent is echoed into a log.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import StoreError
from ..service.runtime import Services
from ..store.models import ADMIN, Operator
from . import accounts
from .i18n import pick_lang, state_name, translate

log = logging.getLogger("ars_engine.console")

SESSION_COOKIE = "ars_session"
LANG_COOKIE = "ars_lang"
LOGIN_CSRF_COOKIE = "ars_login_csrf"
COOKIE_PATH = "/console"
STATIC_DIR = Path(__file__).with_name("static")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; "
       "form-action 'self'; base-uri 'none'; object-src 'none'")
PUBLIC = frozenset({"/console/login"})
THROTTLE_FAILURES = 5  # failed sign-ins per user name (and per address) …
THROTTLE_WINDOW = 300.0  # … within this many seconds, before sign-in is refused for a while

SERVICES = web.AppKey("console_services", Services)
TEMPLATES = web.AppKey("console_templates", jinja2.Environment)
CSRF_KEY = web.AppKey("console_csrf_key", bytes)
CLOSING = web.AppKey("console_closing", asyncio.Event)  # set at shutdown: live streams end
OPERATOR = web.RequestKey("operator", Operator)
SESSION_HASH = web.RequestKey("session_hash", str)
LANG = web.RequestKey("lang", str)


@dataclass(slots=True)
class LoginThrottle:
    """Failed sign-ins per key (user name, client address) in a sliding window, per node."""

    clock: Callable[[], float] = time.monotonic
    _failures: defaultdict[str, deque[float]] = field(
        default_factory=lambda: defaultdict(deque), init=False)

    def blocked(self, *keys: str) -> bool:
        return any(len(self._recent(k)) >= THROTTLE_FAILURES for k in keys)

    def failed(self, *keys: str) -> None:
        for key in keys:
            self._recent(key).append(self.clock())

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)

    def _recent(self, key: str) -> deque[float]:
        times = self._failures[key]
        while times and times[0] < self.clock() - THROTTLE_WINDOW:
            times.popleft()
        if len(self._failures) > 10_000:  # bounded memory under a spray of names
            self._failures.clear()
            times = self._failures[key]
        return times


THROTTLE = web.AppKey("console_throttle", LoginThrottle)


def console_app(services: Services) -> web.Application:
    """The console for ``services`` (its routes live in ``views_*`` modules)."""
    from .views_calls import routes as call_routes
    from .views_ops import SIM_AUDIO
    from .views_ops import routes as ops_routes
    from .views_session import routes as session_routes

    app = web.Application(middlewares=[console_middleware])
    app[SERVICES] = services
    app[TEMPLATES] = _environment()
    app[CSRF_KEY] = services.keys.derive("console/csrf")
    app[THROTTLE] = LoginThrottle()
    app[SIM_AUDIO] = OrderedDict()
    app[CLOSING] = asyncio.Event()
    app.on_shutdown.append(_end_live_streams)
    app.add_routes(session_routes)
    app.add_routes(call_routes)
    app.add_routes(ops_routes)
    app.router.add_static("/static", STATIC_DIR, name="static", append_version=True)
    return app


async def _end_live_streams(app: web.Application) -> None:
    """Shutdown: end every open live stream now (otherwise the server waits for them to close
    for its whole shutdown timeout, a minute)."""
    app[CLOSING].set()
    app[SERVICES].changes.notify()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("ars_engine.console", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["seconds"] = lambda ms: f"{(ms or 0) / 1000:.2f}"
    return env


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S") + " UTC"


# -- rendering ---------------------------------------------------------------------------------


def render(request: web.Request, template: str, *, status: int = 200,
           **context: Any) -> web.Response:
    """A page in the request's language, with the operator, the CSRF token and the helpers."""
    app = request.app
    lang = request.get(LANG, "ko")
    operator = request.get(OPERATOR)
    session_hash = request.get(SESSION_HASH)
    csrf = accounts.csrf_token(app[CSRF_KEY], session_hash) if session_hash else ""
    static = app.router["static"]

    def static_url(name: str) -> str:
        return str(static.url_for(filename=name))

    html = app[TEMPLATES].get_template(template).render(
        t=lambda key, **values: translate(lang, key, **values),
        state_name=lambda s: state_name(lang, s), lang=lang, operator=operator,
        is_admin=operator is not None and operator.role == ADMIN, csrf=csrf,
        static_url=static_url, path=request.path, query=request.query_string,
        other_lang="en" if lang == "ko" else "ko", **{"nav": "", **context})
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, key: str, detail: str = "") -> web.Response:
    return render(request, "error.html", status=status, message_key=key, detail=detail)


def tenant_scope(request: web.Request, wanted: str | None = None) -> str | None:
    """The tenant whose data the operator may see: their own (a tenant operator, whatever they
    asked for), or ``wanted`` (an admin; None: all tenants)."""
    operator = request[OPERATOR]
    if operator.role == ADMIN:
        return wanted or None
    return operator.tenant_id


def login_redirect(request: web.Request) -> web.HTTPFound:
    target = request.path_qs if request.method == "GET" else "/console/"
    return web.HTTPFound(f"/console/login?next={quote(target, safe='')}")


def safe_next(value: str | None) -> str:
    """Only a path inside the console (no scheme, no host, no //): an open redirect otherwise."""
    if not value or not value.startswith("/console/") or value.startswith("//"):
        return "/console/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or "\\" in value:
        return "/console/"
    return value


def secure_cookies(request: web.Request) -> bool:
    mode = request.app[SERVICES].settings.console.secure_cookies
    return mode == "always" or (mode == "auto" and request.secure)


# -- the middleware ----------------------------------------------------------------------------


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Language, session, CSRF, security headers and HTML error pages for every console path."""
    query_lang = request.query.get("lang")
    request[LANG] = pick_lang(query_lang, request.cookies.get(LANG_COOKIE),
                              request.headers.get("Accept-Language"))
    try:
        response = await _guarded(request, handler)
    except web.HTTPException as exc:
        if exc.status < 400:
            _headers(exc.headers)
            raise
        key = {403: "forbidden", 404: "not_found"}.get(exc.status, "bad_request")
        if exc.status == 403 and exc.text == "csrf":
            key = "csrf_failed"
        detail = (exc.text or "") if exc.status == 400 else ""
        response = error_page(request, exc.status, key, detail)
    except StoreError:
        log.warning("console %s %s: the store is unavailable", request.method, request.path)
        response = error_page(request, 503, "bad_request", "database unavailable")
    except Exception as exc:
        log.error("console %s %s failed: %s", request.method, request.path, type(exc).__name__,
                  exc_info=exc)
        response = error_page(request, 500, "bad_request", "internal error")
    if query_lang in ("ko", "en") and isinstance(response, web.Response | web.StreamResponse) \
            and not response.prepared:
        response.set_cookie(LANG_COOKIE, query_lang, path=COOKIE_PATH, max_age=365 * 86400,
                            samesite="Lax", httponly=True)
    if not response.prepared:
        _headers(response.headers)
    return response


def _headers(headers: Any) -> None:
    headers.setdefault("Content-Security-Policy", CSP)
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Cache-Control", "no-store")


async def _guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path in PUBLIC or request.path.startswith("/console/static/"):
        return await handler(request)
    services = request.app[SERVICES]
    token = request.cookies.get(SESSION_COOKIE)
    found = None
    if token:
        async with services.store.session() as s, s.begin():
            found = await accounts.session_operator(s, token, now=services.clock())
    if found is None:
        raise login_redirect(request)
    request[OPERATOR], request[SESSION_HASH] = found
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        await check_csrf(request, found[1])
    return await handler(request)


async def check_csrf(request: web.Request, session_hash: str) -> None:
    """403 unless the request carries this session's token and, if any, our own Origin."""
    origin = request.headers.get("Origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.host:
        raise web.HTTPForbidden(text="cross-origin request")
    presented = request.headers.get("X-CSRF-Token", "")
    if not presented and request.content_type in ("application/x-www-form-urlencoded",
                                                  "multipart/form-data"):
        form = await request.post()
        value = form.get("csrf_token", "")
        presented = value if isinstance(value, str) else ""
    if not presented or not accounts.csrf_matches(request.app[CSRF_KEY], session_hash,
                                                  presented):
        raise web.HTTPForbidden(text="csrf")


def session_lifetime(services: Services) -> timedelta:
    return timedelta(hours=services.settings.console.session_hours)
