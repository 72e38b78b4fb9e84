"""`make demo`'s service part end to end: the seven shipped scenarios (plus a busy and a
never-answered phone) triggered through the HTTP API, placed as real SIP/RTP calls to QA
softphones, and reported by signed webhooks that a receiver verifies."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_demo_over_http_ends_every_call_as_expected_with_a_verified_webhook(
        tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "ars_engine.cli", "demo", "--http", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "ARS_RECORDINGS_DIR": str(tmp_path / "rec")})
    assert done.returncode == 0, done.stdout + done.stderr
    rows = [line for line in done.stdout.splitlines() if line.startswith(("a_", "b_", "c_",
                                                                          "d_", "e_", "f_",
                                                                          "busy", "no_"))]
    assert len(rows) == 9
    assert all("✓" in row and "1 signed, verified" in row for row in rows), done.stdout
    assert "9 calls over HTTP: 9 as expected" in done.stdout
    assert "evidence /v1/calls/" in next(r for r in rows if r.startswith("e_agreed"))
    # the request shown as curl masks the code, as everything the engine prints does
    assert '"code": "****"' in done.stdout and '"code": "1234"' not in done.stdout
