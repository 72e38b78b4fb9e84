"""A scenario's flow as a graph: steps and the transitions between them, drawn as inline SVG.

:func:`scenario_graph` reads a validated :class:`Scenario` (whose ``step.transitions`` map every
outcome of a step to its next step, ``next:`` and the targets written inside ``branch`` and
``retry`` resolved) into a :class:`Graph`. Outcomes of a step that lead to the same step are one
edge whose label names them all. :func:`render_svg` draws it top-down (layout in
:mod:`.graph_layout`), and :func:`graph_text` lists the same transitions as text, for screen
readers and as a fallback table.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..scenario.parts import AmountPart, DigitsPart, FilePart, Part, PromptPart, TextPart
from ..scenario.steps.branch import Branch
from ..scenario.steps.check import Check
from ..scenario.steps.finish import Finish, Hangup
from ..scenario.steps.gather import Gather
from ..scenario.steps.record import Record
from ..scenario.steps.retry import Retry
from ..scenario.steps.setvar import SetVariables
from ..scenario.steps.webhook import Webhook
from .graph_draw import draw

if TYPE_CHECKING:
    from ..scenario.model import Scenario
    from ..scenario.steps.base import Step

DETAIL_CHARS = 26

# outcome → edge label, per step kind (an outcome not listed is shown as it is)
_OUTCOME_LABELS: dict[str, dict[str, str]] = {
    "gather": {"ok": "keys", "timeout": "no input", "incomplete": "too few keys"},
    "retry": {"exhausted": "exhausted"},
    "webhook": {"ok": "ok", "error": "error"},
    "check": {"pass": "pass", "fail": "fail", "error": "error"},
}


@dataclass(frozen=True, slots=True)
class GraphNode:
    """A step: ``kind`` is its YAML key; ``detail`` a short description; ``outcome`` the call's
    outcome for finish and hangup steps."""

    id: str
    kind: str
    detail: str = ""
    outcome: str | None = None
    entry: str | None = None  # "start" or "on hangup" when the flow begins here


@dataclass(frozen=True, slots=True)
class GraphEdge:
    """One transition (or several outcomes of a step that go to the same next step)."""

    source: str
    target: str
    label: str
    outcomes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Graph:
    name: str
    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    start: str
    on_hangup: str | None = None


def scenario_graph(scenario: Scenario) -> Graph:
    """The steps of ``scenario`` (file order) and every transition between them."""
    nodes = []
    edges: list[GraphEdge] = []
    for step in scenario.steps.values():
        entry = "start" if step.id == scenario.start else (
            "on hangup" if step.id == scenario.on_hangup else None)
        outcome = step.outcome if isinstance(step, Finish) else (
            (step.outcome or "hangup") if isinstance(step, Hangup) and not step.has_next
            else None)
        nodes.append(GraphNode(step.id, step.kind, step_detail(step), outcome, entry))
        by_target: dict[str, list[str]] = {}
        for step_outcome, target in step.transitions.items():
            by_target.setdefault(target, []).append(step_outcome)
        for target, outcomes in by_target.items():
            label = " / ".join(outcome_label(step, o) for o in outcomes)
            edges.append(GraphEdge(step.id, target, label, tuple(outcomes)))
    return Graph(scenario.name, tuple(nodes), tuple(edges), scenario.start, scenario.on_hangup)


def outcome_label(step: Step, outcome: str) -> str:
    """How the edge for ``outcome`` of ``step`` is labelled."""
    if len(step.outcomes()) == 1:
        return "next"
    if isinstance(step, Branch):
        if outcome == "default":
            return "otherwise"
        value = outcome.removeprefix("case ")
        return f"{step.var} = {value}" if step.var else f"= {value}"
    if isinstance(step, Retry) and outcome == "again":
        return f"retry (max {step.max})"
    return _OUTCOME_LABELS.get(step.kind, {}).get(outcome, outcome)


def step_detail(step: Step) -> str:
    """A short description of what a step does (no secret: parameters are named, never
    shown)."""
    detail = ""
    if isinstance(step, Finish):
        detail = f"outcome: {step.outcome}"
    elif isinstance(step, Hangup):
        detail = f"outcome: {step.outcome or 'hangup'}" if not step.has_next else ""
    elif isinstance(step, Gather):
        count = (f"{step.max_digits}" if step.min_digits == step.max_digits
                 else f"{step.min_digits}–{step.max_digits}")
        detail = f"{count} digit{'s' if step.max_digits > 1 else ''}"
        if step.finish_key:
            detail += f", end {step.finish_key}"
        if step.secret:
            detail += ", secret"
    elif isinstance(step, Check):
        detail = f"{step.mode} {step.against}" if step.against else step.mode
    elif isinstance(step, Branch):
        detail = f"on {step.var}" if step.var else ""
    elif isinstance(step, Retry):
        detail = f"max {step.max}"
    elif isinstance(step, SetVariables):
        detail = ", ".join(step.values)
    elif isinstance(step, Record):
        detail = f"{step.action} {step.name}" if step.action == "start" else "stop"
    elif isinstance(step, Webhook):
        detail = step.event_name
    else:
        parts: tuple[Part, ...] = getattr(step, "parts", ())
        detail = " + ".join(_part_name(p) for p in parts)
    return detail if len(detail) <= DETAIL_CHARS else detail[: DETAIL_CHARS - 1] + "…"


def _part_name(part: Part) -> str:
    if isinstance(part, PromptPart):
        return part.prompt_id
    if isinstance(part, TextPart):
        return "text"
    if isinstance(part, DigitsPart):
        return "digits"
    if isinstance(part, AmountPart):
        return "amount"
    if isinstance(part, FilePart):
        return part.path.name
    return "silence"


def graph_text(graph: Graph) -> list[str]:
    """Every transition as a line ``from —label→ to``, in step order."""
    return [f"{e.source} —{e.label}→ {e.target}" for e in graph.edges]


def describe(graph: Graph) -> str:
    """A few sentences summing up the flow (the drawing's ``<desc>``)."""
    kinds = Counter(n.kind for n in graph.nodes)
    counted = ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
    sentences = [f"Flow of scenario {graph.name}: {len(graph.nodes)} steps ({counted}) and "
                 f"{len(graph.edges)} transitions.", f"It starts at {graph.start}."]
    if graph.on_hangup:
        sentences.append(f"When the callee hangs up it goes to {graph.on_hangup}.")
    ends: dict[str, list[str]] = {}
    for node in graph.nodes:
        if node.outcome is not None:
            ends.setdefault(node.outcome, []).append(node.id)
    if ends:
        sentences.append("It ends with " + "; ".join(
            f"{outcome} ({', '.join(ids)})" for outcome, ids in ends.items()) + ".")
    kinds_of = {n.id: n.kind for n in graph.nodes}
    loops = [e for e in graph.edges if kinds_of[e.source] == "retry" and "again" in e.outcomes]
    if loops:
        sentences.append("Retries: " + "; ".join(
            f"{e.source} goes back to {e.target}, {e.label}" for e in loops) + ".")
    return " ".join(sentences)


def render_svg(graph: Graph, *, title: str) -> str:
    """The flow drawn top-down as an accessible inline ``<svg>`` (role img, title, desc)."""
    return draw(graph, title=title, summary=describe(graph))


__all__ = ["Graph", "GraphEdge", "GraphNode", "describe", "graph_text", "outcome_label",
           "render_svg", "scenario_graph", "step_detail"]
