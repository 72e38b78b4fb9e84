"""Accessible inline SVG line charts for the console (answer and success rates per day).

Each series has a colour with at least 3:1 contrast against the white background (WCAG 1.4.11)
and also its own dash pattern and marker shape, so that the lines differ without colour. A point
that is ``None`` (no calls that day) leaves a gap: the line stops and starts again. The
``<desc>`` sums up every series (lowest, highest, last value) for screen readers; the page should
still show the numbers as a table.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import svgkit as k

WIDTH = 720
HEIGHT = 320
TEXT = "#1a202c"
AXIS = "#4a5568"
GRID = "#e2e8f0"
TITLE_SIZE = 16
FONT = 12
TICKS = 5
# (colour, dash pattern, marker): colours ≥ 3:1 against white (tests check it)
STYLES: tuple[tuple[str, str, str], ...] = (
    ("#1d4ed8", "", "circle"),
    ("#c2410c", "7 4", "square"),
    ("#047857", "2 3", "triangle"),
    ("#7e22ce", "10 3 2 3", "diamond"),
    ("#374151", "4 2", "cross"),
    ("#b91c1c", "12 4", "circle"),
)


@dataclass(frozen=True, slots=True)
class Series:
    """A named line; ``values[i]`` belongs to ``x_labels[i]``, None where there is no value."""

    name: str
    values: Sequence[float | None] = field(default_factory=list)


def format_value(value: float, *, percent: bool) -> str:
    """A value as the chart writes it: ``87.5%`` or ``1,234`` / ``0.25``."""
    if percent:
        return f"{value * 100:.1f}".rstrip("0").rstrip(".") + "%"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.2f}"


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10ⁿ at or above ``value`` (> 0)."""
    exponent = math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        candidate = step * 10.0 ** exponent
        if candidate >= value:
            return candidate
    return 10.0 ** (exponent + 1)


def summary(series: Sequence[Series], x_labels: Sequence[str], *, percent: bool) -> str:
    """The ``<desc>``: per series its lowest, highest and last value (and where)."""
    parts = []
    for s in series:
        points = [(x_labels[i] if i < len(x_labels) else str(i + 1), v)
                  for i, v in enumerate(s.values) if v is not None]
        if not points:
            parts.append(f"{s.name}: no data.")
            continue
        low = min(points, key=lambda p: p[1])
        high = max(points, key=lambda p: p[1])
        last = points[-1]
        parts.append(f"{s.name}: lowest {format_value(low[1], percent=percent)} ({low[0]}), "
                     f"highest {format_value(high[1], percent=percent)} ({high[0]}), "
                     f"last {format_value(last[1], percent=percent)} ({last[0]}); "
                     f"{len(points)} of {len(s.values)} points have a value.")
    return " ".join(parts) if parts else "No data."


def line_chart_svg(series: list[Series], *, title: str, y_label: str, x_labels: list[str],
                   y_max: float = 1.0, percent: bool = True, width: int = WIDTH,
                   height: int = HEIGHT) -> str:
    """The chart as an ``<svg role="img">`` element; an empty chart says "No data"."""
    uid = k.svg_id("chart", title)
    values = [v for s in series for v in s.values if v is not None]
    top_value = max([y_max, *values]) if values else y_max
    if top_value > y_max:
        top_value = nice_ceiling(top_value)
    top_value = top_value if top_value > 0 else 1.0
    ticks = [top_value * i / TICKS for i in range(TICKS + 1)]
    tick_texts = [format_value(t, percent=percent) for t in ticks]
    legend_rows = _legend_rows(series, width)
    plot_left = 16 + FONT + 10 + max(k.text_width(t, FONT) for t in tick_texts) + 8
    plot_right = width - 20
    plot_top = 16 + TITLE_SIZE + 22 + len(legend_rows) * 22
    plot_bottom = height - 16 - FONT - 10
    n = max([len(x_labels), *(len(s.values) for s in series)]) if series or x_labels else 0

    def x_at(i: int) -> float:
        if n <= 1:
            return (plot_left + plot_right) / 2
        return plot_left + (plot_right - plot_left) * i / (n - 1)

    def y_at(v: float) -> float:
        return plot_bottom - (plot_bottom - plot_top) * min(max(v / top_value, 0.0), 1.0)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" '
           f'aria-labelledby="{uid}-title {uid}-desc" class="line-chart" '
           f'viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'style="max-width:100%;height:auto" font-family="{k.attr(k.FONT_FAMILY)}" '
           f'font-size="{FONT}">',
           f'<title id="{uid}-title">{k.text(title)}</title>',
           f'<desc id="{uid}-desc">{k.text(summary(series, x_labels, percent=percent))}</desc>',
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           f'<text x="16" y="{16 + TITLE_SIZE}" font-size="{TITLE_SIZE}" font-weight="bold" '
           f'fill="{TEXT}">{k.text(title)}</text>']
    out.extend(_legend(series, legend_rows, 16 + TITLE_SIZE + 14))
    # grid and y axis
    out.append(f'<g class="y-axis" fill="{TEXT}" text-anchor="end">')
    for tick, label in zip(ticks, tick_texts, strict=True):
        y = y_at(tick)
        out.append(f'<line x1="{k.num(plot_left)}" x2="{k.num(plot_right)}" y1="{k.num(y)}" '
                   f'y2="{k.num(y)}" stroke="{GRID if tick else AXIS}"/>'
                   f'<text x="{k.num(plot_left - 6)}" y="{k.num(y + 4)}">{k.text(label)}</text>')
    mid = (plot_top + plot_bottom) / 2
    out.append(f'<text x="{16 + FONT}" y="{k.num(mid)}" text-anchor="middle" '
               f'transform="rotate(-90 {16 + FONT} {k.num(mid)})">{k.text(y_label)}</text>')
    out.append(f'<line x1="{k.num(plot_left)}" x2="{k.num(plot_left)}" y1="{k.num(plot_top)}" '
               f'y2="{k.num(plot_bottom)}" stroke="{AXIS}"/></g>')
    # x axis: as many labels as fit
    out.append(f'<g class="x-axis" fill="{TEXT}" text-anchor="middle">')
    widest = max((k.text_width(label, FONT) for label in x_labels), default=0.0) + 8
    every = 1 if n <= 1 else max(1, math.ceil(widest / ((plot_right - plot_left) / (n - 1))))
    for i, label in enumerate(x_labels[:n]):
        x = x_at(i)
        out.append(f'<line x1="{k.num(x)}" x2="{k.num(x)}" y1="{k.num(plot_bottom)}" '
                   f'y2="{k.num(plot_bottom + 4)}" stroke="{AXIS}"/>')
        if i % every == 0:
            anchor = ' text-anchor="start"' if x - widest / 2 < 0 else (
                ' text-anchor="end"' if x + widest / 2 > width else "")
            out.append(f'<text x="{k.num(x)}" y="{k.num(plot_bottom + 6 + FONT)}"{anchor}>'
                       f'{k.text(label)}</text>')
    out.append("</g>")
    if not values:
        out.append(f'<text class="no-data" x="{k.num((plot_left + plot_right) / 2)}" '
                   f'y="{k.num(mid)}" text-anchor="middle" font-size="14" fill="{TEXT}">'
                   f'No data</text>')
    for index, s in enumerate(series):
        points = [(x_at(i), y_at(v)) if v is not None else None for i, v in enumerate(s.values)]
        out.append(_series_svg(index, s, points, percent=percent,
                               labels=[x_labels[i] if i < len(x_labels) else str(i + 1)
                                       for i in range(len(s.values))]))
    out.append("</svg>")
    return "\n".join(out)


