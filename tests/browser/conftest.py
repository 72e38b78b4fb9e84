"""Browser-test infrastructure for the operator console (issue 7).

Playwright's sync API drives Debian's headless Chromium (``/usr/bin/chromium``; nothing is
downloaded; docs/dependencies.md has the measurement against Selenium). What a test gets:

* ``browser`` (module): the running Chromium (per module, not per session: see there);
* ``page`` (function): a page in a fresh browser context (own cookies and storage) with the
  ``locale`` fixture's locale (``ko-KR``; override with
  ``@pytest.mark.parametrize("locale", ["en-US"])``); ``open_page(locale=...)`` opens more,
  e.g. an admin and a tenant operator side by side. Every context refuses requests that leave
  loopback (the console must work offline: no CDN) and the test fails naming them; an uncaught
  JavaScript error on the page fails the test too. A failed test leaves ``failure.png`` and
  ``failure.html`` of each of its pages next to its screenshots;
* ``shoot(page, name)``: a full-page PNG at
  ``test-artifacts/screenshots/<test-name>/<name>.png`` (the folder is emptied when the test
  starts);
* ``check_accessibility(page, context=None)``: axe-core (the ``axe.min.js`` that
  axe-playwright-python ships, injected from disk: no network) with the WCAG 2.0/2.1/2.2 A and
  AA rules; raises :class:`AccessibilityError` listing rule id, impact, target and summary;
* ``tab_order(page)``: presses Tab through the page and returns the accessible names
  (Chromium's accessibility tree) of the controls focused, in order; raises
  :class:`KeyboardAccessError` when a focused control shows no visible focus change or a
  visible control is never reached (``tab_stops`` gives the details without raising);
* ``console_server`` (module): a real ``ars-engine serve`` subprocess on SQLite in a temporary
  folder, with QA softphones (``ars-engine softphone`` subprocesses) in its ``[numbers]``, two
  tenants with API keys, an admin operator and a tenant operator; see :class:`ConsoleServer`.

Helpers are imported by the tests: ``from tests.browser.conftest import shoot, ...``. The tests
are plain (sync) functions, and a module using ``browser`` must hold no asyncio test or fixture:
Playwright's sync API and pytest-asyncio's loop cannot share the thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
CHROMIUM = "/usr/bin/chromium"
# Root in a sandbox with no network. Playwright adds --headless, --no-sandbox (chromiumSandbox
# is off by default) and a fresh profile itself; the rest are said explicitly so the intent is
# kept if its defaults change. Autoplay: the recording player may start without a gesture.
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]
DEFAULT_LOCALE = "ko-KR"
VIEWPORT = {"width": 1280, "height": 800}
ACTION_TIMEOUT_MS = 15_000
NAVIGATION_TIMEOUT_MS = 30_000
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
# axe-core rule tags: WCAG 2.0, 2.1 and 2.2 at levels A and AA. They hold label, color-contrast,
# image-alt, button-name, link-name, html-has-lang, html-lang-valid, document-title,
# duplicate-id-aria, the aria-* rules, select-name, frame-title, list/listitem, ...
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa")

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item, so fixtures know at teardown that a test failed."""
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(node: pytest.Item) -> bool:
    return any(r.failed for r in node.stash.get(_REPORTS, {}).values())


# -- artifacts --------------------------------------------------------------------------------

def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unnamed"


def artifact_dir(test_name: str | None = None) -> Path:
    """``test-artifacts/screenshots/<test-name>/`` of ``test_name`` (default: the running test,
    from ``PYTEST_CURRENT_TEST``; parameters become part of the name: ``test_x-en-US``)."""
    if test_name is None:
        current = os.environ.get("PYTEST_CURRENT_TEST", "")
        test_name = current.rsplit("::", 1)[-1].rsplit(" (", 1)[0] or "outside-a-test"
    return SCREENSHOTS / _safe(test_name)


