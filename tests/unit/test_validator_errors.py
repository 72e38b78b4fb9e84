"""Every problem of the "Validator errors" table in docs/scenarios.md, reported where written.

Each test loads a small scenario that is valid but for one mistake and checks the error's code, the
line (and, where it is the start of a key or of a plain scalar, the column) and its printed form
``path:line:column: message [code]``. Lines and columns are computed from the scenario text with
:func:`at` / :func:`step_lines`, so the expected place is the text the test shows, not a number to
keep in sync by hand.
"""

from __future__ import annotations

import textwrap
from collections.abc import Container
from pathlib import Path

import pytest

from ars_engine.errors import ScenarioError, ScenarioInvalid
from ars_engine.scenario.loader import load_scenario, load_scenario_text

PATH = "scenarios/t.yaml"


# -- helpers ---------------------------------------------------------------------------------------
def scenario(text: str) -> str:
    """The scenario text as written in a test, starting at line 1."""
    return textwrap.dedent(text).lstrip("\n")


def errors_of(text: str, *, prompts: Container[str] | None = None,
              base_dir: Path | None = None) -> list[ScenarioError]:
    """The errors the loader reports for ``text`` (which must be refused)."""
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario_text(text, PATH, prompts=prompts, base_dir=base_dir)
    errors = list(caught.value.errors)
    assert errors, "ScenarioInvalid raised without any error"
    assert all(isinstance(e, ScenarioError) for e in errors)
    return errors


def show(errors: list[ScenarioError]) -> str:
    return "\n".join(str(e) for e in errors)


def only(errors: list[ScenarioError], code: str) -> ScenarioError:
    """The single error of a scenario that is valid but for one mistake."""
    assert [e.code for e in errors] == [code], show(errors)
    return errors[0]


def one_of(errors: list[ScenarioError], code: str, *, tolerated: set[str]) -> ScenarioError:
    """The single error with ``code``; other errors are allowed only with ``tolerated`` codes
    (consequences of the same mistake, e.g. a step left without a transition)."""
    matching = [e for e in errors if e.code == code]
    assert len(matching) == 1, show(errors)
    others = {e.code for e in errors} - {code}
    assert others <= tolerated, show(errors)
    return matching[0]


def at(text: str, needle: str, *, after: str | None = None) -> tuple[int, int]:
    """1-based (line, column) of the first ``needle`` in ``text`` (after ``after``, if given)."""
    start = 0 if after is None else text.index(after) + len(after)
    index = text.index(needle, start)
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, column


def step_line(text: str, step_id: str) -> int:
    """The line of a step's id key (block style, two spaces under ``steps:``)."""
    lines = text.splitlines()
    first = lines.index("steps:") + 1
    for number, line in enumerate(lines[first:], first + 1):
        if line == f"  {step_id}:":
            return number
    raise AssertionError(f"no step {step_id!r} in the test scenario")


def step_lines(text: str, step_id: str, *kinds: str) -> set[int]:
    """The lines of a step's id key and of its kind key(s): where step-level errors may point."""
    first = step_line(text, step_id)
    lines = text.splitlines()
    found = {first}
    for kind in kinds:
        for number, line in enumerate(lines[first:], first + 1):
            if line.lstrip().startswith(f"{kind}:"):
                found.add(number)
                break
        else:
            raise AssertionError(f"no key {kind!r} in step {step_id!r}")
    return found


def assert_at(err: ScenarioError, line: int, column: int | None = None) -> None:
    """``err`` points at ``line`` (and ``column``), printed as path:line:column: message [code]."""
    assert err.path == PATH, str(err)
    assert err.line == line, str(err)
    if column is not None:
        assert err.column == column, str(err)
    assert err.column >= 1, str(err)
    assert err.message, str(err)
    assert str(err).startswith(f"{PATH}:{line}:{err.column}: "), str(err)
    assert str(err) == f"{PATH}:{err.line}:{err.column}: {err.message} [{err.code}]"


def assert_on(err: ScenarioError, lines: set[int]) -> None:
    """``err`` points at one of ``lines`` (a step's id key or its kind key)."""
    assert err.line in lines, f"{err} (expected one of lines {sorted(lines)})"
    assert_at(err, err.line)


# -- yaml-syntax, wrong-type, invalid-value --------------------------------------------------------
def test_yaml_syntax_error_is_reported_at_the_parser_mark() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: prompt: intro
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "yaml-syntax")
    assert_at(err, at(text, "play: prompt: intro")[0])


