"""Small helpers shared by the console's inline SVG drawings (scenario graph, charts).

No drawing library: the console writes SVG text itself. What it needs is escaping, a
conservative estimate of how wide a text will be (to size boxes and the viewBox so that nothing is
cut off), and WCAG 2.x contrast ratios (to check the colours chosen are readable).
"""

from __future__ import annotations

import re
import unicodedata
from xml.sax.saxutils import escape

FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', 'Noto Sans KR', 'Malgun Gothic', sans-serif"

# Average advance of a glyph in em, rounded up: Latin in common sans-serif faces is 0.5–0.6 em
# (bold a little wider); Hangul and other wide characters take a full em.
_NARROW_EM = 0.62
_NARROW_BOLD_EM = 0.68
_WIDE_EM = 1.0
_HEX_COLOUR = re.compile(r"#([0-9a-fA-F]{6})")


def attr(value: object) -> str:
    """``value`` escaped for a double-quoted XML attribute."""
    return escape(str(value), {'"': "&quot;"})


def text(value: str) -> str:
    """``value`` escaped for XML character data."""
    return escape(value)


def num(value: float) -> str:
    """A coordinate: at most one decimal, no trailing ``.0``."""
    rounded = round(value, 1)
    return str(int(rounded)) if rounded == int(rounded) else f"{rounded:.1f}"


def text_width(value: str, size: float, *, bold: bool = False) -> float:
    """A generous estimate of the rendered width of ``value`` at ``size`` px."""
    narrow = _NARROW_BOLD_EM if bold else _NARROW_EM
    em = 0.0
    for char in value:
        if unicodedata.combining(char):
            continue
        em += _WIDE_EM if unicodedata.east_asian_width(char) in ("W", "F") else narrow
    return em * size


def shorten(value: str, limit: int) -> str:
    """``value`` cut to ``limit`` characters, with an ellipsis when it was longer."""
    return value if len(value) <= limit else value[: max(limit - 1, 1)] + "…"


def relative_luminance(colour: str) -> float:
    """WCAG 2.x relative luminance of a ``#rrggbb`` colour."""
    match = _HEX_COLOUR.fullmatch(colour)
    if match is None:
        raise ValueError(f"not a #rrggbb colour: {colour!r}")
    channels = []
    for i in (0, 2, 4):
        c = int(match.group(1)[i: i + 2], 16) / 255
        channels.append(c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4)
    r, g, b = channels
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast_ratio(foreground: str, background: str) -> float:
    """WCAG 2.x contrast ratio of two ``#rrggbb`` colours (1 to 21)."""
    a, b = relative_luminance(foreground), relative_luminance(background)
    light, dark = max(a, b), min(a, b)
    return (light + 0.05) / (dark + 0.05)


def svg_id(prefix: str, name: str) -> str:
    """An XML id from ``prefix`` and any ``name`` (letters, digits, ``-`` and ``_`` kept)."""
    cleaned = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "x"
    return f"{prefix}-{cleaned}"
