"""Evidence bundles: the manifest holds the exact prompts and the masked keys, the signature and
the hashes catch any changed byte, and purge deletes only what it can read as expired.

Tests that write a bundle run ffmpeg (the mp3 derivative), so they are marked ``integration``;
the pure parts (bitrate choice, canonical JSON, purge on hand-made manifests) run without it.
"""

from __future__ import annotations

import array
import hashlib
import json
import logging
import math
import shutil
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ars_engine.errors import EvidenceError
from ars_engine.scenario.timeline import TimelineEvent
from ars_engine.service import evidence as ev
from ars_engine.service.evidence import (
    DEFAULT_RETENTION_DAYS,
    EvidenceBundle,
    EvidenceInput,
    canonical_json,
    choose_bitrate,
    evidence_key_id,
    purge_evidence,
    sign_manifest,
    verify_evidence,
    write_evidence,
)
from ars_engine.service.keys import MasterKey

MASTER = MasterKey(bytes(range(32)), "test")
KEY, KEY_ID = MASTER.evidence_key, MASTER.evidence_key_id
OTHER_KEY = MasterKey(bytes(range(1, 33)), "other").evidence_key
SECRET_CODE = "482913"  # what the person typed; the timeline only ever holds "*"
KST = timezone(timedelta(hours=9))
STARTED = datetime(2024, 3, 5, 10, 0, 0, tzinfo=KST)
ENDED = STARTED + timedelta(seconds=42, milliseconds=250)
CREATED = datetime(2024, 3, 5, 1, 0, 45, tzinfo=UTC)
PROMPTS = [
    (0, "intro", "안녕하세요, 자동이체 출금 동의 확인 전화입니다."),
    (3100, "consent", "홍길동 고객님, 국민은행 계좌 123-***-**89 에서 매월 25일 "
                      "50,000원이 출금됩니다. 동의하시면 1번, 아니면 2번을 눌러주세요."),
    (9800, "code", "인증창에 보이는 인증번호 6자리를 입력해 주세요."),
    (16500, "bye", "감사합니다. 안녕히 계세요."),
]
KEYS = [(8700, "consent", "1"), *((11000 + 400 * i, "code", "*") for i in range(6))]

requires_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None,
                                     reason="ffmpeg is not installed")


def tone_wav(path: Path, seconds: float, rate: int = 8000, freq: float = 440.0) -> Path:
    """A mono 16-bit PCM WAV of a sine tone, written with the stdlib ``wave`` module."""
    samples = array.array("h", (int(12000 * math.sin(2 * math.pi * freq * i / rate))
                                for i in range(int(seconds * rate))))
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def timeline() -> list[TimelineEvent]:
    events = [TimelineEvent(t, "prompt_started", step, {"text": text, "duration_ms": 2000})
              for t, step, text in PROMPTS]
    events += [TimelineEvent(t + 2000, "prompt_ended", step, {"played_ms": 2000})
               for t, step, _ in PROMPTS]
    events += [TimelineEvent(t, "key", step, {"key": key}) for t, step, key in KEYS]
    events.append(TimelineEvent(13100, "gather_ended", "code", {"digits": 6, "end": "max"}))
    return sorted(events, key=lambda e: e.t_ms)


def sample_input(audio: Path, call_id: str = "call-0001", **changes: Any) -> EvidenceInput:
    fields: dict[str, Any] = dict(
        call_id=call_id, tenant_id="acme", scenario="type_e_consent",
        scenario_sha256=hashlib.sha256(b"scenario").hexdigest(), destination="+821012345678",
        outcome="agreed", result={"agreed": True, "code": "******", "attempts": 1},
        started_at=STARTED, ended_at=ENDED, timeline=timeline(), audio=audio)
    fields.update(changes)
    return EvidenceInput(**fields)


def flip(path: Path, offset: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def source_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tone_wav(tmp_path_factory.mktemp("src") / "call.wav", 3.0)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, source_wav: Path) -> EvidenceBundle:
    """One bundle written per module (ffmpeg is the slow part); tests work on copies."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    out = tmp_path_factory.mktemp("evidence")
    return write_evidence(sample_input(source_wav), out, key=KEY, key_id=KEY_ID, now=CREATED)


@pytest.fixture
def bundle(template: EvidenceBundle, tmp_path: Path) -> Path:
    """A private copy of the template bundle's directory."""
    return Path(shutil.copytree(template.directory, tmp_path / template.directory.name))


