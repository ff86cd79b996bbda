"""Small, dependency-free SVG charts for the analyst report: stacked bars, bars, and a graph drawing.

Every function returns one ``<svg>`` element as text. All text is escaped; colours come from a fixed
palette so the same input gives the same bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

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


def spring_layout(n: int, edges: Sequence[tuple[int, int]], iterations: int = 120) -> np.ndarray:
    """Fruchterman-Reingold positions in [0, 1]^2, deterministic (starts on a circle, no randomness)."""
    if n == 0:
        return np.zeros((0, 2))
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pos = np.column_stack([np.cos(angles), np.sin(angles)]) * 0.5
    if n == 1:
        return np.array([[0.5, 0.5]])
    k = 1.0 / math.sqrt(n)
    src = np.array([a for a, _ in edges], dtype=int)
    dst = np.array([b for _, b in edges], dtype=int)
    temp = 0.1
    for _ in range(iterations):
        delta = pos[:, None, :] - pos[None, :, :]
        dist = np.maximum(np.linalg.norm(delta, axis=2), 1e-3)
        disp = ((k * k / dist**2)[:, :, None] * delta).sum(axis=1)
        if len(src):
            d = pos[src] - pos[dst]
            length = np.maximum(np.linalg.norm(d, axis=1), 1e-3)
            pull = (length / k)[:, None] * d
            np.add.at(disp, src, -pull)
            np.add.at(disp, dst, pull)
        disp -= pos * (0.5 * k * n)  # gravity keeps disconnected parts together
        length = np.maximum(np.linalg.norm(disp, axis=1), 1e-9)
        pos += disp / length[:, None] * np.minimum(length, temp)[:, None]
        temp *= 0.97
    lo, hi = pos.min(axis=0), pos.max(axis=0)
    span = float(max((hi - lo).max(), 1e-9))
    scaled: np.ndarray = (pos - (lo + hi) / 2) / span + 0.5  # one scale for both axes: no stretching
    return scaled


def graph(
    nodes: Sequence[tuple[str, str, str]],
    edges: Sequence[tuple[int, int, str]],
    colours: Mapping[str, str],
    width: int = 900,
    height: int = 640,
) -> str:
    """A node-link drawing. ``nodes``: (label, tooltip, fill); ``edges``: (i, j, edge type)."""
    pos = spring_layout(len(nodes), [(a, b) for a, b, _ in edges])
    pad = 40
    side = min(width, height) - 2 * pad
    x0, y0 = (width - side) / 2, (height - side) / 2
    xy = [(x0 + p[0] * side, y0 + p[1] * side) for p in pos]
    # parallel edges of different types between one pair are drawn side by side
    seen: dict[tuple[int, int], int] = {}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" {FONT}>']
    for a, b, kind in edges:
        pair = (min(a, b), max(a, b))
        offset = seen.get(pair, 0)
        seen[pair] = offset + 1
        (x1, y1), (x2, y2) = xy[a], xy[b]
        dx, dy = y2 - y1, x1 - x2
        norm = math.hypot(dx, dy) or 1.0
        shift = 2.5 * offset
        ox, oy = dx / norm * shift, dy / norm * shift
        out.append(
            f'<line x1="{x1 + ox:.1f}" y1="{y1 + oy:.1f}" x2="{x2 + ox:.1f}" y2="{y2 + oy:.1f}" '
            f'stroke="{colours[kind]}" stroke-width="1.4" stroke-opacity="0.7" class="edge e-{escape(kind)}">'
            f"<title>{escape(kind)}</title></line>"
        )
    small = len(nodes) > 40
    for (label, tip, fill), (x, y) in zip(nodes, xy, strict=True):
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{5 if small else 7}" fill="{fill}" stroke="#333" '
            f'stroke-width="0.8"><title>{escape(tip)}</title></circle>'
        )
        if not small:
            out.append(f'<text x="{x + 9:.1f}" y="{y + 4:.1f}">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
