"""Tests of the browser-test tools themselves (conftest.py), on small static pages served by a
local aiohttp server: the axe-core check must find what is wrong and nothing on a good page,
the Tab walk must give the expected names in order and catch an invisible focus and a keyboard
trap, screenshots must land under test-artifacts/, and nothing may touch the network."""

from __future__ import annotations

import asyncio
import base64
import io
import struct
import subprocess
import sys
import textwrap
import threading
import wave
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiohttp import web

from tests.browser.conftest import (
    ROOT,
    WCAG_TAGS,
    AccessibilityError,
    KeyboardAccessError,
    artifact_dir,
    check_accessibility,
    inject_axe,
    shoot,
    tab_order,
    tab_stops,
)

pytestmark = pytest.mark.integration  # a real Chromium and a loopback server

BAD = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Calls (bad)</title>
<style>body{font:16px sans-serif;color:#1b1b1b;background:#fff} .faint{color:#c8c8c8}</style>
</head><body><main>
<h1>Calls</h1>
<p id="updated" class="faint">Last updated two minutes ago</p>
<form action="#"><input type="text" name="q"> <button type="submit">Search</button></form>
</main></body></html>"""

GOOD = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>로그인 / Sign in</title>
<style>
body{font:16px sans-serif;color:#1b1b1b;background:#fff;margin:2rem}
label{display:block;margin-top:1rem}
:focus-visible{outline:3px solid #0b57d0;outline-offset:2px}
.skip{position:absolute;left:-10000px} .skip:focus{left:8px;top:8px}
</style></head><body>
<a class="skip" href="#main">본문으로 건너뛰기 / Skip to content</a>
<header><nav aria-label="언어 / Language"><a href="?lang=en" lang="en">English</a></nav></header>
<main id="main"><h1>로그인 / Sign in</h1>
<img alt="ARS 콘솔 / ARS console" width="48" height="48" src="{LOGO}">
<form method="post" action="#">
<label for="u">아이디 / Username</label>
<input id="u" name="username" autocomplete="username" autofocus>
<label for="p">비밀번호 / Password</label>
<input id="p" name="password" type="password" autocomplete="current-password">
<p><button type="submit">로그인 / Sign in</button></p>
</form></main></body></html>""".replace(
    "{LOGO}", "data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='48' "
    "height='48'%3E%3Crect width='48' height='48' fill='%230b57d0'/%3E%3C/svg%3E")
GOOD_TAB_ORDER = ["본문으로 건너뛰기 / Skip to content", "English", "아이디 / Username",
                  "비밀번호 / Password", "로그인 / Sign in"]

FOCUS = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Focus</title>
<style>.quiet{outline:none} .shadow{outline:none} .shadow:focus{box-shadow:0 0 0 3px #0b57d0}
</style></head><body><main>
<button id="plain">Plain</button>
<button id="quiet" class="quiet">No ring</button>
<button id="shadow" class="shadow">Shadow</button>
<input id="trap" aria-label="Trap" onkeydown="if (event.key === 'Tab') event.preventDefault()">
<button id="after">After the trap</button>
</main></body></html>"""


def _silence_wav() -> str:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\0\0" * 4000)
    return base64.b64encode(out.getvalue()).decode()


PLAYER = f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>녹음 / Recording</title></head>
<body><main>
<button>이전 / Before</button>
<audio controls aria-label="녹음 / Recording" src="data:audio/wav;base64,{_silence_wav()}"></audio>
<button>다음 / After</button>
</main></body></html>"""

# A CSP with no script source at all (inline styles allowed, so the page looks the same):
# axe, evaluated through the DevTools protocol, must still run.
CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"


class StaticSite:
    """An aiohttp server on 127.0.0.1 in its own thread and event loop (the tests are sync:
    Playwright's sync API runs its own loop). Records each request's Accept-Language."""

    PAGES: ClassVar[dict[str, tuple[str, dict[str, str]]]] = {
        "/bad": (BAD, {}), "/good": (GOOD, {}), "/focus": (FOCUS, {}),
        "/player": (PLAYER, {}), "/csp": (BAD, {"Content-Security-Policy": CSP})}

    def __init__(self) -> None:
        self.languages: dict[str, str] = {}
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._runner: web.AppRunner | None = None

    async def _page(self, request: web.Request) -> web.Response:
        body, headers = self.PAGES[request.path]
        self.languages[request.path] = request.headers.get("Accept-Language", "")
        return web.Response(text=body, content_type="text/html", headers=headers)

    async def _start(self) -> None:
        app = web.Application()
        for path in self.PAGES:
            app.router.add_get(path, self._page)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> StaticSite:
        self._thread.start()
        assert self._ready.wait(10), "the static site did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    with StaticSite() as running:
        yield running


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _requests_during(page: Any, action: Any) -> list[str]:
    seen: list[str] = []

    def record(request: Any) -> None:
        seen.append(request.url)

    page.on("request", record)
    try:
        action()
    finally:
        page.remove_listener("request", record)
    return seen


def test_axe_runs_the_wcag_a_and_aa_rules_the_console_needs(page: Any) -> None:
    page.set_content(GOOD)
    inject_axe(page)
    rules = set(page.evaluate("tags => axe.getRules(tags).map(r => r.ruleId)", list(WCAG_TAGS)))
    needed = {"label", "color-contrast", "image-alt", "button-name", "link-name",
              "html-has-lang", "html-lang-valid", "document-title", "select-name",
              "input-button-name", "frame-title", "aria-allowed-attr", "aria-required-attr",
              "aria-valid-attr", "aria-valid-attr-value", "aria-roles", "aria-hidden-focus",
              "aria-input-field-name", "aria-toggle-field-name", "list", "listitem",
              "definition-list", "meta-viewport", "autocomplete-valid", "target-size"}
    assert needed <= rules, sorted(needed - rules)


def test_bad_page_reports_the_unlabeled_input_and_the_low_contrast_text(
        page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/bad")
    shot = shoot(page, "bad")
    assert shot == ROOT / "test-artifacts" / "screenshots" / (
        "test_bad_page_reports_the_unlabeled_input_and_the_low_contrast_text") / "bad.png"
    assert _png_size(shot)[0] == 1280

    with pytest.raises(AccessibilityError) as caught:
        check_accessibility(page)

    error = caught.value
    assert error.rule_ids == {"label", "color-contrast"}  # the page's two faults, nothing else
    by_id = {v["id"]: v for v in error.violations}
    assert [n["target"] for n in by_id["label"]["nodes"]] == [["input"]]
    assert [n["target"] for n in by_id["color-contrast"]["nodes"]] == [["#updated"]]
    message = str(error)
    assert "2 accessibility violation(s)" in message
    assert "label [critical] Form elements must have labels" in message
    assert "color-contrast [serious]" in message
    assert "    - input\n" in message and "    - #updated\n" in message
    assert "insufficient color contrast of 1.6" in message  # #c8c8c8 on white: 1.67:1
    assert "foreground color: #c8c8c8" in message


def test_ignoring_a_rule_needs_a_reason_and_then_only_that_rule_is_off(
        page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/bad")
    with pytest.raises(ValueError, match="needs a reason"):
        check_accessibility(page, ignore={"color-contrast": " "})
    with pytest.raises(AccessibilityError) as caught:
        check_accessibility(page, ignore={"color-contrast": "tested elsewhere"})
    assert caught.value.rule_ids == {"label"}


def test_a_context_limits_the_check_to_part_of_the_page(page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/bad")
    check_accessibility(page, context="h1")  # the heading alone is fine
    with pytest.raises(AccessibilityError) as caught:
        check_accessibility(page, context={"include": [["form"]]})
    assert caught.value.rule_ids == {"label"}


def test_good_page_has_no_violations_and_the_expected_tab_order(
        page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/good")
    assert _png_size(shoot(page, "good"))[0] == 1280

    results = check_accessibility(page)

    assert results["violations"] == []
    assert results["axeVersion"].startswith("4.")
    # the username field has autofocus: the walk still starts at the top of the page
    assert tab_order(page) == GOOD_TAB_ORDER
    walk = tab_stops(page)  # the walk leaves the page as it found it: it can run again
    assert walk.names == GOOD_TAB_ORDER
    assert [s.role for s in walk.stops] == ["link", "link", "textbox", "textbox", "button"]
    assert all("outline-style: none -> solid" in s.focus_change for s in walk.stops)
    assert walk.unreachable == ()
    assert page.evaluate("document.querySelector('[data-ars-tab-start]')") is None


def test_axe_and_the_tab_walk_use_no_network(page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/good")
    requests = _requests_during(page, lambda: (check_accessibility(page), tab_order(page)))
    assert requests == []


def test_axe_runs_under_a_strict_content_security_policy(page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/csp")
    with pytest.raises(AccessibilityError) as caught:
        check_accessibility(page)
    assert caught.value.rule_ids == {"label", "color-contrast"}


def test_tab_walk_finds_the_missing_focus_style_and_the_keyboard_trap(
        page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/focus")
    walk = tab_stops(page)
    assert walk.names == ["Plain", "No ring", "Shadow", "Trap"]
    visible = {s.name: s.focus_visible for s in walk.stops}
    assert visible == {"Plain": True, "No ring": False, "Shadow": True, "Trap": True}
    shadow = next(s for s in walk.stops if s.name == "Shadow")
    assert any(c.startswith("box-shadow: none -> ") for c in shadow.focus_change)
    assert walk.unreachable == ('button#after',)

    with pytest.raises(KeyboardAccessError) as caught:
        tab_order(page)
    message = str(caught.value)
    assert "no visible focus change: button#quiet" in message
    assert "never reached by Tab: button#after" in message
    assert tab_order(page, require_focus_visible=False, require_all_reachable=False) == [
        "Plain", "No ring", "Shadow", "Trap"]


def test_a_native_audio_player_is_one_tab_stop(page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/player")
    assert tab_order(page) == ["이전 / Before", "녹음 / Recording", "다음 / After"]


@pytest.mark.parametrize("locale", ["en-US"])
def test_the_locale_parameter_reaches_the_page_and_the_server(
        page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/good")
    assert page.evaluate("navigator.language") == "en-US"
    assert site.languages["/good"].startswith("en-US")


def test_the_default_locale_is_korean(page: Any, site: StaticSite) -> None:
    page.goto(f"{site.url}/good")
    assert page.evaluate("navigator.language") == "ko-KR"
    assert site.languages["/good"].startswith("ko-KR")


INNER = '''
def test_fails_on_purpose(page):
    page.set_content("<html lang=en><title>x</title><h1>about to fail</h1></html>")
    assert page.title() == "not this"


def test_reaches_off_loopback(page):
    with page.expect_event("requestfailed",
                           lambda r: r.url == "https://cdn.example/a.png"):  # refused
        page.set_content('<html lang=en><title>x</title>'
                         '<img alt=x src="https://cdn.example/a.png">')
'''


AFTER = """
import asyncio


async def test_an_asyncio_test_after_a_browser_module():
    done = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(done.set_result, "ran on the loop")
    assert await done == "ran on the loop"
"""


def test_a_failing_test_leaves_a_screenshot_and_an_off_loopback_request_fails(
        tmp_path: Path) -> None:
    """The fixtures in a pytest run of their own (test files outside tests/ loading this
    conftest as a plugin): a failed test gets failure.png/.html, a page that requests a
    remote URL fails its test naming it (the request is refused, never sent), and an asyncio
    test in the next module still runs (the browser is stopped with its module)."""
    (tmp_path / "test_inner_browser.py").write_text(textwrap.dedent(INNER), encoding="utf-8")
    (tmp_path / "test_inner_then_async.py").write_text(AFTER, encoding="utf-8")
    names = ["test_fails_on_purpose", "test_reaches_off_loopback"]
    for name in names:
        (artifact_dir(name) / "failure.png").unlink(missing_ok=True)
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.browser.conftest", "-p",
         "no:cacheprovider", "-o", "asyncio_mode=auto", "-o",
         "asyncio_default_fixture_loop_scope=function", f"--junit-xml={report}", "--rootdir",
         str(tmp_path), str(tmp_path / "test_inner_browser.py"),
         str(tmp_path / "test_inner_then_async.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    cases = {c.get("name"): c for c in ET.parse(report).getroot().iter("testcase")}
    failure = cases["test_fails_on_purpose"].find("failure")
    assert failure is not None and "not this" in (failure.get("message") or "")
    folder = artifact_dir("test_fails_on_purpose")
    assert _png_size(folder / "failure.png")[0] == 1280
    assert "about to fail" in (folder / "failure.html").read_text(encoding="utf-8")
    error = cases["test_reaches_off_loopback"].find("error")  # at teardown
    assert error is not None, done.stdout
    assert "request off loopback (blocked): GET https://cdn.example/a.png" in (
        error.get("message") or "") + (error.text or "")
    after = cases["test_an_asyncio_test_after_a_browser_module"]
    assert list(after) == [], ET.tostring(after, encoding="unicode")  # passed


def test_korean_text_renders_with_a_real_font(page: Any) -> None:
    """Screenshots of a Korean console are only evidence if Hangul is drawn, not as the
    same empty box for every syllable (Chromium's last resort when no Korean font is
    installed). Debian: fonts-nanum (or fonts-noto-cjk)."""
    page.set_content('<html lang="ko"><title>글꼴</title><canvas width="48" height="48">')
    drawn = page.evaluate("""() => {
      const c = document.querySelector('canvas'), g = c.getContext('2d');
      return ['가', '나', '한'].map(ch => {
        g.clearRect(0, 0, 48, 48); g.font = '36px sans-serif'; g.fillText(ch, 4, 40);
        return c.toDataURL(); });
    }""")
    assert len(set(drawn)) == 3, (
        "Hangul renders as identical boxes: no Korean font; install Debian's fonts-nanum")
