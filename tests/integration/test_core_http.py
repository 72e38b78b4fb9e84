"""Mid-call HTTP to the core (webhook steps, remote verify) against a real aiohttp server on
loopback.

The fake core listens on 127.0.0.1 with a free port and answers as each test tells it: JSON, an
HTTP error, a malformed body, or nothing at all (its handler then waits on an event the fixture
sets at teardown). Calls run on the simulated channel with the fast tone TTS.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import socket
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from ars_engine.media.library import MediaLibrary
from ars_engine.scenario.corehttp import AiohttpCoreClient, CoreAnswer
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.scenario.timeline import CallResult
from ars_engine.telephony.simulated import KeyScript, SimulatedChannel

pytestmark = pytest.mark.integration

CALL_TIMEOUT = 15  # seconds: a call that hangs fails the test


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[], Awaitable[web.StreamResponse]]


class FakeCore:
    """A loopback HTTP server that records each request and answers with ``respond``."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.received = asyncio.Event()
        self.release = asyncio.Event()  # a hanging handler waits for this
        self.respond: Responder = self.reply_json({"ok": True})
        self.url = ""
        self._runner: web.AppRunner | None = None

    # answers
    def reply_json(self, answer: Any, status: int = 200) -> Responder:
        async def respond() -> web.StreamResponse:
            return web.json_response(answer, status=status)
        return respond

    def reply_text(self, text: str, status: int = 200) -> Responder:
        async def respond() -> web.StreamResponse:
            return web.Response(text=text, status=status, content_type="application/json")
        return respond

    def redirect_to(self, location: str) -> Responder:
        async def respond() -> web.StreamResponse:
            raise web.HTTPTemporaryRedirect(location)  # 307: a client would repeat the POST body
        return respond

    def never_answer(self) -> Responder:
        async def respond() -> web.StreamResponse:
            await self.release.wait()
            return web.json_response({"result": "pass"})
        return respond

    # server
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(Received(request.path, dict(request.headers), await request.read()))
        self.received.set()
        return await self.respond()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def fake_core() -> AsyncIterator[FakeCore]:
    core = FakeCore()
    await core.start()
    try:
        yield core
    finally:
        await core.stop()


@pytest.fixture
async def client() -> AsyncIterator[AiohttpCoreClient]:
    core_client = AiohttpCoreClient(signing_secret=b"s")
    try:
        yield core_client
    finally:
        await core_client.close()


def closed_port_url() -> str:
    """A loopback URL nobody listens on (a port the OS just handed out and we released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


async def run(text: str, media: MediaLibrary, core: Any, params: dict[str, object],
              keys: list[str] | None = None, call_id: str = "http-1") -> CallResult:
    scenario = load_scenario_text(textwrap.dedent(text))
    channel = SimulatedChannel(KeyScript.parse(keys or []), call_id=call_id)
    async with asyncio.timeout(CALL_TIMEOUT):
        return await Interpreter(scenario, media, core=core).run(channel, params)


def events(result: CallResult, kind: str) -> list[dict[str, Any]]:
    return [e.detail for e in result.timeline if e.kind == kind]


# -- webhook ---------------------------------------------------------------------------------------
WEBHOOK = """
scenario: hook
params:
  callback_url: {type: text}
  customer: {type: text, default: 홍길동}
steps:
  init:
    set: {ticket: none}
    next: notify
  notify:
    webhook:
      url: "{callback_url}"
      event: consent_given
      data: {choice: "1", customer: "{customer}"}
      timeout: TIMEOUT
      save: {ticket: ticket_id}
    on: {ok: done, error: core_failed}
  done:
    finish: {outcome: success, result: {ticket: "{ticket}"}}
  core_failed:
    finish: {outcome: core_error, result: {ticket: "{ticket}"}}
