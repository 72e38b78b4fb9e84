"""``ars-engine evidence verify`` and ``evidence purge`` through click's CliRunner, with the
master key made on first use in a temporary ``ARS_DATA_DIR``."""

from __future__ import annotations

import hashlib
import os
import shutil
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from ars_engine.cli_evidence import evidence
from ars_engine.config import Settings
from ars_engine.scenario.timeline import TimelineEvent
from ars_engine.service.evidence import EvidenceBundle, EvidenceInput, write_evidence

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed"),
]


class Env:
    """An isolated ``ARS_*`` environment: its own data dir (and so its own key) and recordings."""

    def __init__(self, root: Path) -> None:
        self.data_dir = root / "data"
        self.recordings = root / "recordings"
        self.values = {"ARS_DATA_DIR": str(self.data_dir),
                       "ARS_RECORDINGS_DIR": str(self.recordings)}

    def runner_env(self) -> dict[str, str | None]:
        """For CliRunner: ours, and every other inherited ``ARS_*`` variable unset."""
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("ARS_")}
        return {**unset, **self.values}

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(evidence, list(args), env=self.runner_env(),
                                  catch_exceptions=False)

    def bundle(self, call_id: str, ended_at: datetime) -> EvidenceBundle:
        """A real bundle signed with this environment's master key, under the default root."""
        master = Settings.from_env(dict(self.values)).master_key()
        wav = self.recordings / f"{call_id}.wav"
        wav.parent.mkdir(parents=True, exist_ok=True)
        tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(8000 * 2) / 8000)).astype("<i2")
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(tone.tobytes())
        data = EvidenceInput(
            call_id=call_id, tenant_id="acme", scenario="type_e_consent",
            scenario_sha256=hashlib.sha256(b"s").hexdigest(), destination="+821012345678",
            outcome="agreed", result={"agreed": True}, started_at=ended_at - timedelta(minutes=1),
            ended_at=ended_at, timeline=[TimelineEvent(0, "key", "consent", {"key": "1"})],
            audio=wav)
        return write_evidence(data, self.recordings / "evidence", key=master.evidence_key,
                              key_id=master.evidence_key_id)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return Env(tmp_path)


def test_verify_exits_0_then_1_after_one_changed_byte(env: Env) -> None:
    bundle = env.bundle("call-1", datetime.now(UTC))
    assert (env.data_dir / "secret.key").is_file()
    ok = env.invoke("verify", str(bundle.manifest_path))
    assert ok.exit_code == 0, ok.output
    assert ok.output.splitlines()[1].startswith("✓ signature: HMAC-SHA256 matches")
    data = bytearray(bundle.audio_path.read_bytes())
    data[len(data) // 2] ^= 0x01
    bundle.audio_path.write_bytes(bytes(data))
    bad = env.invoke("verify", str(bundle.directory))
    assert bad.exit_code == 1
    assert "✗ audio: recording.wav:" in bad.output
    assert "✓ derivative:" in bad.output


def test_verify_with_another_engines_key_fails_and_no_key_checks_hashes_only(
        env: Env, tmp_path: Path) -> None:
    bundle = env.bundle("call-2", datetime.now(UTC))
    other = Env(tmp_path / "other")
    unkeyed = other.invoke("verify", "--no-key", str(bundle.derivative_path))
    assert unkeyed.exit_code == 0, unkeyed.output
    assert "signature: NOT CHECKED" in unkeyed.output
    assert not (other.data_dir / "secret.key").exists()  # --no-key never touches a key
    wrong = other.invoke("verify", str(bundle.derivative_path))
    assert wrong.exit_code == 1
    assert "✗ signature: HMAC-SHA256 does not match" in wrong.output


def test_verify_of_a_missing_bundle_exits_1(env: Env, tmp_path: Path) -> None:
    result = env.invoke("verify", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    assert result.output.startswith("✗ manifest:")


def test_a_bad_key_setting_is_a_click_error(env: Env) -> None:
    env.values["ARS_SECRET_KEY"] = "too-short"
    result = env.invoke("verify", "whatever")
    assert result.exit_code == 1
    assert "Error: ARS_SECRET_KEY: the secret key must be at least 32 bytes" in result.output


def test_purge_removes_expired_bundles_and_keeps_recent_ones(env: Env) -> None:
    now = datetime.now(UTC)
    old = env.bundle("call-old", now - timedelta(days=1827))
    recent = env.bundle("call-recent", now - timedelta(days=30))
    dry = env.invoke("purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        f"would remove {old.directory}",
        f"1 bundle would be removed (calls ended over 1826 days ago, "
        f"under {env.recordings / 'evidence'})"]
    assert old.directory.exists()
    done = env.invoke("purge")
    assert done.exit_code == 0, done.output
    assert f"removed {old.directory}" in done.output
    assert not old.directory.exists()
    assert recent.directory.exists()
    short = env.invoke("purge", "--older-than-days", "7", "--dir",
                       str(env.recordings / "evidence"))
    assert short.output.splitlines()[-1].startswith("1 bundle removed (calls ended over 7 days")
    assert not recent.directory.exists()
    empty = env.invoke("purge")
    assert empty.output.startswith("0 bundles removed")


def test_purge_refuses_a_zero_retention(env: Env) -> None:
    result = env.invoke("purge", "--older-than-days", "0")
    assert result.exit_code == 2
    assert "--older-than-days" in result.output
