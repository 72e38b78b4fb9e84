"""The ``ars-engine`` console script, run as a real process: validate, simulate, hash-secret,
prompts render.

Every process gets its own recordings folder and media cache (``ARS_RECORDINGS_DIR``,
``ARS_MEDIA_CACHE`` under pytest's tmp dirs), offline TTS, and no signing secret, so nothing is
written into the checkout and nothing leaves the machine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import wave
from pathlib import Path

import pytest

from ars_engine.scenario.secrets import verify_hash

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "scenarios"
SHIPPED = sorted(p.name for p in SCENARIOS.glob("*.yaml"))
PROCESS_TIMEOUT = 120  # seconds; a hung CLI fails the test instead of blocking the run


def ars_command() -> list[str]:
    """The installed console script of this venv (else the module)."""
    script = shutil.which("ars-engine", path=str(Path(sys.executable).parent))
    return [script] if script else [sys.executable, "-m", "ars_engine.cli"]


@pytest.fixture(scope="module")
def media_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One prompt cache for this module's processes (the first simulate fills it)."""
    return tmp_path_factory.mktemp("media-cache")


@pytest.fixture
def cli(tmp_path: Path, media_cache: Path):  # type: ignore[no-untyped-def]
    """Run ``ars-engine ARGS…`` in the checkout with isolated output folders."""
    recordings = tmp_path / "recordings"

    def run(*args: str, stdin: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("ARS_")}
        environ.update(ARS_RECORDINGS_DIR=str(recordings), ARS_MEDIA_CACHE=str(media_cache),
                       ARS_TTS_ONLINE="0", PYTHONIOENCODING="utf-8")
        environ.update(env or {})
        return subprocess.run([*ars_command(), *args], cwd=ROOT, env=environ, input=stdin,
                              capture_output=True, text=True, encoding="utf-8",
                              timeout=PROCESS_TIMEOUT, check=False)

    run.recordings = recordings  # type: ignore[attr-defined]
    return run


