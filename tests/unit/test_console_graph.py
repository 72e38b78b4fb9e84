"""The scenario graph of the console: every step and transition of the shipped scenarios is drawn,
as well-formed, accessible SVG whose text stays inside its viewBox and is readable."""

from __future__ import annotations

import re
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from ars_engine.console import svgkit
from ars_engine.console.graph import (
    Graph,
    GraphEdge,
    GraphNode,
    graph_text,
    outcome_label,
    render_svg,
    scenario_graph,
)
from ars_engine.console.graph_draw import KIND_COLOURS, LABEL_BG
from ars_engine.console.graph_layout import (
    assign_layers,
    count_crossings,
    find_back_edges,
    place_row,
)
from ars_engine.media.catalogue import Catalogue
from ars_engine.scenario.loader import load_scenario, load_scenario_text
from ars_engine.scenario.model import Scenario
from ars_engine.scenario.validate import _edges
from tests.conftest import PROMPTS, SCENARIOS

SVG = "{http://www.w3.org/2000/svg}"
SHIPPED = sorted(SCENARIOS.glob("*.yaml"))


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return Catalogue.load(PROMPTS / "ko.yaml")


def load(path: Path, catalogue: Catalogue) -> Scenario:
    return load_scenario(path, prompts=catalogue)


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_all_seven_scenarios_are_shipped() -> None:
    assert len(SHIPPED) == 7


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_step_and_every_transition_is_in_the_graph(path: Path,
                                                          catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    graph = scenario_graph(scenario)
    assert [n.id for n in graph.nodes] == list(scenario.steps)
    drawn = {(e.source, e.target) for e in graph.edges}
    lines = graph_text(graph)
    for step in scenario.steps.values():
        for target in _edges(step, bounded=False):
            assert (step.id, target) in drawn
            assert any(line.startswith(f"{step.id} —") and line.endswith(f"→ {target}")
                       for line in lines)
    assert len(lines) == len(graph.edges) == len(drawn)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_svg_is_well_formed_and_shows_every_step_and_edge(path: Path,
                                                          catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    graph = scenario_graph(scenario)
    root = parse(render_svg(graph, title=f"{scenario.name}: {scenario.title}"))
    steps = {g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")}
    assert steps == set(scenario.steps)
    edge_titles = {t.text for p in root.iter(f"{SVG}path") for t in p.findall(f"{SVG}title")}
    for edge in graph.edges:
        assert f"{edge.source} → {edge.target}: {edge.label}" in edge_titles


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_svg_is_accessible(path: Path, catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    root = parse(render_svg(scenario_graph(scenario), title=scenario.title))
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text == scenario.title
    assert desc is not None and desc.text and f"starts at {scenario.start}" in desc.text
    ids = {e.get("id") for e in root.iter() if e.get("id")}
    labelledby = root.get("aria-labelledby") or ""
    assert labelledby.split() == [title.get("id"), desc.get("id")]
    assert set(labelledby.split()) <= ids


def _texts(root: ET.Element) -> list[tuple[ET.Element, float, bool]]:
    """Every <text> with its effective font size and weight (inherited from groups)."""
    found = []

    def walk(node: ET.Element, size: float, bold: bool) -> None:
        size = float(node.get("font-size", size))
        bold = node.get("font-weight", "bold" if bold else "normal") == "bold"
        if node.tag == f"{SVG}text":
            found.append((node, size, bold))
        for child in node:
            walk(child, size, bold)

    walk(root, 16.0, False)
    return found


def _text_box(node: ET.Element, size: float, bold: bool) -> tuple[float, float, float, float]:
    width = svgkit.text_width(node.text or "", size, bold=bold)
    x, y = float(node.get("x", 0)), float(node.get("y", 0))
    left = {"middle": x - width / 2, "end": x - width}.get(node.get("text-anchor", ""), x)
    return left, y - size, left + width, y + size * 0.25


def _view_box(root: ET.Element) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in (root.get("viewBox") or "").split())
    return x, y, x + w, y + h


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_no_text_outside_the_view_box_and_none_under_12px(path: Path,
                                                           catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    root = parse(render_svg(scenario_graph(scenario), title=f"{scenario.name}: {scenario.title}"))
    vx0, vy0, vx1, vy1 = _view_box(root)
    texts = _texts(root)
    assert texts
    for node, size, bold in texts:
        assert size >= 12, node.text
        x0, y0, x1, y1 = _text_box(node, size, bold)
        assert vx0 <= x0 and x1 <= vx1 and vy0 <= y0 and y1 <= vy1, node.text


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_boxes_and_labels_do_not_overlap(path: Path, catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    root = parse(render_svg(scenario_graph(scenario), title=scenario.name))
    steps = [g.find(f"{SVG}rect") for g in root.iter(f"{SVG}g") if g.get("data-step")]
    boxes = [(float(r.get("x", 0)), float(r.get("y", 0)),
              float(r.get("x", 0)) + float(r.get("width", 0)),
              float(r.get("y", 0)) + float(r.get("height", 0))) for r in steps if r is not None]
    labels_group = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "labels")
    labels = [(float(r.get("x", 0)), float(r.get("y", 0)),
               float(r.get("x", 0)) + float(r.get("width", 0)),
               float(r.get("y", 0)) + float(r.get("height", 0)))
              for r in labels_group.iter(f"{SVG}rect")]
    for i, a in enumerate(boxes):
        assert not any(_overlap(a, b) for b in boxes[i + 1:])
        assert not any(_overlap(a, b) for b in labels)
    for i, a in enumerate(labels):
        assert not any(_overlap(a, b) for b in labels[i + 1:])


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_text_contrast_is_at_least_4_5_to_1(path: Path, catalogue: Catalogue) -> None:
    scenario = load(path, catalogue)
    root = parse(render_svg(scenario_graph(scenario), title=scenario.name))
    checked = 0
    for group in root.iter(f"{SVG}g"):
        rect = group.find(f"{SVG}rect")
        if not group.get("data-step") or rect is None:
            continue
        for text in group.findall(f"{SVG}text"):
            assert svgkit.contrast_ratio(text.get("fill", ""), rect.get("fill", "")) >= 4.5
            checked += 1
    labels = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "labels")
    for text in labels.iter(f"{SVG}text"):
        assert svgkit.contrast_ratio(text.get("fill", ""), LABEL_BG) >= 4.5
        checked += 1
    assert checked > len(scenario.steps)


def test_every_kind_colour_keeps_text_readable() -> None:
    from ars_engine.console.graph_draw import (
        DEFAULT_COLOURS,
        FAILURE_COLOURS,
        MUTED,
        SUCCESS_COLOURS,
        TEXT,
    )

    fills = [f for f, _ in [*KIND_COLOURS.values(), SUCCESS_COLOURS, FAILURE_COLOURS,
                            DEFAULT_COLOURS]]
    for fill in fills:
        assert svgkit.contrast_ratio(TEXT, fill) >= 4.5, fill
        assert svgkit.contrast_ratio(MUTED, fill) >= 4.5, fill


def test_finish_steps_show_their_outcome(catalogue: Catalogue) -> None:
    scenario = load(SCENARIOS / "type_b.yaml", catalogue)
    graph = scenario_graph(scenario)
    ends = {n.id: n.outcome for n in graph.nodes if n.kind == "finish"}
    assert ends["done"] == "success" and ends["timed_out"] == "timeout"
    svg = render_svg(graph, title="b")
    assert "outcome: success" in svg and "outcome: timeout" in svg


MENU = """
scenario: menu
defaults:
  gather: {first_digit_timeout: 4, inter_digit_timeout: 2}
on_hangup: gone
steps:
  ask:
    gather: {prompt: {text: "1 또는 2"}, digits: 1, into: choice}
    on: {ok: route, timeout: again, incomplete: again}
  route:
    branch: {var: choice, cases: {"1": notify, "2": refuse}, default: again}
  again:
    retry: {max: 2, again: ask, exhausted: give_up}
  notify:
    webhook: {url: "https://core.example/hook", event: chosen}
    on: {ok: agreed, error: agreed}
  agreed:
    finish: {outcome: success}
  refuse:
    hangup: {outcome: refused}
  give_up:
    finish: {outcome: failed}
  gone:
    finish: {outcome: abandoned}
"""


def test_edge_labels_name_the_conditions() -> None:
    scenario = load_scenario_text(textwrap.dedent(MENU))
    lines = set(graph_text(scenario_graph(scenario)))
    assert lines == {
        "ask —keys→ route", "ask —no input / too few keys→ again",
        "route —choice = 1→ notify", "route —choice = 2→ refuse", "route —otherwise→ again",
        "again —retry (max 2)→ ask", "again —exhausted→ give_up",
        "notify —ok / error→ agreed",
    }
    graph = scenario_graph(scenario)
    assert {n.id: n.entry for n in graph.nodes if n.entry} == {"ask": "start",
                                                                "gone": "on hangup"}
    assert {n.id: n.outcome for n in graph.nodes if n.outcome} == {
        "agreed": "success", "refuse": "refused", "give_up": "failed", "gone": "abandoned"}
    root = parse(render_svg(graph, title="menu"))
    dashed = [p for p in root.iter(f"{SVG}path") if p.get("stroke-dasharray")]
    assert len(dashed) == 1, "the retry loop is the one back edge, drawn dashed on the side"


@pytest.mark.parametrize(("outcome", "label"), [
    ("ok", "keys"), ("timeout", "no input"), ("incomplete", "too few keys")])
def test_gather_outcome_labels(outcome: str, label: str) -> None:
    scenario = load_scenario_text(textwrap.dedent(MENU))
    assert outcome_label(scenario.steps["ask"], outcome) == label


def test_title_and_names_are_escaped() -> None:
    svg = render_svg(scenario_graph(load_scenario_text(textwrap.dedent(MENU))),
                     title='A & B <"quoted">')
    title = parse(svg).find(f"{SVG}title")
    assert title is not None and title.text == 'A & B <"quoted">'


def test_a_single_step_and_a_self_loop_are_drawn() -> None:
    alone = Graph("x<y", (GraphNode("only", "finish", "outcome: success", "success",
                                    "start"),), (), "only")
    root = parse(render_svg(alone, title="one"))
    assert [g.get("data-step") for g in root.iter(f"{SVG}g") if g.get("data-step")] == ["only"]
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", e.get("id", "")) for e in root.iter()
               if e.get("id"))
    looped = Graph("loop", (GraphNode("again", "retry", "max 3", None, "start"),
                            GraphNode("end", "finish", "", "failed")),
                   (GraphEdge("again", "again", "retry (max 3)", ("again",)),
                    GraphEdge("again", "end", "exhausted", ("exhausted",))), "again")
    root = parse(render_svg(looped, title="loop"))
    dashed = [p for p in root.iter(f"{SVG}path") if p.get("stroke-dasharray")]
    assert len(dashed) == 1
    vx0, vy0, vx1, vy1 = _view_box(root)
    for node, size, bold in _texts(root):
        x0, y0, x1, y1 = _text_box(node, size, bold)
        assert vx0 <= x0 and x1 <= vx1 and vy0 <= y0 and y1 <= vy1, node.text


# -- the layout's pure parts -----------------------------------------------------------------

@pytest.mark.parametrize(("edges", "roots", "back"), [
    ([("a", "b"), ("b", "c")], ["a"], set()),
    ([("a", "b"), ("b", "a")], ["a"], {1}),
    ([("a", "a")], ["a"], {0}),
    ([("a", "b"), ("b", "c"), ("c", "b"), ("c", "d")], ["a"], {2}),
    ([("a", "b"), ("b", "c"), ("c", "a")], ["b"], {0}),  # roots decide which edge closes it
])
def test_back_edges_close_the_cycles(edges: list[tuple[str, str]], roots: list[str],
                                     back: set[int]) -> None:
    nodes = sorted({n for e in edges for n in e})
    assert find_back_edges(nodes, edges, roots) == back


@pytest.mark.parametrize(("edges", "layers"), [
    ([("a", "b"), ("b", "c")], {"a": 0, "b": 1, "c": 2}),
    ([("a", "c"), ("a", "b"), ("b", "c")], {"a": 0, "b": 1, "c": 2}),  # longest path wins
    ([("a", "b"), ("x", "b")], {"a": 0, "x": 0, "b": 1}),
])
def test_layers_follow_the_longest_path(edges: list[tuple[str, str]],
                                        layers: dict[str, int]) -> None:
    assert assign_layers(sorted(layers), edges) == layers


@pytest.mark.parametrize(("upper", "lower", "links", "crossings"), [
    (["a", "b"], ["c", "d"], [("a", "c"), ("b", "d")], 0),
    (["a", "b"], ["c", "d"], [("a", "d"), ("b", "c")], 1),
    (["a", "b", "e"], ["c", "d"], [("a", "d"), ("b", "c"), ("e", "c")], 2),
])
def test_crossings_are_counted(upper: list[str], lower: list[str],
                               links: list[tuple[str, str]], crossings: int) -> None:
    assert count_crossings(upper, lower, links) == crossings


def test_a_row_keeps_order_and_spacing_and_stays_near_its_wishes() -> None:
    widths = {"a": 100.0, "b": 100.0, "c": 50.0}
    centres = place_row(["a", "b", "c"], widths, {"a": 0.0, "b": 0.0, "c": 500.0})
    assert centres["b"] - centres["a"] >= 100 + 36 - 1e-9
    assert centres["c"] == pytest.approx(500.0)
    assert (centres["a"] + centres["b"]) / 2 == pytest.approx(0.0)


def test_svg_ids_are_unique_per_scenario(catalogue: Catalogue) -> None:
    a = render_svg(scenario_graph(load(SCENARIOS / "type_a.yaml", catalogue)), title="a")
    b = render_svg(scenario_graph(load(SCENARIOS / "type_b.yaml", catalogue)), title="b")
    ids_a = set(re.findall(r'id="([^"]+)"', a))
    ids_b = set(re.findall(r'id="([^"]+)"', b))
    assert ids_a and not ids_a & ids_b