def test_wrong_type_says_which_type_was_expected() -> None:
    text = scenario("""
        scenario: t
        limits:
          max_steps: lots
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "wrong-type")
    assert_at(err, *at(text, "lots"))
    assert "number" in err.message


def test_document_that_is_not_a_mapping_is_a_wrong_type() -> None:
    text = scenario("""
        - scenario: t
        - steps: {}
        """)
    err = only(errors_of(text), "wrong-type")
    assert_at(err, 1, 1)


def test_unquoted_template_read_as_a_mapping_is_a_wrong_type_with_a_hint() -> None:
    text = scenario("""
        scenario: t
        params:
          name: {type: text}
        steps:
          hello:
            play:
              - text: {name}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "wrong-type")
    assert_at(err, at(text, "- text: {name}")[0])
    assert "quote" in err.message.lower()


GATHER_WITH = """
    scenario: t
    defaults:
      gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
    steps:
      ask:
        gather:
          prompt: {text: "번호를 입력해 주세요"}
          %s
          into: entered
        on: {ok: done}
        next: failed
      done:
        finish: {outcome: success}
      failed:
        finish: {outcome: failed}
    """


def gather_with(lines: str) -> str:
    """A valid gather scenario with ``lines`` (block keys, 6 spaces deep) inside the gather."""
    body = textwrap.indent(textwrap.dedent(lines).strip("\n"), " " * 6).lstrip()
    return scenario(GATHER_WITH) % body


def test_negative_timeout_is_an_invalid_value() -> None:
    text = gather_with("""
        digits: 4
        inter_digit_timeout: -2
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, *at(text, "-2"))


def test_min_digits_above_max_digits_is_an_invalid_value() -> None:
    text = gather_with("""
        min_digits: 6
        max_digits: 4
        """)
    err = only(errors_of(text), "invalid-value")
    assert_on(err, {at(text, "min_digits")[0], at(text, "max_digits")[0]})


def test_finish_key_that_is_not_a_dtmf_key_is_an_invalid_value() -> None:
    text = gather_with("""
        digits: 4
        finish_key: x
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, *at(text, "x", after="finish_key: "))


def test_bad_regular_expression_is_an_invalid_value() -> None:
    text = scenario("""
        scenario: t
        params:
          code:
            type: secret
            pattern: '^[0-9('
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, at(text, "pattern:")[0])


def test_negative_retry_max_is_an_invalid_value() -> None:
    text = scenario("""
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
              max: -1
              again: ask
              exhausted: failed
          done:
            finish: {outcome: success}
          failed:
            finish: {outcome: failed}
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, *at(text, "-1"))


def test_limit_above_its_ceiling_is_an_invalid_value() -> None:
    text = scenario("""
        scenario: t
        limits:
          max_steps: 20000
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, *at(text, "20000"))


def test_scenario_id_with_capitals_and_dashes_is_an_invalid_value() -> None:
    text = scenario("""
        scenario: Type-C
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "invalid-value")
    assert_at(err, *at(text, "Type-C"))


# -- keys ------------------------------------------------------------------------------------------
def test_missing_required_key_in_a_step_is_reported_on_that_step() -> None:
    text = scenario("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          verify:
            check: {equals: code}
            on: {pass: good, fail: bad}
          good:
            finish: {outcome: success}
          bad:
            finish: {outcome: failed}
        """)
    err = only(errors_of(text), "missing-key")
    assert_on(err, step_lines(text, "verify", "check"))
    assert "input" in err.message


def test_missing_scenario_id_is_reported_at_the_top() -> None:
    text = scenario("""
        title: 테스트
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "missing-key")
    assert_at(err, 1)
    assert "scenario" in err.message


def test_missing_steps_is_reported() -> None:
    text = scenario("""
        scenario: t
        title: 테스트
        """)
    err = only(errors_of(text), "missing-key")
    assert_at(err, 1)
    assert "steps" in err.message


def test_misspelt_gather_key_is_reported_with_suggestion() -> None:
    text = gather_with("""
        digits: 4
        fisrt_digit_timeout: 10
        """)
    err = only(errors_of(text), "unknown-key")
    assert_at(err, *at(text, "fisrt_digit_timeout"))
    assert "first_digit_timeout" in err.message


