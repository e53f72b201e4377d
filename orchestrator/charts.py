"""Inline SVG charts for the self-contained HTML report (pure, no JavaScript, no network)."""

from __future__ import annotations

import math
from html import escape

W, H = 640, 260
ML, MR, MT, MB = 64, 16, 28, 40
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks = []
    t = start
    while t <= hi + step * 1e-9:
        if t >= lo - step * 1e-9:
            ticks.append(round(t, 10))
        t += step
    return ticks


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"


def _frame(title: str, xlabel: str, ylabel: str, x0, x1, y0, y1) -> tuple[list[str], callable, callable]:
    sx = lambda x: ML + (x - x0) / ((x1 - x0) or 1) * (W - ML - MR)
    sy = lambda y: H - MB - (y - y0) / ((y1 - y0) or 1) * (H - MT - MB)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" '
           f'aria-label="{escape(title)}">',
           f'<rect width="{W}" height="{H}" fill="#fff"/>',
           f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>',
           f'<text x="{W / 2}" y="{H - 6}" text-anchor="middle" font-size="11">{escape(xlabel)}</text>',
           f'<text x="14" y="{H / 2}" text-anchor="middle" font-size="11" transform="rotate(-90 14 {H / 2})">{escape(ylabel)}</text>']
    for t in nice_ticks(y0, y1):
        y = sy(t)
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ML - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{_fmt(t)}</text>')
    for t in nice_ticks(x0, x1):
        x = sx(t)
        out.append(f'<text x="{x:.1f}" y="{H - MB + 14}" text-anchor="middle" font-size="10">{_fmt(t)}</text>')
    out.append(f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" fill="none" stroke="#999"/>')
    return out, sx, sy


def empty_chart(title: str, message: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} 80" width="{W}" height="80">'
            f'<rect width="{W}" height="80" fill="#fafafa" stroke="#ccc"/>'
            f'<text x="{W / 2}" y="30" text-anchor="middle" font-size="14" font-weight="bold">{escape(title)}</text>'
            f'<text x="{W / 2}" y="55" text-anchor="middle" font-size="12" fill="#666">{escape(message)}</text></svg>')


def line_chart(title: str, series: list[tuple[str, list[tuple[float, float]]]], xlabel: str, ylabel: str,
               scatter: bool = False, y_zero: bool = True, marks: list[tuple[float, str]] | None = None,
               hlines: list[tuple[float, str]] | None = None) -> str:
    """``marks``: vertical lines at x (an event); ``hlines``: horizontal ones at y (a percentile)."""
    pts = [(x, y) for _, s in series for x, y in s if not (math.isnan(y) or math.isinf(y))]
    if not pts:
        return empty_chart(title, "no data")
    x0, x1 = min(p[0] for p in pts), max(p[0] for p in pts)
    y0 = 0.0 if y_zero else min(p[1] for p in pts)
    y1 = max([p[1] for p in pts] + [y for y, _ in hlines or []]) * 1.05 or 1.0
    out, sx, sy = _frame(title, xlabel, ylabel, x0, x1, y0, y1)
    for i, (label, s) in enumerate(series):
        color = COLORS[i % len(COLORS)]
        good = [(x, y) for x, y in s if not (math.isnan(y) or math.isinf(y))]
        if scatter:
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="1.6" fill="{color}" fill-opacity="0.6"/>' for x, y in good]
        elif good:
            d = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(good))
            out.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="1.8"/>')
            out += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{color}"/>' for x, y in good] if len(good) <= 12 else []
        if len(series) > 1 or label:
            out.append(f'<text x="{W - MR - 6}" y="{MT + 14 + 13 * i}" text-anchor="end" font-size="11" fill="{color}">'
                       f'{escape(label)}</text>')
    for y, label in hlines or []:
        out.append(f'<line x1="{ML}" x2="{W - MR}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" stroke="#b00020" '
                   f'stroke-dasharray="5 3"/>')
        out.append(f'<text x="{ML + 4}" y="{sy(y) - 3:.1f}" font-size="10" fill="#b00020">{escape(label)}</text>')
    for x, label in marks or []:
        out.append(f'<line x1="{sx(x):.1f}" x2="{sx(x):.1f}" y1="{MT}" y2="{H - MB}" stroke="#555" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{sx(x) + 3:.1f}" y="{MT + 12}" font-size="10" fill="#333">{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)


def histogram_chart(title: str, lo: float, hi: float, counts: list[int], xlabel: str) -> str:
    """Equal bins from ``lo`` to ``hi`` (counted by the caller, who may hold millions of values)."""
    if not counts or not any(counts):
        return empty_chart(title, "no data")
    bins = len(counts)
    width = (hi - lo) / bins
    out, sx, sy = _frame(title, xlabel, "requests", lo, hi, 0, max(counts) * 1.05)
    for i, c in enumerate(counts):
        x, x2 = sx(lo + i * width), sx(lo + (i + 1) * width)
        out.append(f'<rect x="{x:.1f}" y="{sy(c):.1f}" width="{max(x2 - x - 1, 1):.1f}" height="{sy(0) - sy(c):.1f}" fill="{COLORS[0]}"/>')
    out.append("</svg>")
    return "".join(out)
