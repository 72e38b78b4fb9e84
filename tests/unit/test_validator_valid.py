"""Scenarios written as docs/scenarios.md describes them load without a single error.

The small scenarios each exercise one part of the language (every step kind, every play part,
templates, defaults, ``start`` and ``on_hangup``); the shipped scenarios under ``scenarios/`` are
checked against the real prompt catalogue.
"""

from __future__ import annotations

import textwrap
from collections.abc import Container, Mapping
from pathlib import Path
from typing import Any

import pytest

from ars_engine.errors import ScenarioInvalid
from ars_engine.scenario.loader import load_scenario, load_scenario_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))
PATH = "scenarios/t.yaml"


def scenario(text: str) -> str:
    """The scenario text as written in a test, starting at line 1."""
    return textwrap.dedent(text).lstrip("\n")


def load(text: str, *, prompts: Container[str] | None = None,
         base_dir: Path | None = None) -> Any:
    """Load a scenario that must be valid; on failure, show every error."""
    try:
        return load_scenario_text(scenario(text), PATH, prompts=prompts, base_dir=base_dir)
    except ScenarioInvalid as exc:
        pytest.fail(f"a valid scenario was refused:\n{exc}")


# -- the minimal scenario and the loaded object ----------------------------------------------------
MINIMAL = """
    scenario: t
    params:
      code: {type: secret}
    defaults:
      gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
    steps:
      ask:
        gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered, secret: true}
        on: {ok: verify}
        next: bad
      verify:
        check: {input: entered, equals: code}
        on: {pass: good, fail: bad}
      good:
        finish: {outcome: success}
      bad:
        finish: {outcome: failed}
    """


def test_minimal_scenario_loads_with_name_steps_in_file_order_and_start() -> None:
    loaded = load(MINIMAL)
    assert loaded.name == "t"
    assert isinstance(loaded.steps, Mapping)
    assert list(loaded.steps) == ["ask", "verify", "good", "bad"]
    assert loaded.start == "ask"


def test_single_finish_step_is_a_whole_scenario() -> None:
    loaded = load("""
        scenario: t
        steps:
          done:
            finish: {outcome: success}
        """)
    assert list(loaded.steps) == ["done"]
    assert loaded.start == "done"


def test_start_key_chooses_the_first_step() -> None:
    loaded = load("""
        scenario: t
        start: hello
        steps:
          done:
            finish: {outcome: success}
          hello:
            play: {text: "안녕하세요"}
            next: done
        """)
    assert loaded.start == "hello"


def test_spec_example_loads_with_its_prompts_known() -> None:
    loaded = load("""
        scenario: type_c                         # id: lowercase letters, digits, _
        title: 인증번호 입력 (enter the code shown on screen)
        params:
          code: {type: secret, pattern: '^[0-9]{6}$'}      # required (no default)
          company: {type: text, default: 에이알에스}
        limits: {max_steps: 60, max_seconds: 180}          # optional; defaults 200 steps, 300 s
        defaults:
          gather: {first_digit_timeout: 10, inter_digit_timeout: 5, total_timeout: 40}
        start: intro                                       # optional; default: the first step
        steps:
          intro:
            play: c_intro                                  # a catalogue prompt id
            next: ask
          ask:
            gather:
              prompt: c_enter_code
              digits: 6
              finish_key: "#"
              into: entered
              secret: true
            on: {ok: verify, timeout: again, incomplete: again}
          verify:
            check: {input: entered, equals: code}
            on: {pass: ok, fail: again}
          again:
            retry: {max: 2, prompt: c_wrong_code, again: ask, exhausted: failed}
          ok:
            play: c_success
            next: done
          done:
            finish: {outcome: success, result: {verified: true}}
          failed:
            finish: {outcome: failed, result: {reason: "{last_outcome}"}}
        """, prompts={"c_intro", "c_enter_code", "c_wrong_code", "c_success"})
    assert loaded.name == "type_c"
    assert loaded.start == "intro"
    assert set(loaded.steps) == {"intro", "ask", "verify", "again", "ok", "done", "failed"}