def shoot(page: Any, name: str) -> Path:
    """Save a full-page PNG of ``page`` as ``test-artifacts/screenshots/<test>/<name>.png``."""
    path = artifact_dir() / f"{_safe(name)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path


@pytest.fixture(autouse=True)
def _fresh_artifacts(request: pytest.FixtureRequest) -> None:
    """Empty this test's screenshot folder, so what is there afterwards is from this run."""
    shutil.rmtree(artifact_dir(request.node.name), ignore_errors=True)


# -- the browser and pages --------------------------------------------------------------------

def chromium_skip_reason() -> str | None:
    if not os.access(CHROMIUM, os.X_OK):
        return (f"{CHROMIUM} is missing: install Debian's chromium (`make setup` / `make test` "
                "installs it); the browser tests never download a browser")
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, launched by Playwright once per test module (0.7 s).

    Not once per session: while Playwright's sync API is alive, its event loop stays marked
    as running in this thread (the loop waits in a greenlet between calls), and every
    pytest-asyncio test after it fails with "Runner.run() cannot be called from a running
    event loop". Stopping it when the module ends clears that before tests/integration and
    tests/unit run in the same session."""
    reason = chromium_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                      args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def locale() -> str:
    """The locale of :func:`page` (Accept-Language, ``navigator.language``, Intl formats)."""
    return DEFAULT_LOCALE


@dataclass
class _Guard:
    """What a context's pages did that a test should hear about."""

    blocked: list[str] = field(default_factory=list)  # requests that would have left loopback
    page_errors: list[str] = field(default_factory=list)  # uncaught JavaScript exceptions


@pytest.fixture
def open_page(browser: Any, locale: str, request: pytest.FixtureRequest
              ) -> Iterator[Callable[..., Any]]:
    """A factory: ``open_page(locale=None, **context_options)`` opens a page in a new browser
    context (fresh cookies and storage). Everything it opened is closed after the test."""
    opened: list[tuple[Any, Any, _Guard]] = []
    default_locale = locale

    def make(locale: str | None = None, **options: Any) -> Any:
        context = browser.new_context(locale=locale or default_locale, viewport=VIEWPORT,
                                      **options)
        context.set_default_timeout(ACTION_TIMEOUT_MS)
        context.set_default_navigation_timeout(NAVIGATION_TIMEOUT_MS)
        guard = _Guard()

        def route(r: Any) -> None:
            host = urlsplit(r.request.url).hostname or ""
            if host in LOOPBACK:
                r.continue_()
            else:
                guard.blocked.append(f"{r.request.method} {r.request.url}")
                r.abort("blockedbyclient")

        context.route("**/*", route)
        page = context.new_page()
        page.on("pageerror", lambda exc: guard.page_errors.append(f"{page.url}: {exc}"))
        opened.append((context, page, guard))
        return page

    yield make

    problems = []
    for index, (context, page, guard) in enumerate(opened):
        if _failed(request.node) and not page.is_closed():
            suffix = "" if len(opened) == 1 else f"-{index + 1}"
            folder = artifact_dir(request.node.name)
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):  # a crashed page cannot be shot
                page.screenshot(path=str(folder / f"failure{suffix}.png"), full_page=True)
                (folder / f"failure{suffix}.html").write_text(page.content(), encoding="utf-8")
        problems += [f"request off loopback (blocked): {b}" for b in guard.blocked]
        problems += [f"uncaught JavaScript error: {e}" for e in guard.page_errors]
        context.close()
    if problems:  # also after a failure: a refused request may be its cause
        pytest.fail("the page(s) misbehaved:\n  " + "\n  ".join(problems), pytrace=False)


@pytest.fixture
def page(open_page: Callable[..., Any]) -> Any:
    """A page in a fresh context with :func:`locale` (see :func:`open_page`)."""
    return open_page()


# -- accessibility: axe-core ------------------------------------------------------------------

