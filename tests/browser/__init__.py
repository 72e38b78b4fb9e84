"""Browser tests of the operator console: Playwright driving Debian's headless Chromium
(``/usr/bin/chromium``, no browser download), axe-core accessibility checks and screenshots
saved under ``test-artifacts/screenshots/`` (see conftest.py)."""
