"""Draw a scenario :class:`~.graph.Graph` as inline SVG: boxes per step, arrows with labels.

Readability rules kept here: text at 12 px or more, dark text on light fills (contrast ≥ 4.5:1,
checked by the tests with :func:`.svgkit.contrast_ratio`), a label never drawn over a box or
another label when a free spot exists along its edge, and a viewBox that holds every text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import svgkit as k
from .graph_layout import Box, Point, Route, layout

if TYPE_CHECKING:
    from .graph import Graph, GraphNode

TEXT = "#1a202c"  # box and label text
MUTED = "#4a5568"  # kind line, forward edges
LOOP = "#6b46c1"  # back edges (retry loops)
LABEL_BG = "#ffffff"
TITLE_SIZE = 16
ID_SIZE = 14
SMALL = 12
PAD_X = 12
MARGIN = 16
LABEL_H = 18
MIN_BOX = 110

# kind → (fill, border); every fill is light enough for TEXT and MUTED to keep 4.5:1
KIND_COLOURS: dict[str, tuple[str, str]] = {
    "play": ("#e8f1fb", "#2b6cb0"),
    "gather": ("#e6f6ec", "#2f855a"),
    "check": ("#fff5d6", "#b7791f"),
    "branch": ("#f1e8fd", "#6b46c1"),
    "retry": ("#fde8e8", "#c53030"),
    "set": ("#f0f1f3", "#4a5568"),
    "record": ("#fce7f3", "#b83280"),
    "webhook": ("#e0f7f5", "#2c7a7b"),
    "hangup": ("#f0f1f3", "#2d3748"),
}
SUCCESS_COLOURS = ("#d3f5dd", "#22543d")
FAILURE_COLOURS = ("#fde0e0", "#822727")
DEFAULT_COLOURS = ("#f7f7f7", "#4a5568")


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    size: int
    bold: bool
    colour: str


def node_colours(node: GraphNode) -> tuple[str, str]:
    """(fill, border) of a node's box."""
    if node.outcome is not None:
        return SUCCESS_COLOURS if node.outcome == "success" else FAILURE_COLOURS
    return KIND_COLOURS.get(node.kind, DEFAULT_COLOURS)


def node_lines(node: GraphNode) -> list[Line]:
    lines = []
    if node.entry:
        lines.append(Line(f"▶ {node.entry}", SMALL, True, TEXT))
    lines.append(Line(node.id, ID_SIZE, True, TEXT))
    lines.append(Line(node.kind, SMALL, False, MUTED))
    if node.detail:
        lines.append(Line(node.detail, SMALL, False, TEXT))
    return lines


def _line_height(line: Line) -> float:
    return line.size + 4


def _box_size(lines: list[Line]) -> tuple[float, float]:
    width = max(k.text_width(li.text, li.size, bold=li.bold) for li in lines) + 2 * PAD_X
    return max(MIN_BOX, math.ceil(width)), 10 + sum(_line_height(li) for li in lines)