"""


def webhook(timeout: float = 5) -> str:
    return WEBHOOK.replace("TIMEOUT", f"{timeout:g}")


async def test_webhook_posts_the_event_and_saves_a_field_of_the_answer(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    fake_core.respond = fake_core.reply_json({"ok": True, "ticket_id": "T0042", "extra": 1})
    result = await run(webhook(), tone_media, client,
                       {"callback_url": f"{fake_core.url}/ars/events"}, call_id="call-7")
    assert result.outcome == "success", result.describe()
    assert result.result == {"ticket": "T0042"}
    [request] = fake_core.requests
    assert request.path == "/ars/events"
    assert request.headers["Content-Type"].startswith("application/json")
    assert request.json() == {"event": "consent_given", "call_id": "call-7", "scenario": "hook",
                              "step": "notify", "data": {"choice": "1", "customer": "홍길동"}}
    assert events(result, "webhook") == [{"event": "consent_given", "ok": True, "status": 200}]


async def test_webhook_request_is_signed_with_hmac_of_timestamp_and_body(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    result = await run(webhook(), tone_media, client, {"callback_url": fake_core.url + "/h"})
    assert result.outcome == "success", result.describe()
    [request] = fake_core.requests
    match = re.fullmatch(r"t=(\d+),v1=([0-9a-f]{64})", request.headers["X-ARS-Signature"])
    assert match, request.headers["X-ARS-Signature"]
    t, mac = match.groups()
    expected = hmac.new(b"s", f"{t}.".encode() + request.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    assert abs(int(t) - time.time()) < 300
    # The same MAC does not verify another body (the signature covers the exact bytes).
    other = hmac.new(b"s", f"{t}.".encode() + request.body + b" ", hashlib.sha256).hexdigest()
    assert mac != other


async def test_webhook_without_signing_secret_sends_no_signature(
        tone_media: MediaLibrary, fake_core: FakeCore) -> None:
    unsigned = AiohttpCoreClient()
    try:
        result = await run(webhook(), tone_media, unsigned, {"callback_url": fake_core.url})
    finally:
        await unsigned.close()
    assert result.outcome == "success"
    assert "X-ARS-Signature" not in fake_core.requests[0].headers


async def test_webhook_answered_with_http_500_takes_the_error_transition(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    fake_core.respond = fake_core.reply_json({"ticket_id": "T9"}, status=500)
    result = await run(webhook(), tone_media, client, {"callback_url": fake_core.url})
    assert result.outcome == "core_error", result.describe()
    assert result.result == {"ticket": "none"}  # an error answer's fields are not saved
    assert result.error is None
    [detail] = events(result, "webhook")
    assert detail["ok"] is False and detail["status"] == 500
    assert "500" in detail["error"]


async def test_webhook_to_a_closed_port_takes_the_error_transition(
        tone_media: MediaLibrary, client: AiohttpCoreClient) -> None:
    result = await run(webhook(), tone_media, client, {"callback_url": closed_port_url()})
    assert result.outcome == "core_error", result.describe()
    assert result.error is None
    [detail] = events(result, "webhook")
    assert detail["ok"] is False and detail["status"] == 0 and detail["error"]


async def test_webhook_with_no_answer_within_its_timeout_takes_the_error_transition(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    fake_core.respond = fake_core.never_answer()
    started = time.monotonic()
    result = await run(webhook(timeout=0.5), tone_media, client, {"callback_url": fake_core.url})
    elapsed = time.monotonic() - started
    assert fake_core.received.is_set(), "the request never reached the core"
    assert result.outcome == "core_error", result.describe()
    [detail] = events(result, "webhook")
    assert detail["ok"] is False and "0.5" in detail["error"]
    assert elapsed < 5, f"the 0.5 s timeout took {elapsed:.1f} s"


# -- remote verify ---------------------------------------------------------------------------------
REMOTE = """
scenario: remote_pin
params:
  verify_url: {type: text}
defaults:
  gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
steps:
  ask:
    gather:
      prompt: {text: "비밀번호 여섯 자리를 입력해 주세요"}
      digits: 6
      into: pin
      secret: true
    on: {ok: verify}
    next: no_input
  verify:
    check: {input: pin, remote: {url: "{verify_url}", timeout: 2}}
    on: {pass: good, fail: bad, error: sorry}
  good:
    finish: {outcome: success, result: {verified: true}}
  bad:
    finish: {outcome: failed, result: {verified: false}}
  sorry:
    finish: {outcome: verify_unavailable, result: {verified: false}}
  no_input:
    finish: {outcome: timeout}