# -- one scenario per part of the language ---------------------------------------------------------
VALID = {
    "play_every_part": """
        scenario: t
        params:
          code: {type: secret}
          bank: {type: text, default: 국민은행}
          amount: {type: amount}
        steps:
          read:
            description: reads every kind of part
            play:
              - prompt: a_code_is
              - digits: "{code}"
              - prompt: a_code_end
              - text: "{bank} 계좌에서 출금됩니다"
              - amount: "{amount}"
              - silence: 500
              - a_bare_prompt_id
            barge_in: true
            next: done
          done:
            finish: {outcome: success}
        """,
    "gather_min_max_and_all_options": """
        scenario: t
        steps:
          ask:
            gather:
              prompt: [{text: "생년월일을 입력해 주세요"}, {silence: 200}]
              min_digits: 6
              max_digits: 8
              finish_key: "#"
              first_digit_timeout: 10
              inter_digit_timeout: 5
              total_timeout: 40
              barge_in: false
              into: birth
              secret: false
            on: {ok: done, timeout: done, incomplete: done}
          done:
            finish: {outcome: success, result: {birth: "{birth}"}}
        """,
    "check_equals_hash_and_pattern": """
        scenario: t
        params:
          code: {type: secret, pattern: '^[0-9]{6}$'}
          pin_hash: {type: hash}
          day: {type: digits, pattern: '^[0-9]{1,2}$', required: false}
        defaults:
          gather: {first_digit_timeout: 10, inter_digit_timeout: 5}
        steps:
          ask_code:
            gather: {prompt: c_enter_code, digits: 6, into: entered, secret: true}
            on: {ok: verify}
            next: failed
          verify:
            check: {input: entered, equals: code}
            on: {pass: ask_pin, fail: failed}
          ask_pin:
            gather:
              prompt: {text: "비밀번호 네 자리를 입력해 주세요"}
              digits: 4
              into: pin
              secret: true
            on: {ok: verify_pin}
            next: failed
          verify_pin:
            check: {input: pin, hash: pin_hash}
            on: {pass: looks_valid, fail: failed}
          looks_valid:
            check: {input: day, pattern: '^(0?[1-9]|[12][0-9]|3[01])$'}
            on: {pass: done, fail: failed}
          done:
            finish: {outcome: success}
          failed:
            finish: {outcome: failed}
        """,
    "check_remote": """
        scenario: t
        params:
          verify_url: {type: text}
        defaults:
          gather: {first_digit_timeout: 10, inter_digit_timeout: 5}
        steps:
          ask:
            gather:
              prompt: {text: "카드 비밀번호 앞 두 자리를 입력해 주세요"}
              digits: 2
              into: card_pw2
              secret: true
            on: {ok: ask_issuer}
            next: failed
          ask_issuer:
            check:
              input: card_pw2
              remote: {url: "{verify_url}", timeout: 5}
            on: {pass: done, fail: failed, error: failed}
          done:
            finish: {outcome: success}
          failed:
            finish: {outcome: failed}
        """,
    "branch_with_default": """
        scenario: t
        defaults:
          gather: {first_digit_timeout: 10, inter_digit_timeout: 5}
        steps:
          ask:
            gather:
              prompt: {text: "동의하시면 1번, 거부하시면 2번을 눌러 주세요"}
              digits: 1
              into: choice
            on: {ok: menu}
            next: invalid
          menu:
            branch:
              var: choice
              cases: {"1": agree, "2": refuse}
              default: invalid
          agree:
            finish: {outcome: success, result: {choice: "{choice}"}}
          refuse:
            finish: {outcome: refused}
          invalid:
            finish: {outcome: failed}
        """,
    "set_record_webhook_and_hangup_then_go_on": """
        scenario: t
        params:
          callback_url: {type: text}
        steps:
          start_rec:
            record: {action: start, name: consent}
            next: consent_text
          consent_text:
            play: {text: "녹취가 시작되었습니다"}
            next: stop_rec
          stop_rec:
            record: stop
            next: remember
          remember:
            set: {consent: agreed, channel: "ars-{scenario}"}
            next: notify
          notify:
            webhook:
              url: "{callback_url}"
              event: consent_given
              data: {consent: "{consent}", channel: "{channel}"}
              timeout: 5
              save: {ticket: ticket_id}
            on: {ok: bye, error: bye}
          bye:
            hangup: {outcome: agreed}
            next: report
          report:
            webhook: {url: "{callback_url}", event: finished, data: {ticket: "{ticket}"}}
            next: done
          done:
            finish: {outcome: success, result: {ticket: "{ticket}"}}
        """,
    "hangup_without_next_ends_the_call": """
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: bye
          bye:
            hangup: {outcome: refused}
        """,
    "on_hangup_steps_count_as_reachable": """
        scenario: t
        params:
          callback_url: {type: text}
        on_hangup: notify_hangup
        steps:
          start_rec:
            record: start
            next: hello
          hello:
            play: {text: "안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
          notify_hangup:
            webhook: {url: "{callback_url}", event: hung_up, data: {call: "{call_id}"}}
            next: hung_up
          hung_up:
            finish: {outcome: hung_up, result: {last: "{last_outcome}"}}
        """,
    "templates_builtins_and_literal_braces": """
        scenario: t
        steps:
          hello:
            play: {text: "{{중괄호}}는 변수가 아닙니다. 통화 {call_id}, 시나리오 {scenario}"}
            next: done
          done:
            finish: {outcome: success, result: {last: "{last_outcome}", scenario: "{scenario}"}}
        """,
    "variable_set_by_a_step_later_in_the_file": """
        scenario: t
        start: remember
        steps:
          hello:
            play: {text: "{greeting} 고객님"}
            next: done
          remember:
            set: {greeting: 안녕하세요}
            next: hello
          done:
            finish: {outcome: success}
        """,
    "limits_at_their_ceilings": """
        scenario: t
        limits: {max_steps: 10000, max_seconds: 3600}
        steps:
          done:
            finish: {outcome: success}
        """,
    "gather_timeouts_in_the_gather": """
        scenario: t
        steps:
          ask:
            gather:
              prompt: {text: "번호를 입력해 주세요"}
              digits: 4
              into: entered
              first_digit_timeout: 5
              inter_digit_timeout: 3
            on: {ok: done}
            next: done
          done:
            finish: {outcome: success}
        """,
    "gather_timeouts_half_in_defaults": """
        scenario: t
        defaults:
          gather: {first_digit_timeout: 5, finish_key: "#", barge_in: false}
        steps:
          ask:
            gather:
              prompt: {text: "번호를 입력해 주세요"}
              max_digits: 8
              into: entered
              inter_digit_timeout: 3
            on: {ok: done}
            next: done
          done:
            finish: {outcome: success}
        """,
    "retry_loop_with_prompt_list": """
        scenario: t
        defaults:
          gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
        steps:
          ask:
            gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered}
            on: {ok: done}
            next: again
          again:
            retry:
              max: 0
              prompt: [{text: "다시 입력해 주세요"}, {silence: 300}]
              again: ask
              exhausted: failed
          done:
            finish: {outcome: success, result: {entered: "{entered}"}}
          failed:
            finish: {outcome: failed}
        """,
}