def draw(graph: Graph, *, title: str, summary: str) -> str:
    """The whole ``<svg>`` element."""
    uid = k.svg_id("flow", graph.name)
    ids = [n.id for n in graph.nodes]
    lines = {n.id: node_lines(n) for n in graph.nodes}
    sizes = {n: _box_size(lines[n]) for n in ids}
    pairs = [(e.source, e.target) for e in graph.edges]
    label_w = [k.text_width(e.label, SMALL) + 8 for e in graph.edges]
    roots = [graph.start, *([graph.on_hangup] if graph.on_hangup else [])]
    top = MARGIN + TITLE_SIZE + 14
    placed = layout(ids, sizes, pairs, roots, label_w, top=top)
    obstacles = [(b.x - 2, b.y - 2, b.w + 4, b.h + 4) for b in placed.boxes.values()]
    label_boxes: list[tuple[float, float, float, float]] = []
    order = sorted(range(len(graph.edges)), key=lambda i: not placed.routes[i].back)
    for i in order:
        spot = _label_spot(placed.routes[i], label_w[i], obstacles)
        label_boxes.append((spot[0] - label_w[i] / 2, spot[1] - LABEL_H / 2, label_w[i],
                            LABEL_H))
        obstacles.append(label_boxes[-1])
    spots = dict(zip(order, label_boxes, strict=True))
    title_w = k.text_width(title, TITLE_SIZE, bold=True)
    left = min(placed.left, *(b[0] for b in label_boxes)) if label_boxes else placed.left
    right = max(placed.right, *(b[0] + b[2] for b in label_boxes)) if label_boxes \
        else placed.right
    min_x = left - MARGIN
    width = max(right + MARGIN, min_x + title_w + 2 * MARGIN) - min_x
    bottom = max([placed.bottom, *(b[1] + b[3] for b in label_boxes)])
    height = bottom + MARGIN
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
           f'aria-labelledby="{uid}-title {uid}-desc" class="scenario-graph" '
           f'viewBox="{k.num(min_x)} 0 {k.num(width)} {k.num(height)}" '
           f'width="{k.num(width)}" height="{k.num(height)}" '
           f'style="max-width:100%;height:auto" font-family="{k.attr(k.FONT_FAMILY)}">',
           f'<title id="{uid}-title">{k.text(title)}</title>',
           f'<desc id="{uid}-desc">{k.text(summary)}</desc>',
           "<defs>", _marker(f"{uid}-arrow", MUTED), _marker(f"{uid}-loop", LOOP), "</defs>",
           f'<rect x="{k.num(min_x)}" y="0" width="{k.num(width)}" height="{k.num(height)}" '
           f'fill="#ffffff"/>',
           f'<text x="{k.num(min_x + MARGIN)}" y="{MARGIN + TITLE_SIZE}" '
           f'font-size="{TITLE_SIZE}" font-weight="bold" fill="{TEXT}">{k.text(title)}</text>',
           '<g class="edges" fill="none" stroke-width="1.5">']
    for edge, route in zip(graph.edges, placed.routes, strict=True):
        colour, marker = (LOOP, "loop") if route.back else (MUTED, "arrow")
        dash = ' stroke-dasharray="6 4"' if route.back else ""
        out.append(f'<path d="{_path(route)}" stroke="{colour}"{dash} '
                   f'marker-end="url(#{uid}-{marker})"><title>{k.text(edge.source)} → '
                   f'{k.text(edge.target)}: {k.text(edge.label)}</title></path>')
    out.append("</g>")
    out.append('<g class="steps">')
    for node in graph.nodes:
        out.append(_node_svg(node, placed.boxes[node.id], lines[node.id]))
    out.append("</g>")
    out.append(f'<g class="labels" font-size="{SMALL}">')
    for i, edge in enumerate(graph.edges):
        x, y, w, h = spots[i]
        colour = LOOP if placed.routes[i].back else TEXT
        out.append(f'<rect x="{k.num(x)}" y="{k.num(y)}" width="{k.num(w)}" height="{h}" '
                   f'rx="3" fill="{LABEL_BG}" fill-opacity="0.95"/>'
                   f'<text x="{k.num(x + w / 2)}" y="{k.num(y + h / 2 + 4)}" '
                   f'text-anchor="middle" fill="{colour}">{k.text(edge.label)}</text>')
    out.append("</g></svg>")
    return "\n".join(out)


