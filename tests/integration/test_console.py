"""The operator console over HTTP on a real server (aiohttp TestServer) and both databases:
sign-in, sessions, CSRF, roles, history, a call's page, the live stream, usage and its CSV,
scenario validation and the simulator. The browser tests (tests/browser) drive the same pages
in Chromium; these check the rules a browser cannot see."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from sqlalchemy import select
from yarl import URL

from ars_engine.api.app import create_app
from ars_engine.config import Settings
from ars_engine.console import accounts
from ars_engine.media.library import MediaLibrary
from ars_engine.service.catalog import ScenarioCatalog
from ars_engine.service.runtime import Services
from ars_engine.store import repo
from ars_engine.store.db import Store
from ars_engine.store.models import ConsoleSession, Tenant
from tests.conftest import SCENARIOS

PASSWORD = "horse-battery-42"
CODE = "735914"
_HIDDEN = re.compile(r'name="csrf_token" value="([^"]*)"')


class Browser:
    """A cookie-keeping HTTP client of one server (several per test, one server)."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        # IP-address hosts keep cookies only in an "unsafe" jar (aiohttp's default refuses them)
        self.session = ClientSession(cookie_jar=CookieJar(unsafe=True))

    def make_url(self, path: str) -> URL:
        return self.server.make_url(path)

    async def get(self, path: str, **kwargs: Any) -> ClientResponse:
        return await self.session.get(self.make_url(path), **kwargs)

    async def post(self, path: str, **kwargs: Any) -> ClientResponse:
        return await self.session.post(self.make_url(path), **kwargs)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()


@dataclass
class Console:
    services: Services
    server: TestServer

    def client(self) -> Browser:
        return Browser(self.server)


def csrf_of(html: str) -> str:
    match = _HIDDEN.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


async def sign_in(client: Browser, username: str, password: str = PASSWORD,
                  next_path: str = "") -> ClientResponse:
    page = await client.get("/console/login" + (f"?next={next_path}" if next_path else ""))
    html = await page.text()
    form = {"username": username, "password": password, "csrf_token": csrf_of(html)}
    if next_path:
        form["next"] = next_path
    return await client.post("/console/login", data=form, allow_redirects=False)


async def add_call(store: Store, tenant: str, *, state: str = "finished",
                   outcome: str | None = "success", created: datetime | None = None,
                   destination: str = "+821023456789", reference: str | None = None,
                   answered: bool = True) -> str:
    from ars_engine.store.models import Call

    now = created or datetime.now(UTC)
    call = Call(id=repo.new_id("call"), tenant_id=tenant, scenario="type_c",
                scenario_sha256="0" * 64, destination=destination,
                params={"code": "*" * 6}, state=state, outcome=outcome, not_before=now,
                created_at=now, updated_at=now, reference=reference,
                answered_at=now + timedelta(seconds=3) if answered else None,
                ended_at=now + timedelta(seconds=30) if state in ("finished", "failed") else None,
                timeline=[{"t_ms": 100, "kind": "prompt_started", "step": "ask",
                           "text": "인증번호를 입력하세요"},
                          {"t_ms": 2500, "kind": "key", "step": "ask", "key": "*"}])
    path = {"queued": [], "ringing": ["dialing", "ringing"],
            "finished": ["dialing", "answered", "finished"],
            "failed": ["dialing", "answered", "failed"] if answered else ["dialing", "failed"]}
    async with store.session() as s, s.begin():
        repo.add_call(s, call, now)
        for step in path[state]:
            repo.transition(s, call, step, now, node="test-node")
    return call.id