class AccessibilityError(AssertionError):
    """axe-core found violations; ``violations`` is axe's list (id, impact, nodes, ...)."""

    def __init__(self, message: str, violations: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.violations = violations

    @property
    def rule_ids(self) -> set[str]:
        return {v["id"] for v in self.violations}


def axe_script() -> str:
    """axe-core's ``axe.min.js`` as shipped inside axe-playwright-python (read from disk)."""
    from axe_playwright_python.base import AXE_SCRIPT

    return AXE_SCRIPT


def inject_axe(page: Any) -> str:
    """Put axe-core into the page's current document (once); returns axe's version. Evaluated
    through the DevTools protocol, so a strict Content-Security-Policy does not stop it."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_script())
    return str(page.evaluate("() => axe.version"))


def _format_violations(violations: list[dict[str, Any]], url: str, version: str,
                       tags: Sequence[str], max_nodes: int = 8) -> str:
    lines = [f"axe-core {version} found {len(violations)} accessibility violation(s) on {url} "
             f"(tags {', '.join(tags)}):"]
    for v in violations:
        lines.append(f"  {v['id']} [{v.get('impact') or 'n/a'}] {v['help']} "
                     f"({len(v['nodes'])} element(s); {v['helpUrl']})")
        for node in v["nodes"][:max_nodes]:
            target = " >> ".join(t if isinstance(t, str) else " ".join(t)
                                 for t in node["target"])
            lines.append(f"    - {target}")
            summary = (node.get("failureSummary") or "").strip()
            lines += [f"        {s.strip()}" for s in summary.splitlines() if s.strip()]
        if len(v["nodes"]) > max_nodes:
            lines.append(f"    ... and {len(v['nodes']) - max_nodes} more")
    return "\n".join(lines)


def run_axe(page: Any, *, context: Any = None, tags: Sequence[str] = WCAG_TAGS,
            rules: Mapping[str, bool] | None = None) -> dict[str, Any]:
    """axe-core's results (violations and incomplete) for ``page``; nothing is asserted."""
    version = inject_axe(page)
    options: dict[str, Any] = {"runOnly": {"type": "tag", "values": list(tags)},
                               "resultTypes": ["violations", "incomplete"]}
    if rules:
        options["rules"] = {rule: {"enabled": on} for rule, on in rules.items()}
    results = page.evaluate("([context, options]) => axe.run(context ?? document, options)",
                            [context, options])
    results["axeVersion"] = version
    return dict(results)


def check_accessibility(page: Any, *, context: Any = None, tags: Sequence[str] = WCAG_TAGS,
                        ignore: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Run axe-core on ``page`` (or on ``context``: a selector, a list of them, or axe's
    ``{"include": [...], "exclude": [...]}``) with the WCAG 2 A/AA rules and raise
    :class:`AccessibilityError` listing every violation. ``ignore`` turns rules off, each with
    the reason (``{"color-contrast": "the chart's colours are checked elsewhere"}``). Returns
    axe's results (``incomplete`` holds what axe could not decide, e.g. text over an image)."""
    for rule, reason in (ignore or {}).items():
        if not reason.strip():
            raise ValueError(f"ignoring the axe rule {rule!r} needs a reason")
    results = run_axe(page, context=context, tags=tags,
                      rules={rule: False for rule in (ignore or {})})
    if results["violations"]:
        raise AccessibilityError(
            _format_violations(results["violations"], page.url, results["axeVersion"], tags),
            results["violations"])
    return results


# -- keyboard: the tab order and visible focus ------------------------------------------------

class KeyboardAccessError(AssertionError):
    """A control without a visible focus change, or one that Tab never reaches."""

    def __init__(self, message: str, walk: TabWalk) -> None:
        super().__init__(message)
        self.walk = walk


@dataclass(frozen=True)
class TabStop:
    """One control focused by Tab: its accessible name and role (Chromium's accessibility
    tree), a short CSS description, and how its computed style changed when focused."""

    name: str
    role: str
    element: str
    focus_change: tuple[str, ...]  # "outline-style: none -> auto", ...

    @property
    def focus_visible(self) -> bool:
        return bool(self.focus_change)


@dataclass(frozen=True)
class TabWalk:
    stops: tuple[TabStop, ...]
    unreachable: tuple[str, ...]  # visible, enabled controls that Tab never focused

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stops]


# Computed properties compared between a control unfocused and focused.
_FOCUS_PROPS = ["outline-style", "outline-width", "outline-color", "outline-offset",
                "box-shadow", "border-top-color", "border-bottom-color", "border-left-color",
                "border-right-color", "border-top-width", "border-bottom-width",
                "background-color", "color", "text-decoration-line"]
_FOCUSABLE = ("a[href], area[href], button, input:not([type=hidden]), select, textarea, "
              "summary, iframe, audio[controls], video[controls], [tabindex], "
              "[contenteditable]:not([contenteditable=false])")
_TAB_SETUP = """([selector, props]) => {
  const snap = el => { const cs = getComputedStyle(el);
                       return Object.fromEntries(props.map(p => [p, cs.getPropertyValue(p)])); };
  const describe = el => {
    let d = el.tagName.toLowerCase();
    if (el.id) d += '#' + el.id;
    for (const a of ['name', 'type', 'href', 'role', 'aria-label']) {
      const v = el.getAttribute(a); if (v !== null) d += `[${a}="${v.slice(0, 40)}"]`; }
    return d; };
  if (document.activeElement) document.activeElement.blur();
  const base = new Map();
  for (const el of document.querySelectorAll(selector)) base.set(el, snap(el));
  const start = document.createElement('span');
  start.tabIndex = -1; start.setAttribute('data-ars-tab-start', '');
  document.body.prepend(start); start.focus();
  window.__arsTab = {base, snap, describe, seen: new Map(), start};
}"""
_TAB_STEP = """() => {
  const t = window.__arsTab, el = document.activeElement;
  if (!el || el === document.body || el === document.documentElement || el === t.start)
    return null;
  if (!t.seen.has(el)) t.seen.set(el, t.seen.size + 1);
  return {id: t.seen.get(el), element: t.describe(el), before: t.base.get(el) || null,
          now: t.snap(el), media: el.matches('audio[controls], video[controls]')};
}"""
_TAB_FINISH = """() => {
  const t = window.__arsTab, missed = [];
  const visible = el => el.checkVisibility({visibilityProperty: true}) &&
                        el.getClientRects().length > 0;
  const radioReached = el => el.type === 'radio' && el.name && [...t.seen.keys()].some(
      o => o.type === 'radio' && o.name === el.name && o.form === el.form);
  for (const el of t.base.keys()) {
    if (t.seen.has(el) || el.tabIndex < 0 || el.disabled || el.closest('[inert]') ||
        !visible(el) || radioReached(el)) continue;
    missed.push(t.describe(el));
  }
  t.start.remove(); delete window.__arsTab;
  if (document.activeElement) document.activeElement.blur();
  return missed;
}"""


_TRAPPED = 12  # Tab presses that leave focus on one element: a keyboard trap


def _focus_change(before: dict[str, str] | None, now: dict[str, str]) -> tuple[str, ...]:
    if before is None:  # appeared after the walk began: compare against no decoration
        before = {p: "" for p in now}
    changes = []
    for prop in _FOCUS_PROPS:
        if before.get(prop) == now.get(prop):
            continue
        if prop.startswith("outline") and (now.get("outline-style") == "none" or
                                           now.get("outline-width") in ("0px", "")):
            continue  # an outline that is not drawn
        if prop == "box-shadow" and now.get(prop) == "none":
            continue
        changes.append(f"{prop}: {before.get(prop) or '-'} -> {now.get(prop)}")
    return tuple(changes)


def _accessible(cdp: Any) -> tuple[str, str]:
    """Name and role of the focused element in Chromium's accessibility tree."""
    found = cdp.send("Runtime.evaluate", {"expression": "document.activeElement"})
    object_id = found["result"].get("objectId")
    if object_id is None:
        return "", ""
    try:
        tree = cdp.send("Accessibility.getPartialAXTree",
                        {"objectId": object_id, "fetchRelatives": False})
    finally:
        cdp.send("Runtime.releaseObject", {"objectId": object_id})
    node = tree["nodes"][0] if tree.get("nodes") else {}
    return (str(node.get("name", {}).get("value", "")).strip(),
            str(node.get("role", {}).get("value", "")))


def tab_stops(page: Any, *, limit: int = 200) -> TabWalk:
    """Press Tab from the top of the page until focus leaves the document, comes back to the
    first control or stays put (a keyboard trap), recording each control focused (a native
    audio/video player, whose inner buttons take several presses, is one stop). Nothing is
    asserted."""
    page.evaluate(_TAB_SETUP, [_FOCUSABLE, _FOCUS_PROPS])
    cdp = page.context.new_cdp_session(page)
    stops: list[TabStop] = []
    first = last = None
    same = 0
    try:
        for _ in range(limit):
            page.keyboard.press("Tab")
            info = page.evaluate(_TAB_STEP)
            if info is None or info["id"] == first:
                break
            if info["id"] == last:
                same += 1
                if same >= _TRAPPED:
                    break  # a keyboard trap: what follows is reported unreachable
                continue  # still inside the same control (media player buttons)
            same = 0
            first = first or info["id"]
            last = info["id"]
            name, role = _accessible(cdp)
            change = _focus_change(info["before"], info["now"])
            if info["media"] and not change:  # the player's own buttons draw the focus ring
                change = ("native media controls: focus ring drawn inside the player",)
            stops.append(TabStop(name, role, info["element"], change))
    finally:
        cdp.detach()
    unreachable = page.evaluate(_TAB_FINISH)
    return TabWalk(tuple(stops), tuple(unreachable))


def tab_order(page: Any, *, require_focus_visible: bool = True,
              require_all_reachable: bool = True) -> list[str]:
    """The accessible names of the controls Tab focuses, in order. Raises
    :class:`KeyboardAccessError` when a focused control looks the same focused and unfocused
    (outline, box-shadow, border, background, colour, underline all unchanged) or when a
    visible, enabled control is never reached (one radio per group is enough)."""
    walk = tab_stops(page)
    problems = []
    if require_focus_visible:
        problems += [f"no visible focus change: {s.element} ({s.role} {s.name!r})"
                     for s in walk.stops if not s.focus_visible]
    if require_all_reachable:
        problems += [f"never reached by Tab: {e}" for e in walk.unreachable]
    if problems:
        raise KeyboardAccessError(
            f"keyboard access on {page.url}:\n  " + "\n  ".join(problems) +
            "\n tab order: " + " | ".join(walk.names), walk)
    return walk.names


# -- a real engine serving the console --------------------------------------------------------

ENGINE = [sys.executable, "-m", "ars_engine.cli"]
START_TIMEOUT = 120.0  # seconds; the first start may render the prompt cache with espeak-ng
STOP_TIMEOUT = 40.0
CLI_TIMEOUT = 120.0


@dataclass(frozen=True)
class PhoneSpec:
    """A QA softphone to start: ``ars-engine softphone`` with ``args``, rung through
    ``[numbers]`` when a call goes to ``number``."""

    number: str
    args: tuple[str, ...] = ()


# The default softphones (override the ``console_phones`` fixture in a test module for others).
CONSOLE_PHONES: dict[str, PhoneSpec] = {
    # answers, then types 123456 after the next prompt (type_c with code 123456 succeeds)
    "answer": PhoneSpec("+821055500001", ("--keys", "123456")),
    # answers and presses nothing: the call stays answered while the scenario re-prompts
    "silent": PhoneSpec("+821055500002"),
    # rings for a minute before answering: a call that stays "ringing" on the live page
    "slow": PhoneSpec("+821055500003", ("--rings", "60", "--ring-seconds", "1")),
    "busy": PhoneSpec("+821055500004", ("--mode", "busy")),
    # type_e: agrees (1) after the consent prompt; the call is recorded
    "consent": PhoneSpec("+821055500005", ("--keys", "1")),
}


@dataclass(frozen=True)
class Phone:
    name: str
    number: str  # E.164, what POST /v1/calls gets as "to"
    uri: str  # sip:qa@127.0.0.1:PORT, what [numbers] maps the number to


@dataclass(frozen=True)
class Operator:
    username: str
    password: str = field(repr=False)
    role: str  # "admin" or "tenant"
    tenant: str | None


@dataclass(frozen=True)
class Tenant:
    id: str
    api_key: str = field(repr=False)
    webhook_secret: str = field(repr=False)


class _Process:
    """A subprocess whose merged stdout/stderr is copied to a log file by a thread, which also
    hands each line to a queue (for waiting on a start-up line)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.name, self.log = name, log
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(argv, env=env, cwd=ROOT, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, encoding="utf-8", errors="replace")
        self._thread = threading.Thread(target=self._copy, name=f"log-{name}", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        assert self.process.stdout is not None
        with self.log.open("a", encoding="utf-8") as out:
            for line in self.process.stdout:
                out.write(line)
                out.flush()
                self.lines.put(line)
        self.lines.put(None)

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                line = ""
            if line is None:
                raise RuntimeError(f"{self.name} exited ({self.process.wait()}) before "
                                   f"{pattern!r}:\n{self.log.read_text(errors='replace')}")
            found = re.search(pattern, line or "")
            if found:
                return found
            if left <= 0:
                raise TimeoutError(f"{self.name}: no {pattern!r} within {timeout:.0f} s:\n"
                                   f"{self.log.read_text(errors='replace')}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._thread.join(5)
        return self.process.returncode


class HookReceiver:
    """Webhooks of the calls the tests place, received on a loopback HTTP server in a thread
    (the tests are synchronous); :meth:`wait` blocks on a condition until one matches."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with receiver._changed:
                    receiver.events.append(json.loads(body))
                    receiver._changed.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def wait(self, call_id: str, until: Callable[[dict[str, Any]], bool],
             timeout: float) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e["call"] for e in self.events
                         if e["call"]["id"] == call_id and until(e["call"])), None)

        with self._changed:
            if not self._changed.wait_for(lambda: found() is not None, timeout):
                seen = [e["type"] for e in self.events if e["call"]["id"] == call_id]
                raise AssertionError(f"no matching webhook for {call_id} within {timeout} s "
                                     f"(events: {seen})")
            call = found()
        assert call is not None
        return dict(call)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class ConsoleServer:
    """A running ``ars-engine serve`` with its tenants, operators and QA softphones."""

    url: str  # http://127.0.0.1:PORT, the API and the console
    tenant: Tenant  # the tenant the tenant operator belongs to
    other_tenant: Tenant  # a second tenant, whose calls that operator must never see
    admin: Operator
    operator: Operator  # role "tenant", tenant ``tenant.id``
    phones: dict[str, Phone]
    config: Path
    data_dir: Path
    log: Path
    hooks: HookReceiver
    env: dict[str, str] = field(repr=False)

    @property
    def console_url(self) -> str:
        return f"{self.url}/console/"

    @property
    def api_key(self) -> str:
        return self.tenant.api_key

    @property
    def tenant_id(self) -> str:
        return self.tenant.id

    def console(self, path: str = "", lang: str | None = None) -> str:
        """``/console/<path>``, with ``?lang=`` when given."""
        url = f"{self.url}/console/{path.lstrip('/')}"
        return f"{url}{'&' if '?' in url else '?'}lang={lang}" if lang else url

    def cli(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """``ars-engine ARGS…`` against this engine's config; its stdout (fails on error)."""
        return _cli(self.env | dict(env or {}), *args)

    def api(self, method: str, path: str, body: Any = None, *, tenant: Tenant | None = None,
            headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """An API request as ``tenant`` (default :attr:`tenant`): (status, decoded JSON)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.url}{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {(tenant or self.tenant).api_key}",
                     "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        return status, json.loads(raw) if raw else None

    def place_call(self, scenario: str, phone: str, params: Mapping[str, Any] | None = None,
                   *, tenant: Tenant | None = None, **fields: Any) -> dict[str, Any]:
        """``POST /v1/calls`` to the softphone named ``phone``; the created call."""
        body = {"scenario": scenario, "to": self.phones[phone].number,
                "params": dict(params or {}), "callback_url": self.hooks.url, **fields}
        status, created = self.api("POST", "/v1/calls", body, tenant=tenant)
        assert status == 201, (status, created)
        return dict(created)

    def wait_call(self, call_id: str, until: Callable[[dict[str, Any]], bool], *,
                  timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a webhook of ``call_id`` whose call satisfies ``until`` (calls placed by
        :meth:`place_call` report to :attr:`hooks`): the engine's own event, no polling."""
        return self.hooks.wait(call_id, until, timeout)

    def cancel_pending_calls(self) -> list[str]:
        """Cancel every queued, dialing or ringing call of both tenants (answered calls cannot
        be canceled: they run to their end). Returns the ids asked to cancel."""
        asked = []
        for tenant in (self.tenant, self.other_tenant):
            status, found = self.api("GET", "/v1/calls?state=queued,dialing,ringing&limit=200",
                                     tenant=tenant)
            assert status == 200, (status, found)
            for call in found["calls"]:
                self.api("POST", f"/v1/calls/{call['id']}/cancel", tenant=tenant)
                asked.append(call["id"])
        return asked

    def login(self, page: Any, operator: Operator, *, lang: str | None = None) -> None:
        """Sign in on ``/console/login`` as ``operator`` and wait for ``/console/``."""
        page.goto(self.console("login", lang))
        # by name, not by label text: the labels are what the console's own tests check
        form = page.locator("form", has=page.locator('input[name="password"]'))
        form.locator('input[name="username"]').fill(operator.username)
        form.locator('input[name="password"]').fill(operator.password)
        form.locator('button:not([type]), [type="submit"]').first.click()
        page.wait_for_url(re.compile(re.escape(self.url) + r"/console/(\?.*)?$"))


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without a developer's ARS_* (ARS_CONFIG, ARS_SECRET_KEY…)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env | extra


def _cli(env: Mapping[str, str], *args: str) -> str:
    done = subprocess.run([*ENGINE, *args], env=dict(env), cwd=ROOT, capture_output=True,
                          text=True, timeout=CLI_TIMEOUT, check=False)
    if done.returncode != 0:
        raise AssertionError(f"ars-engine {' '.join(args)} exited {done.returncode}:\n"
                             f"{done.stdout}{done.stderr}")
    return done.stdout


def start_console_server(base: Path, phones: Mapping[str, PhoneSpec],
                         started: list[_Process]) -> ConsoleServer:
    """Softphones, config, tenants, operators, then ``serve``; every process started is
    appended to ``started`` (the caller stops them, also when this raises)."""
    base.mkdir(parents=True, exist_ok=True)
    env = _clean_env(ARS_SECRET_KEY=secrets.token_hex(32),
                     ARS_RECORDINGS_DIR=str(base / "recordings"))
    procs = {}
    for name, spec in phones.items():  # all at once, then wait for each
        procs[name] = _Process(f"softphone {name}",
                               [*ENGINE, "softphone", "--listen", "127.0.0.1:0", "--recordings",
                                str(base / "softphones" / name), *spec.args],
                               env, base / f"softphone-{name}.log")
        started.append(procs[name])
    made = {name: Phone(name, phones[name].number,
                        proc.wait_for(r"listening on (sip:\S+)", START_TIMEOUT).group(1))
            for name, proc in procs.items()}
    config = base / "ars.toml"
    config.write_text(
        "[service]\n"
        f'data_dir = "{base / "data"}"\n'
        'node_id = "browser-tests"\n'
        "poll_seconds = 0.2\n"
        "[numbers]\n" + "".join(f'"{p.number}" = "{p.uri}"\n' for p in made.values()),
        encoding="utf-8")
    env["ARS_CONFIG"] = str(config)  # every command below reads it (none needs --config)

    def make_tenant(tenant_id: str, name: str) -> Tenant:
        created = json.loads(_cli(env, "tenants", "create", tenant_id, "--name", name,
                                  "--per-number-limit", "1000", "--max-concurrent", "50",
                                  "--json"))
        # a labelled key for the tests (the first one came with the tenant)
        key = _cli(env, "tenants", "key", tenant_id, "--label", "browser tests").strip()
        return Tenant(tenant_id, key, created["webhook_secret"])

    def make_operator(who: Operator) -> None:
        role = ["--role", who.role] + (["--tenant", who.tenant] if who.tenant else [])
        _cli(env | {"ARS_OPERATOR_PASSWORD": who.password}, "operators", "create",
             who.username, *role, "--password-env", "ARS_OPERATOR_PASSWORD")

    tenant, other = make_tenant("qa-bank", "QA 은행"), make_tenant("other-co", "Other Co")
    admin = Operator("admin", secrets.token_urlsafe(18), "admin", None)
    operator = Operator("bank-operator", secrets.token_urlsafe(18), "tenant", tenant.id)
    make_operator(admin)
    make_operator(operator)

    # port 0 (only the command line takes it): the bound port is read from "serving on"
    engine = _Process("ars-engine serve", [*ENGINE, "--log-level", "INFO", "serve", "--listen",
                                           "127.0.0.1:0"], env, base / "engine.log")
    started.append(engine)
    url = engine.wait_for(r"serving on (http://\S+)", START_TIMEOUT).group(1)
    return ConsoleServer(url=url, tenant=tenant, other_tenant=other, admin=admin,
                         operator=operator, phones=made, config=config,
                         data_dir=base / "data", log=base / "engine.log",
                         hooks=HookReceiver(), env=env)


@pytest.fixture(scope="module")
def console_phones() -> Mapping[str, PhoneSpec]:
    """The softphones :func:`console_server` starts (override in a module for others)."""
    return CONSOLE_PHONES


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory,
                   console_phones: Mapping[str, PhoneSpec],
                   request: pytest.FixtureRequest) -> Iterator[ConsoleServer]:
    """A real ``ars-engine serve`` (SQLite in a temporary folder) for the test module. At the
    end its pending calls are canceled and it gets SIGTERM (then the softphones); its log and
    the softphones' are copied to ``test-artifacts/console-server/<module>/``."""
    base = tmp_path_factory.mktemp("console")
    started: list[_Process] = []
    try:
        server = start_console_server(base, console_phones, started)
        yield server
        # SIGTERM gives running calls up to 30 s to end: hang up those still ringing first
        # (a test that leaves an answered call running pays for it here).
        with contextlib.suppress(Exception):
            server.cancel_pending_calls()
        server.hooks.close()
    finally:
        for proc in reversed(started):  # the engine first, then the phones
            proc.stop()
        logs = ARTIFACTS / "console-server" / _safe(request.module.__name__.rsplit(".", 1)[-1])
        shutil.rmtree(logs, ignore_errors=True)
        logs.mkdir(parents=True, exist_ok=True)
        for log in base.glob("*.log"):
            shutil.copy(log, logs / log.name)