@pytest.mark.parametrize("text", VALID.values(), ids=VALID.keys())
def test_valid_scenario_loads(text: str) -> None:
    loaded = load(text)
    assert loaded.name == "t"
    assert loaded.start in loaded.steps


# -- prompts and files -----------------------------------------------------------------------------
def test_prompt_ids_are_not_checked_without_a_catalogue() -> None:
    load("""
        scenario: t
        steps:
          hello:
            play: not_in_any_catalogue
            next: done
          done:
            finish: {outcome: success}
        """, prompts=None)


def test_prompt_ids_in_the_catalogue_are_accepted() -> None:
    load("""
        scenario: t
        steps:
          hello:
            play: [known, {prompt: also_known}]
            next: done
          done:
            finish: {outcome: success}
        """, prompts={"known", "also_known"})


def test_file_part_is_found_in_base_dir(tmp_path: Path) -> None:
    (tmp_path / "greeting.wav").write_bytes(b"RIFF")
    load("""
        scenario: t
        steps:
          hello:
            play: {file: greeting.wav}
            next: done
          done:
            finish: {outcome: success}
        """, base_dir=tmp_path)


def test_load_scenario_finds_file_parts_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "greeting.wav").write_bytes(b"RIFF")
    path = tmp_path / "t.yaml"
    path.write_text(scenario("""
        scenario: t
        steps:
          hello:
            play: {file: audio/greeting.wav}
            next: done
          done:
            finish: {outcome: success}
        """), encoding="utf-8")
    loaded = load_scenario(path)
    assert loaded.name == "t"
    assert list(loaded.steps) == ["hello", "done"]


# -- the shipped scenarios -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def catalogue() -> Any:
    from ars_engine.media.catalogue import Catalogue

    return Catalogue.load(ROOT / "prompts" / "ko.yaml")


def test_at_least_seven_scenarios_are_shipped() -> None:
    assert len(SHIPPED) >= 7, [p.name for p in SHIPPED]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_scenario_validates_against_the_catalogue(path: Path, catalogue: Any) -> None:
    try:
        loaded = load_scenario(path, prompts=catalogue)
    except ScenarioInvalid as exc:
        pytest.fail(f"{path.name} is invalid:\n{exc}")
    assert loaded.steps
    assert loaded.start in loaded.steps
