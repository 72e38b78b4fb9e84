"""`ars-engine demo --calls` (run by `make demo` after the simulations): real calls."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration


def test_demo_calls_runs_every_scenario_over_real_sip_and_rtp(tmp_path: Path) -> None:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed: `make setup` installs it")
    env = {**os.environ, "ARS_RECORDINGS_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "ars_engine.cli", "demo", "--calls"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"^9 real calls: 9 as expected, 0 unexpected", done.stdout, re.M)
    for name in ("type_a", "type_b", "type_c", "type_d", "type_e", "type_f_event_consent",
                 "type_f_amount_auth"):
        assert f"{name}.yaml" in done.stdout
    heard = re.findall(r"(\S+-heard\.wav)", done.stdout)
    assert len(heard) == 7 and all(Path(p).is_file() and Path(p).stat().st_size > 8000
                                   for p in heard)
    recordings = re.findall(r"recording: (\S+\.wav)", done.stdout)
    assert recordings and all(Path(p).is_file() for p in recordings)  # type E's consent