@pytest.fixture
async def console(store: Store, tmp_path: Path, tone_media: MediaLibrary
                  ) -> AsyncIterator[Console]:
    settings = Settings.from_env({"ARS_DATA_DIR": str(tmp_path),
                                  "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    services = Services.build(settings, store, ScenarioCatalog.load(SCENARIOS, tone_media))
    now = datetime.now(UTC)
    async with store.session() as s, s.begin():
        for tenant_id in ("acme", "rival"):
            s.add(Tenant(id=tenant_id, name=tenant_id.title(), created_at=now, disabled=False,
                         allowed_scenarios=["type_a", "type_c"] if tenant_id == "rival"
                         else None, max_concurrent=10, per_number_limit=5,
                         per_number_window_s=3600, destination_rules={}))
        await s.flush()
        await accounts.create_operator(s, "root", PASSWORD, "admin", None, now=now)
        await accounts.create_operator(s, "acme-ops", PASSWORD, "tenant", "acme", now=now)
        await accounts.create_operator(s, "rival-ops", PASSWORD, "tenant", "rival", now=now)
    server = TestServer(create_app(services))
    await server.start_server()
    try:
        yield Console(services, server)
    finally:
        await server.close()


# -- signing in --------------------------------------------------------------------------------

async def test_pages_need_a_session_and_send_you_to_sign_in(console: Console) -> None:
    async with console.client() as client:
        for path in ("/console/", "/console/calls", "/console/usage", "/console/scenarios",
                     "/console/usage.csv", "/console/live/events"):
            response = await client.get(path, allow_redirects=False)
            assert response.status == 302, path
            assert response.headers["Location"].startswith("/console/login?next=")
        page = await client.get("/console/login")
        html = await page.text()
        assert page.status == 200 and '<html lang="ko">' in html
        assert 'for="username"' in html and 'for="password"' in html
        assert "default-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"


async def test_sign_in_sets_a_strict_cookie_and_lands_where_asked(console: Console) -> None:
    async with console.client() as client:
        response = await sign_in(client, "root", next_path="/console/calls")
        assert response.status == 302
        assert response.headers["Location"] == "/console/calls"
        cookie = response.cookies["ars_session"]
        assert cookie["httponly"] and cookie["samesite"] == "Strict"
        assert cookie["path"] == "/console"
        page = await client.get("/console/calls")
        assert page.status == 200 and "root" in await page.text()
    # the database holds the token's hash only
    async with console.services.store.session() as s:
        stored = (await s.scalars(select(ConsoleSession.token_hash))).all()
    assert stored == [accounts.token_hash(cookie.value)]


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/console/",
                                    "/v1/calls", "/console/\\evil"])
async def test_next_never_leaves_the_console(console: Console, target: str) -> None:
    async with console.client() as client:
        response = await sign_in(client, "root", next_path=target)
        assert response.status == 302
        assert response.headers["Location"] == "/console/"


async def test_a_wrong_password_or_name_fails_the_same_way(console: Console) -> None:
    async with console.client() as client:
        wrong = await sign_in(client, "root", "not-the-password")
        unknown = await sign_in(client, "nobody", "not-the-password")
        for response in (wrong, unknown):
            assert response.status == 401
            assert "아이디 또는 비밀번호가 올바르지 않습니다" in await response.text()
        assert "ars_session" not in client.session.cookie_jar.filter_cookies(
            client.make_url("/console/"))


async def test_repeated_failures_are_throttled(console: Console) -> None:
    async with console.client() as client:
        for _ in range(5):
            assert (await sign_in(client, "root", "wrong-password-x")).status == 401
        response = await sign_in(client, "root")  # even the right password, for a while
        assert response.status == 429


async def test_login_without_its_csrf_cookie_is_refused(console: Console) -> None:
    async with console.client() as client:
        response = await client.post("/console/login", allow_redirects=False, data={
            "username": "root", "password": PASSWORD, "csrf_token": "forged"})
        assert response.status == 403