# -- pure parts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("duration_s", "kbps"), [
    (3, 32), (60, 32), (73, 32), (74, 16), (120, 16), (147, 16), (148, 8), (240, 8), (295, 8),
])
def test_bitrate_is_the_highest_that_keeps_the_mp3_within_300_kb(duration_s: int,
                                                                 kbps: int) -> None:
    assert choose_bitrate(duration_s * 1000) == kbps
    assert duration_s * kbps * 125 < ev.DERIVATIVE_MAX_BYTES


@pytest.mark.parametrize("duration_s", [297, 600, 3600])
def test_recording_too_long_for_8_kbps_is_refused_naming_its_duration(duration_s: int) -> None:
    with pytest.raises(EvidenceError, match=rf"lasts {duration_s}\.0 s.*8 kbps.*300 KB"):
        choose_bitrate(duration_s * 1000)


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert canonical_json({"b": 1, "a": {"d": "동의", "c": [1, 2]}}) == \
        '{"a":{"c":[1,2],"d":"동의"},"b":1}'.encode()


def test_key_id_follows_the_master_key_rule() -> None:
    assert evidence_key_id(KEY) == KEY_ID
    assert evidence_key_id(OTHER_KEY) != KEY_ID
    assert DEFAULT_RETENTION_DAYS == 1826


@pytest.mark.parametrize(("changes", "message"), [
    ({"started_at": datetime(2024, 3, 5, 10, 0)}, "started_at: expected an aware"),
    ({"ended_at": datetime(2024, 3, 5, 10, 1)}, "ended_at: expected an aware"),
    ({"call_id": "../escape"}, "not usable as a directory name"),
    ({"call_id": ".hidden"}, "not usable as a directory name"),
    ({"result": {"amount": float("nan")}}, "not plain JSON"),
    ({"result": {"when": datetime(2024, 1, 1)}}, "not plain JSON"),
    ({"audio": Path("/nonexistent/call.wav")}, "no such recording"),
])
def test_unusable_input_writes_nothing(tmp_path: Path, source_wav: Path,
                                       changes: dict[str, Any], message: str) -> None:
    changes = dict(changes)
    data = sample_input(changes.pop("audio", source_wav), **changes)
    with pytest.raises(EvidenceError, match=message):
        write_evidence(data, tmp_path / "out", key=KEY, key_id=KEY_ID)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "escape").exists()


def test_not_a_wav_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "call.wav"
    fake.write_bytes(b"ID3\x03 not a wav at all")
    with pytest.raises(EvidenceError, match="not a readable PCM WAV"):
        write_evidence(sample_input(fake), tmp_path / "out", key=KEY, key_id=KEY_ID)


def test_verify_reports_a_missing_or_broken_manifest(tmp_path: Path) -> None:
    report = verify_evidence(tmp_path, key=KEY)
    assert not report.ok
    assert report.describe().startswith("✗ manifest:")
    (tmp_path / "manifest.json").write_text('{"format": "something-else/1"}')
    assert not verify_evidence(tmp_path / "manifest.json", key=None).ok


# -- purge (hand-made manifests: purge reads only ended_at) ----------------------------------------
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def fake_bundle(root: Path, call_id: str, ended_at: str | None, *,
                manifest: str | None = None) -> Path:
    directory = root / call_id
    directory.mkdir(parents=True)
    (directory / "recording.wav").write_bytes(b"RIFF....")
    if manifest is None and ended_at is not None:
        manifest = json.dumps({"format": "ars-evidence/1", "call_id": call_id,
                               "ended_at": ended_at})
    if manifest is not None:
        (directory / "manifest.json").write_text(manifest, encoding="utf-8")
    return directory