def _legend_rows(series: Sequence[Series], width: int) -> list[list[tuple[int, float]]]:
    rows: list[list[tuple[int, float]]] = []
    x = 16.0
    for i, s in enumerate(series):
        item = 34 + k.text_width(s.name, FONT) + 18
        if not rows or x + item > width - 16:
            rows.append([])
            x = 16.0
        rows[-1].append((i, x))
        x += item
    return rows


def _legend(series: Sequence[Series], rows: list[list[tuple[int, float]]], top: float
            ) -> list[str]:
    out = ['<g class="legend">']
    for r, row in enumerate(rows):
        y = top + r * 22 + 8
        for i, x in row:
            colour, dash, marker = STYLES[i % len(STYLES)]
            dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{k.num(x)}" x2="{k.num(x + 28)}" y1="{k.num(y)}" '
                       f'y2="{k.num(y)}" stroke="{colour}" stroke-width="2.5"{dash_attr}/>'
                       + _marker(marker, x + 14, y, colour)
                       + f'<text x="{k.num(x + 34)}" y="{k.num(y + 4)}" fill="{TEXT}">'
                       f'{k.text(series[i].name)}</text>')
    out.append("</g>")
    return out


def _series_svg(index: int, s: Series, points: list[tuple[float, float] | None], *,
                percent: bool, labels: list[str]) -> str:
    colour, dash, marker = STYLES[index % len(STYLES)]
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    d = " ".join("M" + " L".join(f"{k.num(x)},{k.num(y)}" for x, y in run)
                 for run in runs if len(run) > 1)
    dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
    out = [f'<g class="series" data-series="{index}">']
    if d:
        out.append(f'<path d="{d}" fill="none" stroke="{colour}" stroke-width="2.5"'
                   f'{dash_attr} stroke-linejoin="round"/>')
    for i, p in enumerate(points):
        if p is None:
            continue
        value = s.values[i]
        assert value is not None
        out.append(f'<g class="point"><title>{k.text(s.name)} {k.text(labels[i])}: '
                   f'{format_value(value, percent=percent)}</title>'
                   f'{_marker(marker, p[0], p[1], colour)}</g>')
    out.append("</g>")
    return "".join(out)


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    r = 4.0
    if shape == "circle":
        return f'<circle cx="{k.num(x)}" cy="{k.num(y)}" r="{r}" fill="{colour}"/>'
    if shape == "square":
        return (f'<rect x="{k.num(x - r)}" y="{k.num(y - r)}" width="{2 * r}" height="{2 * r}" '
                f'fill="{colour}"/>')
    if shape == "triangle":
        pts = f"{k.num(x)},{k.num(y - r - 1)} {k.num(x + r + 1)},{k.num(y + r)} " \
              f"{k.num(x - r - 1)},{k.num(y + r)}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    if shape == "diamond":
        pts = f"{k.num(x)},{k.num(y - r - 1)} {k.num(x + r + 1)},{k.num(y)} " \
              f"{k.num(x)},{k.num(y + r + 1)} {k.num(x - r - 1)},{k.num(y)}"
        return f'<polygon points="{pts}" fill="{colour}"/>'
    return (f'<path d="M{k.num(x - r)},{k.num(y - r)} L{k.num(x + r)},{k.num(y + r)} '
            f'M{k.num(x - r)},{k.num(y + r)} L{k.num(x + r)},{k.num(y - r)}" '
            f'stroke="{colour}" stroke-width="2.5"/>')
