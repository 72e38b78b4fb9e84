"""Browser tests: Playwright (python, sync API) against Selenium + Debian's chromedriver, both
driving Debian's headless ``/usr/bin/chromium`` (no browser download).

One *run* is one fresh Python process (as a pytest session is) that, for one tool:

* **import**: imports the tool's Python package;
* **launch**: starts the browser and gets a blank page ready (Playwright: its node driver,
  ``chromium.launch(executable_path=...)``, ``new_context(locale=...)``, ``new_page()``;
  Selenium: ``webdriver.Chrome(service=Service("/usr/bin/chromedriver"))``, which starts
  chromedriver, which starts Chromium with a fresh ``--user-data-dir``);
* **page**: 10 local pages, each: navigate and wait for ``load``, click a button, wait for the
  text the click writes, save a full-page PNG screenshot (Playwright ``full_page=True``;
  Selenium's Chrome driver has no full-page screenshot, so CDP ``Page.captureScreenshot`` with
  ``captureBeyondViewport``). Every PNG is checked to be taller than the 720 px viewport;
* **axe**: on each of the 10 pages again, inject axe-core (axe-playwright-python's bundled
  ``axe.min.js``, the same file for both tools) and run it with the WCAG 2 A/AA tags; the page
  has one unlabeled input, which must be reported (``label``) by both;
* **context**: a fresh, isolated session ready on ``about:blank`` with another locale, what
  the tests' ``page`` fixture costs per test. Playwright: ``new_context(locale=...)`` +
  ``new_page()`` in the running browser. Selenium has no browser contexts: the same isolation
  (cookies, storage, locale) is a second ``webdriver.Chrome`` (chromedriver + Chromium, fresh
  profile), timed until its page is ready (its ``quit()`` is not timed);
* **total**: launch + the 10 pages + closing the browser (the axe phase excluded), wall clock.

The pages come from a stdlib HTTP server on 127.0.0.1 in a thread of the parent process; the
runs alternate between the tools. Prints one line per run and median/min/max per measure.

Selenium is not a dependency of the project; install it aside for the run::

    .venv/bin/python -m pip install --target /tmp/ars-bench-selenium selenium
    PYTHONPATH=/tmp/ars-bench-selenium .venv/bin/python bench/bench_browser.py [--runs 5]

(``SE_OFFLINE=1`` and explicit driver/browser paths keep Selenium Manager from downloading.)
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PAGES = 10
VIEWPORT = (1280, 720)
# The flags the tests use (root in a sandbox with no network); Playwright adds most of them
# itself and manages the profile; Selenium gets a fresh --user-data-dir.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required"]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a",
                                                     "wcag21aa"]},
               "resultTypes": ["violations"]}

PAGE = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><title>페이지 {n}</title>
<style>body{{font-family:sans-serif;margin:2rem}} .row{{height:60px;border-bottom:1px solid #ccc}}
</style></head>
<body><main><h1>통화 목록 {n}</h1>
<form onsubmit="return false"><label for="q">검색</label><input id="q" name="q">
<input name="unlabeled"></form>
<button id="go" type="button"
 onclick="document.getElementById('out').textContent='눌렀습니다 {n}'">보기</button>
<p id="out"></p>
{rows}
</main></body></html>
"""