def test_misspelt_step_key_is_reported_with_suggestion() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            nxet: done
          done:
            finish: {outcome: success}
        """)
    # Without `next` the step also lacks a transition and `done` is unreachable: consequences of the
    # same typo, which the validator may report too.
    err = one_of(errors_of(text), "unknown-key",
                 tolerated={"missing-transition", "unreachable-step"})
    assert_at(err, *at(text, "nxet"))
    assert "next" in err.message


def test_misspelt_top_level_key_is_reported_with_suggestion() -> None:
    text = scenario("""
        scenario: t
        titel: 테스트
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "unknown-key")
    assert_at(err, *at(text, "titel"))
    assert "title" in err.message


def test_key_given_twice_is_reported_at_the_second() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: done
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "duplicate-key")
    second = at(text, "next: done", after="next: done")
    assert_at(err, *second)


def test_step_id_given_twice_is_a_duplicate_step_at_the_second() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: done
          hello:
            play: {text: "반갑습니다"}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "duplicate-step")
    assert_at(err, *at(text, "hello:", after="hello:"))
    assert err.column == 3


# -- step kinds ------------------------------------------------------------------------------------
def test_unknown_step_kind_is_reported_with_suggestion() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            plya: {text: "안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "unknown-step-kind")
    assert_on(err, step_lines(text, "hello", "plya"))
    assert "play" in err.message


def test_step_of_unknown_kind_is_still_a_known_target() -> None:
    # `bye` exists: the one problem is its kind, not the transition that leads to it.
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: bye
          bye:
            plya: {text: "안녕히 계세요"}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "unknown-step-kind")
    assert_on(err, step_lines(text, "bye", "plya"))


def test_step_with_two_kinds_is_reported() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {text: "안녕하세요"}
            set: {greeting: hello}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "multiple-step-kinds")
    assert_on(err, step_lines(text, "hello", "play", "set"))


# -- transitions and the step graph ----------------------------------------------------------------
def test_transition_to_a_missing_step_is_an_unknown_target() -> None:
    text = scenario("""
        scenario: t
        defaults:
          gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
        steps:
          ask:
            gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered}
            on:
              ok: done
              timeout: fialed
            next: failed
          done:
            finish: {outcome: success}
          failed:
            finish: {outcome: failed}
        """)
    err = only(errors_of(text), "unknown-target")
    assert_at(err, *at(text, "fialed"))


def test_branch_case_to_a_missing_step_is_an_unknown_target() -> None:
    text = scenario("""
        scenario: t
        params:
          choice: {type: digits}
        steps:
          menu:
            branch:
              var: choice
              cases:
                "1": agree
                "2": refsue
              default: agree
          agree:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "unknown-target")
    assert_at(err, *at(text, "refsue"))


def test_gather_outcomes_without_a_target_are_missing_transitions() -> None:
    text = scenario("""
        scenario: t
        defaults:
          gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
        steps:
          ask:
            gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered}
            on: {ok: done}
          done:
            finish: {outcome: success}
        """)
    errors = errors_of(text)
    assert {e.code for e in errors} == {"missing-transition"}, show(errors)
    for err in errors:
        assert_on(err, step_lines(text, "ask", "gather"))
    said = " ".join(e.message for e in errors)
    assert "timeout" in said
    assert "incomplete" in said


def test_step_no_path_reaches_is_unreachable() -> None:
    text = scenario("""
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
        """)
    err = only(errors_of(text), "unreachable-step")
    assert_at(err, step_line(text, "orphan"), 3)


def test_loop_of_plain_next_transitions_is_an_unbounded_cycle() -> None:
    text = scenario("""
        scenario: t
        steps:
          a:
            play: {text: "하나"}
            next: b
          b:
            play: {text: "둘"}
            next: a
        """)
    err = only(errors_of(text), "unbounded-cycle")
    assert_on(err, {step_line(text, "a"), step_line(text, "b")})
    assert err.column == 3


def test_same_loop_through_a_retry_again_is_valid() -> None:
    text = scenario("""
        scenario: t
        steps:
          a:
            play: {text: "하나"}
            next: b
          b:
            retry: {max: 2, again: a, exhausted: done}
          done:
            finish: {outcome: success}
        """)
    scenario_ = load_scenario_text(text, PATH)
    assert set(scenario_.steps) == {"a", "b", "done"}


# -- prompts and files -----------------------------------------------------------------------------
def test_prompt_id_missing_from_the_catalogue_is_an_unknown_prompt() -> None:
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: known
            next: bye
          bye:
            play: unknwon
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text, prompts={"known"}), "unknown-prompt")
    assert_at(err, *at(text, "unknwon"))


def test_gather_prompt_missing_from_the_catalogue_is_an_unknown_prompt() -> None:
    text = scenario("""
        scenario: t
        defaults:
          gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
        steps:
          ask:
            gather:
              prompt:
                - prompt: known
                - prompt: c_enter_cod
              digits: 4
              into: entered
            on: {ok: done}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text, prompts={"known"}), "unknown-prompt")
    assert_at(err, *at(text, "c_enter_cod"))


