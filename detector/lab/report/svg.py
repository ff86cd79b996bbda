"""Small, dependency-free SVG charts for the analyst report: stacked bars and bars (the linkage picture
is ``detector.lab.report.linkage``).

Every function returns one ``<svg>`` element as text. All text is escaped; colours come from a fixed
palette so the same input gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#e15759",
    "#76b7b2",
    "#59a14f",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def colour(i: int) -> str:
    """The i-th palette colour (cycles)."""
    return PALETTE[i % len(PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return float(step * exp)
    return float(10 * exp)


def legend(names: Sequence[str], colours: Mapping[str, str]) -> str:
    """A legend as HTML (wraps, stays readable at any width)."""
    items = "".join(
        f'<span class="key"><i style="background:{colours[n]}"></i>{escape(n)}</span>' for n in names
    )
    return f'<div class="legend">{items}</div>'


def stacked_bars(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    colours: Mapping[str, str],
    width: int = 900,
    height: int = 260,
    y_label: str = "",
) -> str:
    """Vertical bars, one per category, stacked by series (``series[name][i]`` is category i's part)."""
    left, right, top, bottom = 48, 10, 10, 46
    n = max(len(categories), 1)
    totals = [sum(s[i] for s in series.values()) for i in range(len(categories))]
    ymax = _nice_max(max(totals, default=0))
    pw, ph = width - left - right, height - top - bottom
    bw = pw / n
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for k in range(5):
        v = ymax * k / 4
        y = top + ph - ph * k / 4
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{v:g}</text>')
    for i, cat in enumerate(categories):
        x = left + i * bw
        y = top + ph
        for name, values in series.items():
            v = values[i]
            if v <= 0:
                continue
            h = ph * v / ymax
            y -= h
            out.append(
                f'<rect x="{x + bw * 0.1:.1f}" y="{y:.1f}" width="{bw * 0.8:.1f}" height="{h:.1f}" '
                f'fill="{colours[name]}"><title>{escape(cat)}: {escape(name)} {v:g}</title></rect>'
            )
    step = max(1, math.ceil(n / 12))
    for i in range(0, len(categories), step):
        x = left + (i + 0.5) * bw
        out.append(
            f'<text x="{x:.1f}" y="{top + ph + 14}" text-anchor="middle">{escape(categories[i])}</text>'
        )
    if y_label:
        out.append(
            f'<text x="12" y="{top + ph / 2:.1f}" transform="rotate(-90 12 {top + ph / 2:.1f})" '
            f'text-anchor="middle">{escape(y_label)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def hbars(
    items: Sequence[tuple[str, float]], width: int = 560, bar: int = 20, color: str = PALETTE[0]
) -> str:
    """Horizontal bars with labels on the left (for top-N lists)."""
    label_w, right = 220, 50
    height = max(len(items), 1) * (bar + 6) + 8
    vmax = max((v for _, v in items), default=0) or 1
    pw = width - label_w - right
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for i, (name, v) in enumerate(items):
        y = 4 + i * (bar + 6)
        w = pw * v / vmax
        out.append(
            f'<text x="{label_w - 6}" y="{y + bar * 0.7:.1f}" text-anchor="end">{escape(name)}</text>'
            f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar}" fill="{color}">'
            f"<title>{escape(name)}: {v:g}</title></rect>"
            f'<text x="{label_w + w + 4:.1f}" y="{y + bar * 0.7:.1f}">{v:g}</text>'
        )
    out.append("</svg>")
    return "".join(out)