def _marker(marker_id: str, colour: str) -> str:
    return (f'<marker id="{marker_id}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="9" '
            f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>')


def _node_svg(node: GraphNode, box: Box, lines: list[Line]) -> str:
    fill, border = node_colours(node)
    stroke = 3 if node.entry else 1.5
    tip = f"{node.id} ({node.kind})" + (f": {node.detail}" if node.detail else "")
    parts = [f'<g class="step step-{k.attr(node.kind)}" data-step="{k.attr(node.id)}">'
             f'<title>{k.text(tip)}</title>',
             f'<rect x="{k.num(box.x)}" y="{k.num(box.y)}" width="{k.num(box.w)}" '
             f'height="{k.num(box.h)}" rx="6" fill="{fill}" stroke="{border}" '
             f'stroke-width="{stroke}"/>']
    y = box.y + 5
    for line in lines:
        y += _line_height(line)
        weight = ' font-weight="bold"' if line.bold else ""
        parts.append(f'<text x="{k.num(box.cx)}" y="{k.num(y - 4)}" text-anchor="middle" '
                     f'font-size="{line.size}"{weight} fill="{line.colour}">'
                     f'{k.text(line.text)}</text>')
    parts.append("</g>")
    return "".join(parts)


def _path(route: Route) -> str:
    pts = route.points
    if route.back:
        return _rounded(pts, 8.0)
    d = [f"M{k.num(pts[0][0])},{k.num(pts[0][1])}"]
    for i in range(len(pts) - 1):
        (x1, y1), (x2, y2) = pts[i], pts[i + 1]
        if i % 2 == 0:  # crossing a gap: a curve leaving and arriving vertically
            mid = (y1 + y2) / 2
            d.append(f"C{k.num(x1)},{k.num(mid)} {k.num(x2)},{k.num(mid)} "
                     f"{k.num(x2)},{k.num(y2)}")
        else:  # passing a layer beside its boxes
            d.append(f"L{k.num(x2)},{k.num(y2)}")
    return " ".join(d)


def _rounded(pts: tuple[Point, ...], radius: float) -> str:
    d = [f"M{k.num(pts[0][0])},{k.num(pts[0][1])}"]
    for i in range(1, len(pts) - 1):
        (px, py), (cx, cy), (nx, ny) = pts[i - 1], pts[i], pts[i + 1]
        before = math.hypot(cx - px, cy - py)
        after = math.hypot(nx - cx, ny - cy)
        r = min(radius, before / 2, after / 2)
        if r <= 0:
            continue
        ax, ay = cx + (px - cx) * r / before, cy + (py - cy) * r / before
        bx, by = cx + (nx - cx) * r / after, cy + (ny - cy) * r / after
        d.append(f"L{k.num(ax)},{k.num(ay)} Q{k.num(cx)},{k.num(cy)} {k.num(bx)},{k.num(by)}")
    d.append(f"L{k.num(pts[-1][0])},{k.num(pts[-1][1])}")
    return " ".join(d)


PREFERRED_T = (0.5, 0.42, 0.58, 0.34, 0.66, 0.26, 0.74, 0.18, 0.82, 0.12, 0.88)
FINE_T = tuple(i / 40 for i in range(2, 39))


def _candidates(route: Route, ts: tuple[float, ...] = PREFERRED_T) -> list[Point]:
    pts = route.points
    if route.back:
        assert route.lane_x is not None
        y1, y2 = pts[2][1], pts[3][1]
        return [(route.lane_x, y1 + (y2 - y1) * t) for t in ts]
    spots = []
    for i in range(0, len(pts) - 1, 2):
        (x1, y1), (x2, y2) = pts[i], pts[i + 1]
        for t in ts:
            # on the cubic of _path (control points at mid-height)
            mid = (y1 + y2) / 2
            b0, b3 = (1 - t) ** 3, t ** 3
            spots.append((x1 + (x2 - x1) * (3 * t * t - 2 * t ** 3),
                          y1 * b0 + mid * (1 - b0 - b3) + y2 * b3))
    return spots


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]
             ) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _label_spot(route: Route, width: float,
                obstacles: list[tuple[float, float, float, float]]) -> Point:
    """The first spot along the edge where its label covers nothing: centred on the edge,
    else just beside it (right, then left); failing that, the spot covering least."""
    best: tuple[float, Point] | None = None
    for ts in (PREFERRED_T, FINE_T):
        spots = _candidates(route, ts)
        shifted = [(x + dx, y) for x, y in spots for dx in (width / 2 + 4, -width / 2 - 4)]
        for x, y in spots + shifted:
            box = (x - width / 2, y - LABEL_H / 2, width, LABEL_H)
            covered = sum(_overlap(box, o) for o in obstacles)
            if covered == 0:
                return x, y
            if best is None or covered < best[0]:
                best = (covered, (x, y))
    assert best is not None
    return best[1]