@pytest.fixture
def purge_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "evidence"
    fake_bundle(root, "old", "2024-12-31T23:59:59.000Z")  # 5 years and a day before NOW
    fake_bundle(root, "edge", "2025-01-02T12:00:00.000Z")  # inside 1826 days
    fake_bundle(root, "recent", "2029-12-31T00:00:00.000Z")
    fake_bundle(root, "broken", None, manifest='{"format": "ars-evidence/1", "ended_at": ')
    fake_bundle(root, "no-manifest", None)
    fake_bundle(root, "naive", "2001-01-01T00:00:00")
    fake_bundle(root, "moved", None, manifest=json.dumps(
        {"format": "ars-evidence/1", "call_id": "elsewhere", "ended_at": "2001-01-01T00:00Z"}))
    yield root


def test_purge_deletes_only_bundles_past_retention(purge_root: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ars_engine.service.evidence"):
        removed = purge_evidence(purge_root, older_than_days=DEFAULT_RETENTION_DAYS, now=NOW)
    assert removed == [purge_root / "old"]
    assert sorted(p.name for p in purge_root.iterdir()) == \
        ["broken", "edge", "moved", "naive", "no-manifest", "recent"]
    kept = " ".join(r.getMessage() for r in caplog.records)
    for name in ("broken", "no-manifest", "naive", "moved"):
        assert f"keeping {purge_root / name}" in kept


def test_purge_dry_run_lists_and_deletes_nothing(purge_root: Path) -> None:
    before = sorted(p.name for p in purge_root.iterdir())
    would = purge_evidence(purge_root, older_than_days=30, now=NOW, dry_run=True)
    assert [p.name for p in would] == ["edge", "old"]
    assert sorted(p.name for p in purge_root.iterdir()) == before
    assert purge_evidence(purge_root, older_than_days=30, now=NOW) == would


def test_a_bundle_that_cannot_be_deleted_keeps_its_manifest_for_the_next_purge(
        purge_root: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    real_unlink = Path.unlink

    def unlink(self: Path, missing_ok: bool = False) -> None:
        if self.name == "recording.wav":
            raise PermissionError(13, "Permission denied", str(self))
        real_unlink(self, missing_ok)

    with monkeypatch.context() as m, caplog.at_level(logging.ERROR):
        m.setattr(Path, "unlink", unlink)
        assert purge_evidence(purge_root, older_than_days=DEFAULT_RETENTION_DAYS, now=NOW) == []
    assert f"cannot delete {purge_root / 'old'}" in caplog.text
    assert (purge_root / "old" / "manifest.json").exists()  # deleted last, so still there
    assert purge_evidence(purge_root, older_than_days=DEFAULT_RETENTION_DAYS, now=NOW) == \
        [purge_root / "old"]
    assert not (purge_root / "old").exists()


def test_purge_of_a_missing_root_is_empty_and_bad_arguments_raise(tmp_path: Path) -> None:
    assert purge_evidence(tmp_path / "none", older_than_days=1, now=NOW) == []
    with pytest.raises(EvidenceError, match="older_than_days"):
        purge_evidence(tmp_path, older_than_days=0, now=NOW)
    with pytest.raises(EvidenceError, match="aware"):
        purge_evidence(tmp_path, older_than_days=1, now=datetime(2030, 1, 1))


# -- written bundles (ffmpeg) ----------------------------------------------------------------------
@pytest.mark.integration
def test_round_trip_writes_the_three_files_and_verifies(template: EvidenceBundle,
                                                        source_wav: Path) -> None:
    b = template
    assert sorted(p.name for p in b.directory.iterdir()) == \
        ["manifest.json", "recording.mp3", "recording.wav"]
    assert b.audio_path.read_bytes() == source_wav.read_bytes()
    assert source_wav.exists()
    m = json.loads(b.manifest_path.read_text(encoding="utf-8"))
    assert m == b.manifest
    assert m["format"] == "ars-evidence/1"
    assert (m["call_id"], m["tenant_id"], m["destination"], m["outcome"]) == \
        ("call-0001", "acme", "+821012345678", "agreed")
    assert m["scenario"] == {"name": "type_e_consent",
                             "sha256": hashlib.sha256(b"scenario").hexdigest()}
    assert m["started_at"] == "2024-03-05T01:00:00.000Z"  # 10:00 KST
    assert m["ended_at"] == "2024-03-05T01:00:42.250Z"
    assert m["created_at"] == "2024-03-05T01:00:45.000Z"
    wav = b.audio_path.read_bytes()
    assert m["audio"] == {"file": "recording.wav", "sha256": hashlib.sha256(wav).hexdigest(),
                          "bytes": len(wav), "duration_ms": 3000, "sample_rate": 8000}
    mp3 = b.derivative_path.read_bytes()
    assert m["derivative"] == {"file": "recording.mp3",
                               "sha256": hashlib.sha256(mp3).hexdigest(), "bytes": len(mp3),
                               "bitrate_kbps": 32, "format": "mp3"}
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF
    unsigned = {k: v for k, v in m.items() if k != "signature"}
    assert m["signature"] == {"alg": "HMAC-SHA256", "key_id": KEY_ID,
                              "value": sign_manifest(unsigned, KEY)}
    report = verify_evidence(b.manifest_path, key=KEY)
    assert report.ok, report.describe()
    assert [name for name, _, _ in report.checks] == \
        ["manifest", "signature", "audio", "derivative"]
    assert all(line.startswith("✓ ") for line in report.describe().splitlines())


@pytest.mark.integration
def test_manifest_is_pretty_utf8_and_verification_recanonicalises(bundle: Path) -> None:
    text = (bundle / "manifest.json").read_text(encoding="utf-8")
    assert '\n  "call_id": "call-0001"' in text
    assert "자동이체" in text  # not \\u escapes
    # Re-indenting the file changes no signed byte: verification works on the parsed JSON.
    (bundle / "manifest.json").write_text(json.dumps(json.loads(text), ensure_ascii=True))
    assert verify_evidence(bundle, key=KEY).ok


@pytest.mark.integration
def test_manifest_holds_the_exact_prompt_texts_and_masked_keys(template: EvidenceBundle) -> None:
    m = template.manifest
    assert m["prompts"] == [{"t_ms": t, "step": step, "text": text} for t, step, text in PROMPTS]
    assert m["dtmf"] == [{"t_ms": t, "step": step, "key": key} for t, step, key in KEYS]
    assert [k["key"] for k in m["dtmf"] if k["step"] == "code"] == ["*"] * 6


@pytest.mark.integration
def test_a_masked_secret_never_appears_in_clear(template: EvidenceBundle) -> None:
    text = template.manifest_path.read_text(encoding="utf-8")
    assert SECRET_CODE not in text
    typed = "".join(k["key"] for k in template.manifest["dtmf"] if k["step"] == "code")
    assert typed == "******"


@pytest.mark.integration
@pytest.mark.parametrize("name", ["", "manifest.json", "recording.wav", "recording.mp3"])
def test_verify_accepts_the_directory_manifest_or_an_audio_file(bundle: Path,
                                                                name: str) -> None:
    assert verify_evidence(bundle / name if name else bundle, key=KEY).ok


@pytest.mark.integration
@pytest.mark.parametrize("name", ["recording.wav", "recording.mp3", "manifest.json"])
@pytest.mark.parametrize("where", [0, 1, 0.1, 0.25, 0.5, 0.75, 0.9, -1])
@pytest.mark.parametrize("mask", [0x01, 0x20, 0xFF])
def test_one_changed_byte_anywhere_fails_verification(bundle: Path, name: str, where: float,
                                                      mask: int) -> None:
    path = bundle / name
    size = path.stat().st_size
    offset = int(where) % size if isinstance(where, int) else int(size * where)
    flip(path, offset, mask)
    report = verify_evidence(bundle, key=KEY)
    assert not report.ok, f"{name}@{offset}^{mask:#x}\n{report.describe()}"


@pytest.mark.integration
@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_flipped_byte_fails_verification_property(bundle: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(["recording.wav", "recording.mp3", "manifest.json"]))
    path = bundle / name
    original = path.read_bytes()
    offset = data.draw(st.integers(0, len(original) - 1))
    mask = data.draw(st.integers(1, 255))
    try:
        flip(path, offset, mask)
        assert not verify_evidence(bundle, key=KEY).ok
    finally:
        path.write_bytes(original)
    assert verify_evidence(bundle, key=KEY).ok


@pytest.mark.integration
def test_a_changed_hex_case_in_the_signature_fails(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    m["signature"]["value"] = m["signature"]["value"].upper()
    (bundle / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    assert not verify_evidence(bundle, key=KEY).ok


@pytest.mark.integration
@pytest.mark.parametrize("change", ["truncate", "append", "delete"])
def test_a_truncated_extended_or_missing_audio_file_fails(bundle: Path, change: str) -> None:
    path = bundle / "recording.wav"
    if change == "truncate":
        path.write_bytes(path.read_bytes()[:-1])
    elif change == "append":
        path.write_bytes(path.read_bytes() + b"\0")
    else:
        path.unlink()
    report = verify_evidence(bundle, key=None)
    assert not report.ok
    assert "✗ audio:" in report.describe()


@pytest.mark.integration
def test_a_wrong_key_fails_the_signature_but_not_the_hashes(bundle: Path) -> None:
    report = verify_evidence(bundle, key=OTHER_KEY)
    assert not report.ok
    assert [(name, passed) for name, passed, _ in report.checks] == \
        [("manifest", True), ("signature", False), ("audio", True), ("derivative", True)]
    assert "✗ signature: HMAC-SHA256 does not match" in report.describe()


@pytest.mark.integration
def test_a_changed_key_id_fails_with_the_right_key(bundle: Path) -> None:
    m = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    m["signature"]["key_id"] = "0" * 16
    (bundle / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    assert "key id '0000000000000000' is not this key's" in \
        verify_evidence(bundle, key=KEY).describe()
    assert verify_evidence(bundle, key=KEY, key_id="0" * 16).ok


@pytest.mark.integration
def test_without_a_key_the_signature_is_not_checked_but_the_hashes_are(bundle: Path) -> None:
    report = verify_evidence(bundle, key=None)
    assert report.ok
    assert f"✓ signature: NOT CHECKED (no key given; key id {KEY_ID})" in report.describe()
    flip(bundle / "recording.mp3", 500)
    report = verify_evidence(bundle, key=None)
    assert not report.ok
    assert "✗ derivative: recording.mp3:" in report.describe()


@pytest.mark.integration
def test_an_existing_bundle_is_never_overwritten(template: EvidenceBundle,
                                                 source_wav: Path) -> None:
    before = template.manifest_path.read_bytes()
    with pytest.raises(EvidenceError, match="already exists"):
        write_evidence(sample_input(source_wav), template.directory.parent, key=KEY,
                       key_id=KEY_ID)
    assert template.manifest_path.read_bytes() == before


@pytest.mark.integration
@requires_ffmpeg
def test_a_failure_midway_leaves_no_manifest_and_a_retry_completes(
        tmp_path: Path, source_wav: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_ffmpeg(wav: Path, out: Path, kbps: int) -> None:
        out.write_bytes(b"half an mp3")
        raise EvidenceError("ffmpeg failed: simulated")

    with monkeypatch.context() as m:
        m.setattr(ev, "_ffmpeg_mp3", broken_ffmpeg)
        with pytest.raises(EvidenceError, match="simulated"):
            write_evidence(sample_input(source_wav), tmp_path, key=KEY, key_id=KEY_ID)
    directory = tmp_path / "call-0001"
    assert sorted(p.name for p in directory.iterdir()) == ["recording.wav"]  # no temp files
    assert not verify_evidence(directory, key=KEY).ok
    bundle = write_evidence(sample_input(source_wav), tmp_path, key=KEY, key_id=KEY_ID)
    assert verify_evidence(bundle.directory, key=KEY).ok
    assert sorted(p.name for p in directory.iterdir()) == \
        ["manifest.json", "recording.mp3", "recording.wav"]


@pytest.mark.integration
def test_purge_removes_a_real_expired_bundle(bundle: Path) -> None:
    now = ENDED + timedelta(days=DEFAULT_RETENTION_DAYS, seconds=1)
    assert purge_evidence(bundle.parent, older_than_days=DEFAULT_RETENTION_DAYS,
                          now=now - timedelta(seconds=2)) == []
    assert purge_evidence(bundle.parent, older_than_days=DEFAULT_RETENTION_DAYS,
                          now=now) == [bundle]
    assert not bundle.exists()