"""
TYPED = "583920"


def assert_typed_digits_hidden(result: CallResult, log_text: str) -> None:
    for text in (result.to_json(), repr(result), result.describe(), str(result.error), log_text):
        assert TYPED not in text
        assert " ".join(TYPED) not in text


@pytest.mark.parametrize(("verdict", "outcome"), [("pass", "success"), ("fail", "failed")])
async def test_remote_verify_sends_the_typed_digits_and_follows_the_verdict(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient,
        caplog: pytest.LogCaptureFixture, verdict: str, outcome: str) -> None:
    caplog.set_level(logging.DEBUG)
    fake_core.respond = fake_core.reply_json({"result": verdict})
    result = await run(REMOTE, tone_media, client, {"verify_url": fake_core.url + "/verify"},
                       [TYPED], call_id="rv-1")
    assert result.outcome == outcome, result.describe()
    [request] = fake_core.requests
    assert request.path == "/verify"
    assert request.json() == {"call_id": "rv-1", "scenario": "remote_pin", "step": "verify",
                              "input": TYPED}
    assert "X-ARS-Signature" in request.headers
    [check] = events(result, "check")
    assert check == {"mode": "remote", "passed": verdict == "pass", "status": 200}
    assert [k["key"] for k in events(result, "key")] == ["*"] * 6
    assert_typed_digits_hidden(result, caplog.text)


MALFORMED = [
    ("not_json", lambda core: core.reply_text("pass")),
    ("empty_body", lambda core: core.reply_text("")),
    ("unknown_verdict", lambda core: core.reply_json({"result": "maybe"})),
    ("no_result_field", lambda core: core.reply_json({"ok": True})),
    ("list_not_object", lambda core: core.reply_json(["pass"])),
    ("verdict_not_text", lambda core: core.reply_json({"result": True})),
    ("http_500_saying_pass", lambda core: core.reply_json({"result": "pass"}, status=500)),
    ("http_404", lambda core: core.reply_text("{}", status=404)),
]


@pytest.mark.parametrize("make_answer", [m[1] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
async def test_remote_verify_with_a_bad_answer_is_an_error(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient,
        caplog: pytest.LogCaptureFixture,
        make_answer: Callable[[FakeCore], Responder]) -> None:
    caplog.set_level(logging.DEBUG)
    fake_core.respond = make_answer(fake_core)
    result = await run(REMOTE, tone_media, client, {"verify_url": fake_core.url}, [TYPED])
    assert len(fake_core.requests) == 1
    assert result.outcome == "verify_unavailable", result.describe()
    assert result.error is None
    [check] = events(result, "check")
    assert check["passed"] is False and check["error"]
    assert_typed_digits_hidden(result, caplog.text)


async def test_remote_verify_with_no_answer_in_time_is_an_error(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    fake_core.respond = fake_core.never_answer()
    text = REMOTE.replace("timeout: 2}", "timeout: 0.5}")
    result = await run(text, tone_media, client, {"verify_url": fake_core.url}, [TYPED])
    assert fake_core.received.is_set()
    assert result.outcome == "verify_unavailable", result.describe()


class LoopbackOnlyCore:
    """Records every request the engine asks for; forwards only loopback ones (so a bug cannot
    reach the network from a test)."""

    def __init__(self, inner: AiohttpCoreClient) -> None:
        self.inner = inner
        self.asked: list[str] = []

    async def post_json(self, url: str, body: dict[str, Any], *, timeout: float) -> CoreAnswer:
        self.asked.append(url)
        if urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
            return CoreAnswer(0, None, "the test refused a non-loopback request")
        return await self.inner.post_json(url, body, timeout=timeout)


@pytest.mark.parametrize("url", ["http://example.invalid/x", "http://10.0.0.1/verify",
                                 "http://127.0.0.1.example.invalid/x", "ftp://127.0.0.1/x",
                                 "127.0.0.1/verify"])
async def test_remote_verify_refuses_plain_http_off_loopback_without_a_request(
        tone_media: MediaLibrary, client: AiohttpCoreClient, url: str) -> None:
    spy = LoopbackOnlyCore(client)
    result = await run(REMOTE, tone_media, spy, {"verify_url": url}, [TYPED])
    assert spy.asked == [], "the engine asked for a request it must refuse"
    assert result.outcome == "verify_unavailable", result.describe()
    [check] = events(result, "check")
    assert check["passed"] is False
    assert "https" in check["error"] or "not an http" in check["error"]
    assert TYPED not in result.to_json()


async def test_remote_verify_to_loopback_http_is_allowed(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    # The counterpart of the refusal above: the spy itself forwards loopback requests.
    fake_core.respond = fake_core.reply_json({"result": "pass"})
    spy = LoopbackOnlyCore(client)
    result = await run(REMOTE, tone_media, spy, {"verify_url": fake_core.url}, [TYPED])
    assert spy.asked == [fake_core.url]
    assert result.outcome == "success"


async def test_remote_verify_does_not_follow_a_redirect_with_the_typed_digits(
        tone_media: MediaLibrary, fake_core: FakeCore, client: AiohttpCoreClient) -> None:
    """PRODUCT BUG (fails today): AiohttpCoreClient.post_json lets aiohttp follow redirects, so a
    verify URL that passed remote_url_problem (https://…, or loopback) can answer 307 and have
    the engine re-POST the entered digits, signature header included, to any URL, plain http://
    off-loopback too. Its own ``status >= 300`` branch shows 3xx was meant to be an error.

    Here both ends are loopback servers: the redirect target must receive nothing and the check
    must end in ``error``."""
    elsewhere = FakeCore()
    await elsewhere.start()
    try:
        elsewhere.respond = elsewhere.reply_json({"result": "pass"})
        fake_core.respond = fake_core.redirect_to(f"{elsewhere.url}/collect")
        result = await run(REMOTE, tone_media, client, {"verify_url": fake_core.url + "/verify"},
                           [TYPED])
        forwarded = [r.json().get("input") for r in elsewhere.requests]
    finally:
        await elsewhere.stop()
    assert len(fake_core.requests) == 1
    assert forwarded == [], "the typed digits were re-posted to the redirect target"
    assert result.outcome == "verify_unavailable", result.describe()
