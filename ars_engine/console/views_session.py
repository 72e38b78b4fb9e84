"""Sign in and sign out."""

from __future__ import annotations

import hmac
import logging
import secrets

from aiohttp import web

from . import accounts
from .app import (
    COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    SERVICES,
    SESSION_COOKIE,
    SESSION_HASH,
    THROTTLE,
    check_csrf,
    render,
    safe_next,
    secure_cookies,
    session_lifetime,
)

log = logging.getLogger("ars_engine.console")
routes = web.RouteTableDef()


def _login_page(request: web.Request, *, status: int = 200, error: str = "",
                username: str = "") -> web.Response:
    """The form with a fresh login CSRF token (double-submit cookie: the form and the cookie
    must agree, so another site cannot sign a browser into its own account)."""
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status=status, error=error, username=username,
                      login_csrf=token, next=safe_next(request.query.get("next")))
    response.set_cookie(LOGIN_CSRF_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=secure_cookies(request))
    return response


@routes.get("/login")
async def login_form(request: web.Request) -> web.Response:
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    form = await request.post()
    username = str(form.get("username", "")).strip()[:100]
    password = str(form.get("password", ""))
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    presented = str(form.get("csrf_token", ""))
    if not cookie or not hmac.compare_digest(cookie, presented):
        raise web.HTTPForbidden(text="csrf")
    throttle = request.app[THROTTLE]
    keys = (f"user:{username.lower()}", f"addr:{request.remote}")
    if throttle.blocked(*keys):
        log.warning("console sign-in refused: too many failures (address %s)", request.remote)
        return _login_page(request, status=429, error="login_throttled", username=username)
    now = services.clock()
    async with services.store.session() as s, s.begin():
        operator = await accounts.operator_by_name(s, username)
        ok = accounts.check_credentials(operator, password)
        token = await accounts.open_session(s, operator, now=now,
                                            lifetime=session_lifetime(services)) \
            if ok and operator is not None else None
    if token is None:
        throttle.failed(*keys)
        log.info("console sign-in failed (address %s)", request.remote)
        return _login_page(request, status=401, error="login_failed", username=username)
    throttle.succeeded(*keys)
    log.info("console sign-in: operator %s", operator.id if operator else "?")
    response = web.HTTPFound(safe_next(str(form.get("next", ""))))
    response.set_cookie(SESSION_COOKIE, token, path=COOKIE_PATH, httponly=True,
                        samesite="Strict", secure=secure_cookies(request),
                        max_age=int(session_lifetime(services).total_seconds()))
    response.del_cookie(LOGIN_CSRF_COOKIE, path=COOKIE_PATH)
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    await check_csrf(request, request[SESSION_HASH])  # (the middleware checked it too)
    async with services.store.session() as s, s.begin():
        await accounts.close_session(s, request[SESSION_HASH])
    response = web.HTTPFound("/console/login")
    response.del_cookie(SESSION_COOKIE, path=COOKIE_PATH)
    raise response