def test_file_part_that_does_not_exist_is_a_missing_file(tmp_path: Path) -> None:
    (tmp_path / "present.wav").write_bytes(b"RIFF")
    text = scenario("""
        scenario: t
        steps:
          hello:
            play: {file: present.wav}
            next: bye
          bye:
            play: {file: absent.wav}
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text, base_dir=tmp_path), "missing-file")
    assert_at(err, at(text, "absent.wav")[0])


# -- variables and parameters ----------------------------------------------------------------------
def test_undeclared_variable_in_text_is_reported() -> None:
    text = scenario("""
        scenario: t
        params:
          name: {type: text}
        steps:
          hello:
            play:
              - text: "{nmae} 고객님 안녕하세요"
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "undeclared-variable")
    assert_at(err, at(text, "{nmae}")[0])
    assert "nmae" in err.message


def test_undeclared_variable_in_webhook_data_is_reported() -> None:
    text = scenario("""
        scenario: t
        steps:
          notify:
            webhook:
              url: "https://core.example/hooks"
              event: started
              data:
                choice: "{choice}"
            on: {ok: done, error: done}
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "undeclared-variable")
    assert_at(err, at(text, '"{choice}"')[0])
    assert "choice" in err.message


def test_undeclared_check_input_is_reported() -> None:
    text = scenario("""
        scenario: t
        steps:
          looks_valid:
            check:
              input: day
              pattern: '^[0-9]{1,2}$'
            on: {pass: done, fail: done}
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "undeclared-variable")
    assert_at(err, *at(text, "day"))


def test_parameter_type_outside_the_five_is_an_unknown_param_type() -> None:
    text = scenario("""
        scenario: t
        params:
          name:
            type: string
        steps:
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "unknown-param-type")
    assert_at(err, *at(text, "string"))


# -- secrets ---------------------------------------------------------------------------------------
def test_secret_in_tts_text_is_refused() -> None:
    text = scenario("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          read:
            play:
              - text: "인증번호는 {code} 입니다"
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "secret-in-tts")
    assert_at(err, at(text, "{code}")[0])


def test_variable_set_from_a_secret_stays_secret_in_tts_text() -> None:
    text = scenario("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          remember:
            set: {spoken: "코드 {code}"}
            next: read
          read:
            play:
              - text: "{spoken} 입니다"
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "secret-in-tts")
    assert_at(err, at(text, '"{spoken} 입니다"')[0])


SECRET_IN_OUTPUT = {
    "finish_result": ("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          done:
            finish:
              outcome: success
              result:
                code: "{code}"
        """, '"{code}"'),
    "webhook_data": ("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          notify:
            webhook:
              url: "https://core.example/hooks"
              event: entered
              data:
                code: "{code}"
            next: done
          done:
            finish: {outcome: success}
        """, '"{code}"'),
    "webhook_url": ("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          notify:
            webhook:
              url: "https://core.example/hooks/{code}"
              event: entered
            next: done
          done:
            finish: {outcome: success}
        """, "https://core.example/hooks/{code}"),
    "branch_var": ("""
        scenario: t
        params:
          code: {type: secret}
        steps:
          menu:
            branch:
              var: code
              cases: {"1234": done}
              default: done
          done:
            finish: {outcome: success}
        """, "var: code"),
}


@pytest.mark.parametrize(("source", "value"), SECRET_IN_OUTPUT.values(),
                         ids=SECRET_IN_OUTPUT.keys())
def test_secret_in_output_is_refused(source: str, value: str) -> None:
    text = scenario(source)
    err = only(errors_of(text), "secret-in-output")
    assert_at(err, at(text, value)[0])


@pytest.mark.parametrize("compare", ["equals: code", "hash: pin_hash"])
def test_gather_compared_with_a_secret_must_be_secret(compare: str) -> None:
    text = scenario("""
        scenario: t
        params:
          code: {type: secret}
          pin_hash: {type: hash}
        defaults:
          gather: {first_digit_timeout: 5, inter_digit_timeout: 3}
        steps:
          ask:
            gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered}
            on: {ok: verify}
            next: bad
          verify:
            check: {input: entered, COMPARE}
            on: {pass: good, fail: bad}
          good:
            finish: {outcome: success}
          bad:
            finish: {outcome: failed}
        """).replace("COMPARE", compare)
    err = only(errors_of(text), "secret-input-unmasked")
    assert_on(err, step_lines(text, "ask", "gather"))


