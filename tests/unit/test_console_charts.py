"""The console's line charts: well-formed accessible SVG, one marker per value, gaps for None,
styles told apart without colour, and a readable chart when there is no data."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ars_engine.console import svgkit
from ars_engine.console.charts import (
    STYLES,
    Series,
    format_value,
    line_chart_svg,
    nice_ceiling,
    summary,
)

SVG = "{http://www.w3.org/2000/svg}"
DAYS = [f"11-{d:02d}" for d in range(1, 31)]


def chart(series: list[Series], **kwargs: object) -> ET.Element:
    options: dict[str, object] = {"title": "Rates (2026-11)", "y_label": "%", "x_labels": DAYS}
    options.update(kwargs)
    return ET.fromstring(line_chart_svg(series, **options))  # type: ignore[arg-type]


def series_groups(root: ET.Element) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if g.get("class") == "series"]


def test_chart_is_accessible_svg() -> None:
    root = chart([Series("answer rate", [0.5] * 30)])
    assert root.get("role") == "img"
    title, desc = root.find(f"{SVG}title"), root.find(f"{SVG}desc")
    assert title is not None and title.text == "Rates (2026-11)"
    assert desc is not None and desc.text and "answer rate" in desc.text
    assert (root.get("aria-labelledby") or "").split() == [title.get("id"), desc.get("id")]


@pytest.mark.parametrize(("values", "points", "runs"), [
    ([0.1, 0.2, 0.3], 3, 1),
    ([0.1, None, 0.3, 0.4], 3, 1),  # a lone point before a gap is a marker, no line
    ([0.1, 0.2, None, 0.3, 0.4], 4, 2),
    ([None, None, 0.5], 1, 0),
    ([None, None], 0, 0),
])
def test_one_marker_per_value_and_a_gap_per_none(values: list[float | None], points: int,
                                                 runs: int) -> None:
    root = chart([Series("s", values)], x_labels=DAYS[: len(values)])
    (group,) = series_groups(root)
    assert len([g for g in group.iter(f"{SVG}g") if g.get("class") == "point"]) == points
    path = group.find(f"{SVG}path")
    assert (path.get("d", "").count("M") if path is not None else 0) == runs


def test_empty_chart_says_no_data() -> None:
    for series in ([], [Series("answer rate", [None] * 30)]):
        root = chart(series)
        texts = [t.text for t in root.iter(f"{SVG}text")]
        assert "No data" in texts
        desc = root.find(f"{SVG}desc")
        assert desc is not None and desc.text and "no data" in desc.text.lower()
    root = chart([], x_labels=[])
    assert "No data" in [t.text for t in root.iter(f"{SVG}text")]


def test_desc_sums_up_each_series() -> None:
    text = summary([Series("answer", [0.5, None, 0.25, 0.75]), Series("success", [])],
                   ["d1", "d2", "d3", "d4"], percent=True)
    assert "answer: lowest 25% (d3), highest 75% (d4), last 75% (d4)" in text
    assert "3 of 4 points" in text
    assert "success: no data." in text


def test_series_differ_by_colour_dash_and_marker() -> None:
    for colour, _, _ in STYLES:
        assert svgkit.contrast_ratio(colour, "#ffffff") >= 3.0, colour
    assert len({c for c, _, _ in STYLES}) == len(STYLES)
    first = STYLES[:4]
    assert len({d for _, d, _ in first}) == 4
    assert len({m for _, _, m in first}) == 4
    root = chart([Series("a", [0.1, 0.2]), Series("b", [0.3, 0.4])], x_labels=["x", "y"])
    paths = [g.find(f"{SVG}path") for g in series_groups(root)]
    assert paths[0] is not None and paths[1] is not None
    assert paths[0].get("stroke-dasharray") != paths[1].get("stroke-dasharray")
    legend = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "legend")
    assert [t.text for t in legend.iter(f"{SVG}text")] == ["a", "b"]


def test_text_is_readable_and_inside_the_view_box() -> None:
    root = chart([Series("응답률 answer rate", [0.9, 0.8] * 15),
                  Series("성공률 success rate", [0.5, None] * 15)])
    _, _, width, height = (float(v) for v in (root.get("viewBox") or "").split())
    for text in root.iter(f"{SVG}text"):
        size = float(text.get("font-size", root.get("font-size", "0")))
        assert size >= 12
        x, y = float(text.get("x", 0)), float(text.get("y", 0))
        if text.get("transform"):
            continue  # the rotated axis title sits by its own anchor
        w = svgkit.text_width(text.text or "", size)
        left = {"middle": x - w / 2, "end": x - w}.get(
            text.get("text-anchor") or _inherited_anchor(root, text), x)
        assert left >= 0 and left + w <= width and y - size >= 0 and y <= height, text.text
        assert svgkit.contrast_ratio(text.get("fill") or "#1a202c", "#ffffff") >= 4.5


def _inherited_anchor(root: ET.Element, node: ET.Element) -> str:
    for group in root.iter(f"{SVG}g"):
        if node in list(group):
            return group.get("text-anchor", "")
    return ""


def test_x_labels_are_thinned_to_fit() -> None:
    root = chart([Series("s", [0.5] * 30)])
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "x-axis")
    shown = [t.text for t in axis.iter(f"{SVG}text")]
    assert shown[0] == "11-01" and 5 <= len(shown) < 30


def test_values_above_y_max_stretch_the_axis() -> None:
    root = chart([Series("calls", [3, 120, 40])], x_labels=["a", "b", "c"], percent=False)
    axis = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "y-axis")
    assert "200" in [t.text for t in axis.iter(f"{SVG}text")]


@pytest.mark.parametrize(("value", "percent", "text"), [
    (0.875, True, "87.5%"), (1.0, True, "100%"), (0.0, True, "0%"), (0.3333, True, "33.3%"),
    (1234.0, False, "1,234"), (0.25, False, "0.25"),
])
def test_format_value(value: float, percent: bool, text: str) -> None:
    assert format_value(value, percent=percent) == text


@pytest.mark.parametrize(("value", "ceiling"), [
    (0.7, 1.0), (1.0, 1.0), (1.2, 2.0), (2.2, 2.5), (3.0, 5.0), (120.0, 200.0), (999.0, 1000.0),
])
def test_nice_ceiling(value: float, ceiling: float) -> None:
    assert nice_ceiling(value) == pytest.approx(ceiling)


def test_titles_with_markup_are_escaped() -> None:
    root = chart([Series("<b>&</b>", [0.5])], title='A & "B" <c>', x_labels=["1"])
    title = root.find(f"{SVG}title")
    assert title is not None and title.text == 'A & "B" <c>'