def output(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


# -- validate --------------------------------------------------------------------------------------
def test_validate_accepts_every_shipped_scenario(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("validate", "scenarios/")
    assert proc.returncode == 0, output(proc)
    assert len(SHIPPED) == 7
    ok_lines = [line for line in proc.stdout.splitlines() if re.search(r": ok \(", line)]
    for name in SHIPPED:
        assert any(line.startswith(f"scenarios/{name}: ok (") for line in ok_lines), output(proc)
    assert len(ok_lines) == 7, output(proc)


def doc(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# One file per mistake: (name, text, code, the text on the line the error must point at). The
# needle may be a list when the validator may point at the step id or at its kind key.
BROKEN: list[tuple[str, str, str, str | list[str]]] = [
    ("unknown_step_kind", doc("""
        scenario: t
        steps:
          hello:
            plya: {text: "안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
        """), "unknown-step-kind", ["  hello:", "plya:"]),
    ("unknown_target", doc("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: nowhere
          done:
            finish: {outcome: success}
        """), "unknown-target", "next: nowhere"),
    ("unreachable_step", doc("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: done
          orphan:
            play: {text: "아무도 오지 않는 단계"}
            next: done
          done:
            finish: {outcome: success}
        """), "unreachable-step", "  orphan:"),
    ("unbounded_cycle", doc("""
        scenario: t
        steps:
          first:
            play: {text: "하나"}
            next: second
          second:
            play: {text: "둘"}
            next: first
        """), "unbounded-cycle", ["  first:", "  second:"]),
    ("unknown_prompt", doc("""
        scenario: t
        steps:
          hello:
            play: no_such_prompt_id
            next: done
          done:
            finish: {outcome: success}
        """), "unknown-prompt", "no_such_prompt_id"),
    ("undeclared_variable", doc("""
        scenario: t
        steps:
          hello:
            play: {text: "{customer}님 안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
        """), "undeclared-variable", "{customer}"),
    ("secret_in_tts", doc("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          hello:
            play: {text: "인증번호는 {code} 입니다"}
            next: done
          done:
            finish: {outcome: success}
        """), "secret-in-tts", "{code}"),
    ("gather_without_timeouts", doc("""
        scenario: t
        steps:
          ask:
            gather:
              prompt: {text: "번호를 입력해 주세요"}
              digits: 4
              into: entered
            on: {ok: done}
            next: done
          done:
            finish: {outcome: success}
        """), "gather-without-timeouts", ["  ask:", "gather:"]),
    ("duplicate_step", doc("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
          done:
            finish: {outcome: failed}
        """), "duplicate-step", "finish: {outcome: failed}"),
    ("wrong_type", doc("""
        scenario: t
        limits:
          max_steps: lots
        steps:
          done:
            finish: {outcome: success}
        """), "wrong-type", "max_steps: lots"),
    ("unknown_key", doc("""
        scenario: t
        titel: 테스트
        steps:
          done:
            finish: {outcome: success}
        """), "unknown-key", "titel:"),
    ("yaml_syntax", doc("""
        scenario: t
        steps:
          hello:
            play: prompt: intro
            next: done
          done:
            finish: {outcome: success}
        """), "yaml-syntax", "play: prompt: intro"),
]


def expected_lines(text: str, needle: str | list[str]) -> set[int]:
    """1-based lines of ``text`` holding a needle. duplicate-step points at the second id, which
    sits on the line before its body, hence the special needle handled by the caller."""
    needles = [needle] if isinstance(needle, str) else needle
    found = set()
    for n in needles:
        found |= {i for i, line in enumerate(text.splitlines(), 1) if n in line}
    assert found, f"test bug: {needles} not in the scenario text"
    return found


def error_line_re(path: Path, code: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(str(path))}:(\d+):(\d+): .* \[{re.escape(code)}\]$")


def write_broken(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def where_expected(name: str, text: str, needle: str | list[str]) -> set[int]:
    lines = expected_lines(text, needle)
    if name == "duplicate_step":  # the second `done:` id is the line above its body
        lines = {n - 1 for n in lines}
    return lines


@pytest.mark.parametrize(("name", "text", "code", "needle"), BROKEN, ids=[b[0] for b in BROKEN])
def test_validate_reports_the_problem_at_its_line_with_its_code(
        cli, tmp_path: Path, name: str, text: str, code: str,  # type: ignore[no-untyped-def]
        needle: str | list[str]) -> None:
    path = write_broken(tmp_path, name, text)
    proc = cli("validate", str(path))
    assert proc.returncode == 1, output(proc)
    pattern = error_line_re(path, code)
    matches = [m for m in map(pattern.match, proc.stdout.splitlines()) if m]
    assert matches, output(proc)
    lines = where_expected(name, text, needle)
    assert any(int(m.group(1)) in lines for m in matches), \
        f"expected [{code}] on one of lines {sorted(lines)}\n{output(proc)}"
    assert all(int(m.group(2)) >= 1 for m in matches)
    # The file is valid but for this one mistake: every line printed about it has this code.
    about_file = [line for line in proc.stdout.splitlines() if line.startswith(f"{path}:")]
    assert len(about_file) == len(matches), output(proc)
    assert ": ok (" not in proc.stdout, output(proc)


def test_validate_of_several_broken_files_prints_every_error_and_exits_1(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = [write_broken(tmp_path, name, text) for name, text, _, _ in BROKEN]
    good = SCENARIOS / "type_c.yaml"
    proc = cli("validate", *map(str, paths), str(good))
    assert proc.returncode == 1, output(proc)
    lines = proc.stdout.splitlines()
    for (name, text, code, needle), path in zip(BROKEN, paths, strict=True):
        pattern = error_line_re(path, code)
        hits = [m for m in map(pattern.match, lines) if m]
        assert any(int(m.group(1)) in where_expected(name, text, needle) for m in hits), \
            f"{name}: no [{code}] line\n{output(proc)}"
    # The valid file among them is still checked and reported as ok.
    assert any(line.startswith(f"{good}: ok (type_c,") for line in lines), output(proc)
    assert re.search(rf"\d+ problem\(s\) in {len(paths) + 1} file\(s\)", proc.stderr), \
        output(proc)


# -- simulate --------------------------------------------------------------------------------------
def test_simulate_type_c_right_code_succeeds_and_writes_8khz_mono_wav(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    wav_path = tmp_path / "out" / "heard.wav"
    proc = cli("simulate", "scenarios/type_c.yaml", "--param", "code=123456",
               "--keys", "123456", "--wav", str(wav_path))
    assert proc.returncode == 0, output(proc)
    assert re.search(r"^outcome: success\b", proc.stdout, re.MULTILINE), output(proc)
    assert f"heard: {wav_path}" in proc.stdout
    with wave.open(str(wav_path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
        frames = w.getnframes()
    assert frames > 8000 * 5  # several seconds of prompts were heard


def test_simulate_json_output_has_outcome_and_timeline(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("simulate", "scenarios/type_c.yaml", "--param", "code=123456",
               "--keys", "123456", "--json")
    assert proc.returncode == 0, output(proc)
    data = json.loads(proc.stdout)
    assert data["outcome"] == "success"
    assert data["result"] == {"verified": True}
    kinds = [e["kind"] for e in data["timeline"]]
    assert "prompt_started" in kinds and "gather_ended" in kinds and "check" in kinds
    assert [e["passed"] for e in data["timeline"] if e["kind"] == "check"] == [True]
    heard = Path(data["heard_wav"])
    assert heard.is_file()
    assert heard.is_relative_to(cli.recordings), "the default WAV goes to ARS_RECORDINGS_DIR"


def test_simulate_type_c_wrong_code_three_times_fails(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("simulate", "scenarios/type_c.yaml", "--param", "code=123456",
               "--keys", "111111", "--keys", "654321", "--keys", "123465", "--json")
    assert proc.returncode == 0, output(proc)
    data = json.loads(proc.stdout)
    assert data["outcome"] == "failed"
    assert data["result"] == {"verified": False, "reason": "wrong_code"}
    assert [e["passed"] for e in data["timeline"] if e["kind"] == "check"] == [False] * 3


def test_simulate_without_a_required_parameter_names_it(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("simulate", "scenarios/type_c.yaml", "--keys", "123456")
    assert proc.returncode != 0, output(proc)
    assert "'code'" in proc.stderr, output(proc)
    assert "required" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_simulate_with_a_bad_keys_cue_is_a_usage_error(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("simulate", "scenarios/type_c.yaml", "--param", "code=123456", "--keys", "12x")
    assert proc.returncode == 2, output(proc)
    assert "--keys" in proc.stderr, output(proc)
    assert "0-9" in proc.stderr  # says which keys are allowed
    assert "Traceback" not in proc.stderr


# -- hash-secret -----------------------------------------------------------------------------------
def test_hash_secret_prints_a_salted_sha256_that_verifies(cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("hash-secret", "--salt", "abc", stdin="1234\n")
    assert proc.returncode == 0, output(proc)
    printed = proc.stdout.strip()
    assert re.fullmatch(r"sha256\$abc\$[0-9a-f]{64}", printed), output(proc)
    assert verify_hash("1234", printed)
    assert not verify_hash("1235", printed)
    assert "1234" not in printed


# -- prompts render --------------------------------------------------------------------------------
def test_prompts_render_renders_every_prompt_into_an_empty_cache(
        cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "fresh-cache"
    proc = cli("prompts", "render", env={"ARS_MEDIA_CACHE": str(cache)})
    assert proc.returncode == 0, output(proc)
    summary = re.search(r"(\d+) prompts and clips: (\d+) rendered, (\d+) from cache, "
                        r"(\d+) from recorded files, (\d+) failed", proc.stdout)
    assert summary, output(proc)
    total, rendered, cached, _recorded, failed = map(int, summary.groups())
    assert failed == 0, output(proc)
    assert rendered + cached == total > 0
    assert rendered > 0  # an empty cache: something had to be rendered
    assert str(cache) in proc.stdout
    assert len(list(cache.glob("*.wav"))) == rendered