class _Pages(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        n = self.path.rsplit("/", 1)[-1]
        rows = "".join(f'<div class="row">통화 {n}-{i} +8210555{i:05d} 완료</div>'
                       for i in range(40))  # ~2,400 px: the full-page screenshot is tall
        body = PAGE.format(n=n, rows=rows).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _axe_script() -> str:
    from axe_playwright_python.base import AXE_SCRIPT

    return AXE_SCRIPT


def _page_medians(pages: list[tuple[float, float, float]]) -> dict[str, float]:
    return {"page": statistics.median(sum(p) for p in pages),
            "goto": statistics.median(p[0] for p in pages),
            "click": statistics.median(p[1] for p in pages),
            "shot": statistics.median(p[2] for p in pages)}


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


# -- one run of each tool (in a child process) ------------------------------------------------

def run_playwright(base: str, out: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    from playwright.sync_api import sync_playwright
    t_import = time.perf_counter() - t0
    axe = _axe_script()

    start = time.perf_counter()
    pw = sync_playwright().start()
    driver = time.perf_counter() - start
    browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
    context = browser.new_context(locale="ko-KR", viewport={"width": VIEWPORT[0],
                                                             "height": VIEWPORT[1]})
    page = context.new_page()
    launch = time.perf_counter() - start

    def click(n: int) -> None:
        page.click("#go")  # waits until the button is visible, enabled and still
        page.wait_for_selector(f"text=눌렀습니다 {n}")

    def shoot(n: int) -> bytes:
        return page.screenshot(path=str(out / f"pw-{n}.png"), full_page=True)

    pages = []
    for n in range(PAGES):
        t_goto, _ = _timed(page.goto, f"{base}/page/{n}")  # waits for "load"
        t_click, _ = _timed(click, n)
        t_shot, png = _timed(shoot, n)
        assert _png_size(png)[1] > VIEWPORT[1], _png_size(png)
        pages.append((t_goto, t_click, t_shot))
    pages_end = time.perf_counter()

    axe_times = []
    for n in range(PAGES):
        page.goto(f"{base}/page/{n}")
        def check() -> dict[str, Any]:
            page.evaluate(axe)
            return page.evaluate("options => axe.run(document, options)", AXE_OPTIONS)
        took, result = _timed(check)
        assert "label" in {v["id"] for v in result["violations"]}, result["violations"]
        axe_times.append(took)

    def fresh_context() -> Any:
        other = browser.new_context(locale="en-US")
        other.new_page().goto("about:blank")
        return other

    took_ctx, other = _timed(fresh_context)
    other.close()

    close_start = time.perf_counter()
    context.close()
    browser.close()
    pw.stop()
    close = time.perf_counter() - close_start
    return {"import": t_import, "driver": driver, "launch": launch,
            **_page_medians(pages), "axe": statistics.median(axe_times),
            "context": took_ctx, "close": close,
            "total": (pages_end - start) + close}


def run_selenium(base: str, out: Path) -> dict[str, Any]:
    os.environ["SE_OFFLINE"] = "1"  # Selenium Manager must never try to download anything
    t0 = time.perf_counter()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait
    t_import = time.perf_counter() - t0
    axe = _axe_script()

    profile = tempfile.mkdtemp(prefix="ars-bench-se-")
    start = time.perf_counter()
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={profile}",
                 f"--window-size={VIEWPORT[0]},{VIEWPORT[1]}", "--lang=ko-KR"]:
        options.add_argument(flag)
    options.add_experimental_option("prefs", {"intl.accept_languages": "ko-KR,ko"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    launch = time.perf_counter() - start

    def click(n: int) -> None:
        driver.find_element(By.ID, "go").click()
        WebDriverWait(driver, 10).until(
            lambda d: d.find_element(By.ID, "out").text == f"눌렀습니다 {n}")

    def shoot(n: int) -> bytes:
        # Chrome's driver only shoots the viewport: a full page needs CDP.
        size = driver.execute_script("return [document.documentElement.scrollWidth,"
                                     " document.documentElement.scrollHeight]")
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1}})
        data = base64.b64decode(shot["data"])
        (out / f"se-{n}.png").write_bytes(data)
        return data

    pages = []
    for n in range(PAGES):
        # get() waits for the load event (pageLoadStrategy "normal")
        t_goto, _ = _timed(driver.get, f"{base}/page/{n}")
        t_click, _ = _timed(click, n)
        t_shot, png = _timed(shoot, n)
        assert _png_size(png)[1] > VIEWPORT[1], _png_size(png)
        pages.append((t_goto, t_click, t_shot))
    pages_end = time.perf_counter()

    axe_times = []
    for n in range(PAGES):
        driver.get(f"{base}/page/{n}")
        def check() -> dict[str, Any]:
            driver.execute_script(axe)
            # W3C Execute Script awaits a returned promise.
            return driver.execute_script(
                "return axe.run(document, arguments[0])", AXE_OPTIONS)
        took, result = _timed(check)
        assert "label" in {v["id"] for v in result["violations"]}, result["violations"]
        axe_times.append(took)

    def fresh_session() -> None:  # no contexts: the same isolation is a second session
        other = tempfile.mkdtemp(prefix="ars-bench-se-")
        more = webdriver.ChromeOptions()
        more.binary_location = CHROMIUM
        for flag in [*FLAGS, f"--user-data-dir={other}", "--lang=en-US"]:
            more.add_argument(flag)
        second = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=more)
        second.get("about:blank")
        context_end[0] = time.perf_counter()
        second.quit()
        shutil.rmtree(other, ignore_errors=True)

    context_end = [0.0]
    context_start = time.perf_counter()
    fresh_session()
    took_ctx = context_end[0] - context_start

    close_start = time.perf_counter()
    driver.quit()
    close = time.perf_counter() - close_start
    shutil.rmtree(profile, ignore_errors=True)
    return {"import": t_import, "driver": None, "launch": launch,
            **_page_medians(pages), "axe": statistics.median(axe_times),
            "context": took_ctx, "close": close, "total": (pages_end - start) + close}


# -- the parent: server, alternating child runs, summary ----------------------------------------

def _versions() -> str:
    import importlib.metadata as md

    found = []
    for name in ("playwright", "selenium", "axe-playwright-python"):
        try:
            found.append(f"{name} {md.version(name)}")
        except md.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    for program in (CHROMIUM, CHROMEDRIVER):
        try:
            text = subprocess.run([program, "--version"], capture_output=True, text=True,
                                  timeout=30, check=False).stdout.strip()
        except OSError:
            text = "missing"
        found.append(f"{program}: {text}")
    return "; ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", default="playwright,selenium")
    parser.add_argument("--one", choices=["playwright", "selenium"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.one:  # a child: one run of one tool, JSON on stdout
        with tempfile.TemporaryDirectory(prefix="ars-bench-shots-") as out:
            run = run_playwright if args.one == "playwright" else run_selenium
            print(json.dumps(run(args.base, Path(out))))
        return

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Pages)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}; "
          f"{_versions()}")
    print(f"# {args.runs} runs per tool, alternating; {PAGES} pages per run; seconds")
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for index in range(args.runs):
        for tool in tools:
            done = subprocess.run([sys.executable, __file__, "--one", tool, "--base", base],
                                  capture_output=True, text=True, timeout=600, check=False)
            if done.returncode != 0:
                raise SystemExit(f"{tool} run {index + 1} failed:\n{done.stderr}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            results[tool].append(row)
            print(f"{tool:<10} run {index + 1}: " + "  ".join(
                f"{k}={v:.3f}" for k, v in row.items() if v is not None))
    server.shutdown()

    measures = ["import", "driver", "launch", "page", "goto", "click", "shot", "axe",
                "context", "close", "total"]
    print(f"\n{'measure (s)':<12}" + "".join(f"{t + ' median [min-max]':>34}" for t in tools))
    for m in measures:
        cells = []
        for tool in tools:
            values = [r[m] for r in results[tool] if r[m] is not None]
            cells.append(f"{statistics.median(values):.3f} [{min(values):.3f}-{max(values):.3f}]"
                         if values else "n/a")
        print(f"{m:<12}" + "".join(f"{c:>34}" for c in cells))


if __name__ == "__main__":
    main()
