"""Property: a random scenario graph either fails validation or terminates within its bounds.

Graphs are drawn from every step kind with random (sometimes dangling) targets, so many are
invalid; the valid ones run on the simulated channel with random keys and hang-ups.
"""

from __future__ import annotations

import asyncio

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ars_engine.errors import ScenarioInvalid
from ars_engine.media.clip import Clip
from ars_engine.scenario.interpreter import Interpreter
from ars_engine.scenario.loader import load_scenario_text
from ars_engine.scenario.steps.retry import Retry
from ars_engine.telephony.simulated import KeyCue, KeyScript, SimulatedChannel


class SilentMedia:
    """Media stand-in: every prompt is 400 ms of silence (the property is about control flow)."""

    class _Catalogue:
        def text(self, prompt_id: str) -> str:
            return prompt_id

    catalogue = _Catalogue()
    _clip = Clip.from_pcm(bytes(400 * 16))

    def prompt(self, prompt_id: str) -> Clip:
        return self._clip

    def tts(self, text: str) -> Clip:
        return self._clip

    def digits(self, digits: str) -> tuple[Clip, ...]:
        return (self._clip,) * len(digits)

    def amount(self, won: int) -> tuple[Clip, ...]:
        return (self._clip,)

    def silence(self, ms: int) -> Clip:
        return self._clip

    def file(self, path: object) -> Clip:
        return self._clip


MEDIA = SilentMedia()
KINDS = ("play", "gather", "check", "retry", "branch", "set", "finish", "hangup", "record")
FLOWING_KINDS = tuple(k for k in KINDS if k not in ("finish", "hangup"))


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict, int]:
    n = draw(st.integers(1, 7))
    ids = [f"s{i}" for i in range(n)]
    wild = draw(st.booleans())  # wild graphs may point anywhere, even at missing steps
    steps: dict[str, dict] = {}
    for i, sid in enumerate(ids):
        forward = [*ids[i + 1:], "end"]
        anywhere = [*ids, "end", "nowhere"] if wild else [*ids, "end"]
        # Mostly the next step, so most graphs are connected and reach the validator's deeper
        # checks; sometimes further on, or (wild) anywhere.
        target = st.one_of(st.just(forward[0]), st.just(forward[0]), st.sampled_from(forward),
                           *([st.sampled_from(anywhere)] if wild else []))
        kind = draw(st.sampled_from(KINDS if i == n - 1 or wild else FLOWING_KINDS))
        step: dict = {}
        if kind == "play":
            step["play"] = {"text": "안내 말씀"}
            step["next"] = draw(target)
        elif kind == "gather":
            step["gather"] = {"prompt": {"text": "입력"}, "digits": draw(st.integers(1, 3)),
                              "into": "entered"}
            step["on"] = {"ok": draw(target)}
            step["next"] = draw(target)
        elif kind == "check":
            step["check"] = {"input": "entered", "pattern": "1+"}
            step["on"] = {"pass": draw(target), "fail": draw(target)}
        elif kind == "retry":
            step["retry"] = {"max": draw(st.integers(0, 3)),
                             "again": draw(st.sampled_from(ids[: i + 1])),
                             "exhausted": draw(target)}
        elif kind == "branch":
            step["branch"] = {"var": "entered", "cases": {"1": draw(target)},
                              "default": draw(target)}
        elif kind == "set":
            step["set"] = {"entered": draw(st.sampled_from(["1", "2", "{entered}"]))}
            step["next"] = draw(target)
        elif kind == "record":
            step["record"] = draw(st.sampled_from(["start", "stop"]))
            step["next"] = draw(target)
        elif kind == "hangup":
            step["hangup"] = {"outcome": "bye"}
        else:
            step["finish"] = {"outcome": "done"}
        steps[sid] = step
    max_steps = draw(st.sampled_from([5, 10_000]))
    doc = {
        "scenario": "random",
        "limits": {"max_steps": max_steps, "max_seconds": 3600},
        "defaults": {"gather": {"first_digit_timeout": 2, "inter_digit_timeout": 1}},
        "steps": steps,
    }
    # `entered` must exist before any use: the first step sets it.
    doc["steps"] = {"init": {"set": {"entered": "0"}, "next": "s0"}, **steps,
                    "end": {"finish": {"outcome": "done"}}}
    return doc, max_steps


cues = st.lists(st.sampled_from(["1", "11", "2", "", "111", "@0.3=1"]), max_size=6)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), cues, st.one_of(st.none(), st.floats(0.1, 30)))
def test_random_graph_is_rejected_or_terminates_within_bounds(
        drawn: tuple[dict, int], keys: list[str], hangup_at: float | None) -> None:
    doc, max_steps = drawn
    try:
        scenario = load_scenario_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False))
    except ScenarioInvalid as exc:
        assert exc.errors, "an invalid scenario names at least one problem"
        event("rejected by the validator")
        return
    event("valid: ran")
    retries = sum(s.max for s in scenario.steps.values() if isinstance(s, Retry))
    # Every loop passes through a counted retry edge: between two such edges a path is
    # acyclic, so no run can take more steps than this, whatever the callee does.
    structural_bound = (retries + 1) * len(scenario.steps) + 1
    script = KeyScript([KeyCue(k) if not k.startswith("@") else KeyCue("1", at=0.3)
                        for k in keys], hangup_at)
    channel = SimulatedChannel(script, capture_audio=False)
    result = asyncio.run(Interpreter(scenario, MEDIA).run(channel, {}))
    assert result.outcome and result.outcome != "error", result.error
    assert result.steps <= min(max_steps, structural_bound)
    assert result.duration_ms <= scenario.max_seconds * 1000
    if max_steps >= structural_bound:
        assert result.outcome != "limit_exceeded"
    assert not channel.is_up, "every run ends with the line down"
