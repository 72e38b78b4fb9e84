"""The mp3 derivative of an evidence bundle, made by the real ffmpeg and read back by ffprobe:
the bitrate steps down with the duration so the file stays within 300 KB, and a recording too
long even for 8 kbps keeps its bundle without the derivative (the manifest says why).

Note: at 8 kbps (the lowest MP3 rate at 8 kHz) 300 KB hold 300 s of audio, so a 10-minute
recording cannot fit; its bundle has no mp3 and a signed note naming the duration.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ars_engine.scenario.timeline import TimelineEvent
from ars_engine.service.evidence import (
    DERIVATIVE_MAX_BYTES,
    EvidenceInput,
    verify_evidence,
    write_evidence,
)
from ars_engine.service.keys import MasterKey

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                       reason="ffmpeg/ffprobe are not installed"),
]

MASTER = MasterKey(bytes(range(32)), "test")
STARTED = datetime(2024, 3, 5, 1, 0, tzinfo=UTC)


def tone_wav(path: Path, seconds: float, rate: int = 8000) -> Path:
    """A 440 Hz tone with a slow 3 Hz warble (so the encoder has something to code)."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 10000 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(signal.astype("<i2").tobytes())
    return path


def evidence_input(audio: Path, seconds: float) -> EvidenceInput:
    return EvidenceInput(
        call_id=f"call-{int(seconds)}s", tenant_id="acme", scenario="type_e_consent",
        scenario_sha256=hashlib.sha256(b"scenario").hexdigest(), destination="+821012345678",
        outcome="agreed", result={"agreed": True}, started_at=STARTED,
        ended_at=STARTED + timedelta(seconds=seconds),
        timeline=[TimelineEvent(0, "prompt_started", "consent", {"text": "동의하시면 1번"}),
                  TimelineEvent(4000, "key", "consent", {"key": "1"})],
        audio=audio)


def ffprobe(path: Path) -> dict[str, str]:
    done = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries",
         "format=format_name,duration:stream=codec_name,sample_rate,channels",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True)
    data = json.loads(done.stdout)
    return {**data["format"], **data["streams"][0]}


@pytest.mark.parametrize(("seconds", "kbps"), [(60, 32), (120, 16), (290, 8)])
def test_derivative_fits_300_kb_and_ffprobe_reads_its_duration(tmp_path: Path, seconds: int,
                                                                kbps: int) -> None:
    wav = tone_wav(tmp_path / "call.wav", seconds)
    bundle = write_evidence(evidence_input(wav, seconds), tmp_path / "evidence",
                            key=MASTER.evidence_key, key_id=MASTER.evidence_key_id)
    size = bundle.derivative_path.stat().st_size
    assert size <= DERIVATIVE_MAX_BYTES <= 300 * 1024
    assert bundle.manifest["derivative"]["bitrate_kbps"] == kbps
    assert bundle.manifest["derivative"]["bytes"] == size
    assert bundle.manifest["audio"]["duration_ms"] == seconds * 1000
    probe = ffprobe(bundle.derivative_path)
    assert probe["format_name"] == "mp3"
    assert probe["codec_name"] == "mp3"
    assert (probe["sample_rate"], probe["channels"]) == ("8000", 1)
    assert abs(float(probe["duration"]) - seconds) <= 1.0
    assert verify_evidence(bundle.directory, key=MASTER.evidence_key).ok


def test_a_10_minute_recording_keeps_its_evidence_without_a_derivative(tmp_path: Path) -> None:
    wav = tone_wav(tmp_path / "call.wav", 600)
    out = tmp_path / "evidence"
    bundle = write_evidence(evidence_input(wav, 600), out, key=MASTER.evidence_key,
                            key_id=MASTER.evidence_key_id)
    derivative = bundle.manifest["derivative"]
    assert derivative["file"] is None
    assert re.search(r"lasts 600\.0 s: even at 8 kbps .* 300 KB", derivative["not_made"])
    assert not (bundle.directory / "recording.mp3").exists()
    report = verify_evidence(bundle.directory, key=MASTER.evidence_key)
    assert report.ok, report.describe()
    # the reason is signed: deleting it (to pass off a missing mp3) breaks the signature
    manifest = json.loads(bundle.manifest_path.read_text(encoding="utf-8"))
    manifest["derivative"]["not_made"] = "x"
    bundle.manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    assert not verify_evidence(bundle.directory, key=MASTER.evidence_key).ok
    assert wav.exists()


def test_a_stereo_44k_wav_still_gives_a_mono_8k_derivative(tmp_path: Path) -> None:
    wav = tmp_path / "call.wav"
    t = np.arange(44100 * 5) / 44100
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.column_stack([tone, tone]).tobytes())
    bundle = write_evidence(evidence_input(wav, 5), tmp_path / "evidence",
                            key=MASTER.evidence_key, key_id=MASTER.evidence_key_id)
    assert bundle.manifest["audio"]["sample_rate"] == 44100
    assert bundle.manifest["audio"]["duration_ms"] == 5000
    probe = ffprobe(bundle.derivative_path)
    assert (probe["sample_rate"], probe["channels"]) == ("8000", 1)
    assert abs(float(probe["duration"]) - 5) <= 1.0