async def test_logout_ends_the_session_in_the_store(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        page = await client.get("/console/")
        token = csrf_of(await page.text())
        response = await client.post("/console/logout", data={"csrf_token": token},
                                     allow_redirects=False)
        assert response.status == 302
        assert (await client.get("/console/", allow_redirects=False)).status == 302
    async with console.services.store.session() as s:
        assert (await s.scalars(select(ConsoleSession))).all() == []


async def test_a_post_without_the_csrf_token_or_from_elsewhere_is_403(console: Console
                                                                     ) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        page = await client.get("/console/scenarios/type_a")
        token = csrf_of(await page.text())
        path = "/console/scenarios/type_a/validate"
        assert (await client.post(path, data={"yaml": "x"})).status == 403
        assert (await client.post(path, data={"yaml": "x", "csrf_token": "0" * 64})).status == 403
        other = await client.post(path, data={"yaml": "x", "csrf_token": token},
                                  headers={"Origin": "https://evil.example"})
        assert other.status == 403
        ok = await client.post(path, data={"yaml": "x", "csrf_token": token})
        assert ok.status == 422  # got through: the YAML itself is what is wrong


async def test_an_expired_session_is_refused(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        async with console.services.store.session() as s, s.begin():
            for row in (await s.scalars(select(ConsoleSession))).all():
                row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        assert (await client.get("/console/", allow_redirects=False)).status == 302


async def test_english_on_request_and_remembered(console: Console) -> None:
    async with console.client() as client:
        page = await client.get("/console/login?lang=en")
        html = await page.text()
        assert '<html lang="en">' in html and "Username" in html
        again = await client.get("/console/login")
        assert '<html lang="en">' in await again.text()


# -- roles and data ----------------------------------------------------------------------------

async def test_a_tenant_operator_sees_only_their_tenant(console: Console) -> None:
    store = console.services.store
    mine = await add_call(store, "acme", reference="acme-1")
    theirs = await add_call(store, "rival", reference="rival-1")
    async with console.client() as client:
        await sign_in(client, "acme-ops")
        html = await (await client.get("/console/calls")).text()
        assert mine in html and theirs not in html
        assert (await client.get(f"/console/calls/{theirs}")).status == 404
        assert (await client.get(f"/console/calls/{mine}")).status == 200
        # asking for another tenant changes nothing for a tenant operator
        html = await (await client.get("/console/calls?tenant=rival")).text()
        assert theirs not in html
        csv_text = await (await client.get("/console/usage.csv?tenant=rival")).text()
        assert theirs not in csv_text and mine in csv_text
    async with console.client() as client:
        await sign_in(client, "root")
        html = await (await client.get("/console/calls")).text()
        assert mine in html and theirs in html
        html = await (await client.get("/console/calls?tenant=rival")).text()
        assert theirs in html and mine not in html


async def test_history_search_and_filters(console: Console) -> None:
    store = console.services.store
    old = datetime(2026, 1, 5, 12, tzinfo=UTC)
    a = await add_call(store, "acme", reference="order-77", destination="+821011112222")
    b = await add_call(store, "acme", state="failed", outcome="busy", answered=False,
                       destination="+821033334444")
    c = await add_call(store, "acme", created=old)
    async with console.client() as client:
        await sign_in(client, "root")

        async def shown(query: str) -> set[str]:
            html = await (await client.get("/console/calls?" + query)).text()
            return {x for x in (a, b, c) if x in html}

        assert await shown("") == {a, b, c}
        assert await shown("q=order-77") == {a}
        assert await shown(f"q={b}") == {b}
        assert await shown("q=4444") == {b}
        assert await shown("state=failed") == {b}
        assert await shown("outcome=busy") == {b}
        assert await shown("from=2026-01-01&to=2026-01-31") == {c}
        bad = await client.get("/console/calls?from=yesterday")
        assert bad.status == 200 and "YYYY-MM-DD" in await bad.text()


async def test_history_pages_with_a_cursor(console: Console) -> None:
    store = console.services.store
    start = datetime(2026, 3, 1, tzinfo=UTC)
    ids = [await add_call(store, "acme", created=start + timedelta(minutes=i))
           for i in range(55)]
    async with console.client() as client:
        await sign_in(client, "root")
        seen: list[str] = []
        url = "/console/calls"
        while url:
            html = await (await client.get(url)).text()
            seen += re.findall(r'<tr data-call="([^"]+)">', html)
            more = re.search(r'href="(/console/calls\?[^"]+)" rel="next"', html)
            url = more.group(1).replace("&amp;", "&") if more else ""
        assert seen == list(reversed(ids))


async def test_the_call_page_masks_and_tells_the_story(console: Console) -> None:
    call_id = await add_call(console.services.store, "acme")
    async with console.client() as client:
        await sign_in(client, "root")
        html = await (await client.get(f"/console/calls/{call_id}")).text()
    assert "+82 10-****-6789" in html and "+821023456789" not in html
    assert "인증번호를 입력하세요" in html and "DTMF <strong>*</strong>" in html
    assert CODE not in html
    table = re.search(r'id="transitions">(.*?)</table>', html, re.S)
    assert table
    moves = re.findall(r"<tr><td>[^<]*</td><td>([^<]*)</td><td>([^<]*)</td>", table.group(1))
    assert moves == [("—", "대기"), ("대기", "발신 중"), ("발신 중", "통화 중"),
                     ("통화 중", "완료")]


async def test_the_live_stream_sends_the_table_and_changes(console: Console) -> None:
    store = console.services.store
    await add_call(store, "acme", state="queued", outcome=None, answered=False)
    async with console.client() as client:
        await sign_in(client, "root")
        response = await client.get("/console/live/events")
        assert response.headers["Content-Type"].startswith("text/event-stream")

        async def next_event() -> dict[str, Any]:
            lines: list[str] = []
            while True:
                line = (await response.content.readline()).decode().rstrip("\n")
                if not line and lines:
                    break
                lines.append(line)
            data = next(x for x in lines if x.startswith("data: "))[6:]
            return json.loads(data)

        first = await next_event()
        assert (first["active"], first["queued"]) == (0, 1)
        assert first["calls"][0]["to"] == "+82 10-****-6789"
        second_id = await add_call(store, "acme", state="ringing", outcome=None,
                                   answered=False)
        console.services.changes.notify()  # what this node's writes do
        second = await next_event()
        assert (second["active"], second["queued"]) == (1, 1)
        assert second_id in {c["id"] for c in second["calls"]}
        response.close()


# -- usage ---------------------------------------------------------------------------------------

async def test_usage_page_and_csv_match_the_database(console: Console) -> None:
    store = console.services.store
    day = datetime(2026, 10, 10, 9, tzinfo=UTC)
    made = [await add_call(store, "acme", created=day),
            await add_call(store, "acme", created=day, outcome="failed"),
            await add_call(store, "acme", created=day, state="failed", outcome="busy",
                           answered=False),
            await add_call(store, "rival", created=day, reference="=cmd|' /C calc'!A0")]
    await add_call(store, "acme", created=datetime(2026, 11, 1, tzinfo=UTC))  # next month
    async with console.client() as client:
        await sign_in(client, "root")
        html = await (await client.get("/console/usage?month=2026-10")).text()
        row = re.search(r'<tr data-tenant="acme">(.*?)</tr>', html, re.S)
        assert row, html
        cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
        assert cells[:4] == ["3", "2", "1", "2"]  # calls, answered, verified, billable
        assert "<svg" in html
        response = await client.get("/console/usage.csv?month=2026-10")
        raw = await response.read()
    assert response.headers["Content-Type"].startswith("text/csv")
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"))))
    assert sorted(r["call_id"] for r in rows) == sorted(made)
    injected = next(r for r in rows if r["tenant_id"] == "rival")
    assert not injected["reference"].startswith("=")
    assert all("+821023456789" not in value for r in rows for value in r.values())


async def test_a_bad_month_is_a_clear_400(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        response = await client.get("/console/usage?month=2026-13")
        assert response.status == 400
        assert "month" in (await response.text()).lower()


# -- scenarios -----------------------------------------------------------------------------------

async def test_scenarios_list_graph_and_role_filter(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        html = await (await client.get("/console/scenarios")).text()
        for name in ("type_a", "type_b", "type_e"):
            assert f'href="/console/scenarios/{name}"' in html
        page = await (await client.get("/console/scenarios/type_b")).text()
        assert '<svg' in page and 'role="img"' in page
        assert "scenario: type_b" in page  # the YAML itself, in the editor
    async with console.client() as client:
        await sign_in(client, "rival-ops")  # allowed: type_a, type_c
        html = await (await client.get("/console/scenarios")).text()
        assert "/console/scenarios/type_a" in html and "/console/scenarios/type_b" not in html
        assert (await client.get("/console/scenarios/type_b")).status == 404


async def test_validation_errors_are_shown_at_their_line(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        page = await client.get("/console/scenarios/type_a")
        html = await page.text()
        token = csrf_of(html)
        text = (SCENARIOS / "type_a.yaml").read_text(encoding="utf-8")
        broken = text.replace("next:", "nxet:", 1)
        line = next(i for i, x in enumerate(broken.splitlines(), 1) if "nxet:" in x)
        response = await client.post("/console/scenarios/type_a/validate",
                                      data={"yaml": broken, "csrf_token": token})
        html = await response.text()
        assert response.status == 422
        assert f'href="#L{line}"' in html
        assert f'<li id="L{line}" class="bad">' in html
        good = await client.post("/console/scenarios/type_a/validate",
                                 data={"yaml": text, "csrf_token": token})
        assert good.status == 200 and 'id="problems" class="ok"' in await good.text()


async def test_the_simulator_plays_what_the_callee_hears(console: Console) -> None:
    async with console.client() as client:
        await sign_in(client, "root")
        page = await client.get("/console/scenarios/type_c")
        token = csrf_of(await page.text())
        text = (SCENARIOS / "type_c.yaml").read_text(encoding="utf-8")
        response = await client.post("/console/scenarios/type_c/simulate", data={
            "yaml": text, "csrf_token": token, "param_code": CODE, "keys": CODE})
        html = await response.text()
        assert response.status == 200, html
        assert 'id="sim-outcome">success<' in html
        assert CODE not in html  # neither echoed in the form nor in the timeline
        audio = re.search(r'id="sim-audio" controls preload="auto" src="([^"]+)"', html)
        assert audio
        wav = await client.get(audio.group(1))
        body = await wav.read()
        assert wav.headers["Content-Type"] == "audio/wav" and body[:4] == b"RIFF"
        assert len(body) > 8000  # more than half a second of 8 kHz 16-bit audio


async def test_shutdown_ends_open_live_streams(console: Console) -> None:
    """An operator's open live page must not hold the engine's shutdown for the server's
    whole shutdown timeout (a minute): the stream ends when the app shuts down."""
    async with console.client() as client:
        await sign_in(client, "root")
        response = await client.get("/console/live/events")
        assert (await response.content.readline()).startswith(b"event: calls")
        closing = asyncio.create_task(console.server.close())
        async with asyncio.timeout(20):  # far below the 60 s the server would wait
            while await response.content.readline():
                pass  # the rest of the event, then the end of the stream
            await closing
        assert response.content.at_eof()


async def test_the_alerts_page_lists_firing_alerts_first(console: Console) -> None:
    from ars_engine.store.models import Alert

    now = datetime.now(UTC)
    async with console.services.store.session() as s, s.begin():
        for key, state, since in (("trunk_down:10.0.0.1:5060", "firing", now - timedelta(hours=2)),
                                  ("queue_age", "resolved", now)):
            s.add(Alert(key=key, rule=key.split(":")[0], state=state, message=f"[ARS] {key}",
                        value=None, since=since, updated_at=since, notified=state,
                        notify_attempts=1))
    async with console.client() as client:
        await sign_in(client, "acme-ops")
        html = await (await client.get("/console/alerts")).text()
    firing, resolved = html.index("[ARS] trunk_down"), html.index("[ARS] queue_age")
    assert firing < resolved  # the older firing alert above the newer resolved one
    assert "발생 중" in html and "해소됨" in html