# -- gather timeouts -------------------------------------------------------------------------------
GATHER_NO_DEFAULTS = """
    scenario: t
    steps:
      ask:
        gather: {prompt: {text: "번호를 입력해 주세요"}, digits: 4, into: entered%s}
        on: {ok: done}
        next: done
      done:
        finish: {outcome: success}
    """


def test_gather_without_timeouts_is_reported() -> None:
    text = scenario(GATHER_NO_DEFAULTS % "")
    err = only(errors_of(text), "gather-without-timeouts")
    assert_on(err, step_lines(text, "ask", "gather"))


def test_gather_with_only_a_first_digit_timeout_is_reported() -> None:
    text = scenario(GATHER_NO_DEFAULTS % ", first_digit_timeout: 5")
    err = only(errors_of(text), "gather-without-timeouts")
    assert_on(err, step_lines(text, "ask", "gather"))


def test_gather_timeouts_from_defaults_make_the_gather_valid() -> None:
    defaults = "defaults:\n  gather: {first_digit_timeout: 5, inter_digit_timeout: 3}\n"
    text = scenario(GATHER_NO_DEFAULTS % "").replace("steps:\n", defaults + "steps:\n")
    scenario_ = load_scenario_text(text, PATH)
    assert scenario_.start == "ask"


# -- types -----------------------------------------------------------------------------------------
def test_amount_part_of_a_text_parameter_is_a_type_mismatch() -> None:
    text = scenario("""
        scenario: t
        params:
          name: {type: text}
        steps:
          read:
            play:
              - amount: "{name}"
            next: done
          done:
            finish: {outcome: success}
        """)
    err = only(errors_of(text), "type-mismatch")
    assert_at(err, at(text, '"{name}"')[0])


def test_check_hash_of_a_non_hash_parameter_is_a_type_mismatch() -> None:
    text = scenario("""
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
            check:
              input: entered
              hash: code
            on: {pass: good, fail: bad}
          good:
            finish: {outcome: success}
          bad:
            finish: {outcome: failed}
        """)
    err = only(errors_of(text), "type-mismatch")
    assert_at(err, *at(text, "code", after="hash: "))


# -- several errors, files -------------------------------------------------------------------------
def test_all_independent_errors_are_reported_in_line_order() -> None:
    text = scenario("""
        scenario: t
        titel: 테스트
        params:
          code: {type: string}
        limits: {max_steps: 20000}
        steps:
          hello:
            play: nope
            next: done
          done:
            finish: {outcome: success}
        """)
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario_text(text, PATH, prompts={"known"})
    errors = caught.value.errors
    assert [(e.code, e.line) for e in errors] == [
        ("unknown-key", at(text, "titel")[0]),
        ("unknown-param-type", at(text, "string")[0]),
        ("invalid-value", at(text, "20000")[0]),
        ("unknown-prompt", at(text, "nope")[0]),
    ], show(errors)
    assert [e.line for e in errors] == sorted(e.line for e in errors)
    for err in errors:
        assert str(err) in str(caught.value)


def test_unreachable_step_is_reported_alongside_unrelated_errors() -> None:
    # The step graph is sound; a typo elsewhere must not hide the unreachable step.
    text = scenario("""
        scenario: t
        titel: 테스트
        steps:
          hello:
            play: {text: "안녕하세요"}
            next: done
          orphan:
            finish: {outcome: failed}
          done:
            finish: {outcome: success}
        """)
    errors = errors_of(text)
    assert [(e.code, e.line) for e in errors] == [
        ("unknown-key", at(text, "titel")[0]),
        ("unreachable-step", step_line(text, "orphan")),
    ], show(errors)


def test_errors_of_a_file_name_that_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(scenario("""
        scenario: t
        steps:
          hello:
            plya: {text: "안녕하세요"}
            next: done
          done:
            finish: {outcome: success}
        """), encoding="utf-8")
    with pytest.raises(ScenarioInvalid) as caught:
        load_scenario(path)
    err = only(caught.value.errors, "unknown-step-kind")
    assert err.path == str(path)
    assert err.line in {3, 4}
    assert str(err).startswith(f"{path}:{err.line}:{err.column}: ")
