"""Inline SVG bar charts, written by hand so the report needs no JavaScript library and no network.

Every bar is a ``<rect class="mark">`` with a ``<title>`` (the browser's tooltip), so a test can count what
was drawn and a reader can hover for exact numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#3b6ea8", "#e08a2c", "#4f9d69", "#c0504d", "#8064a2", "#4bacc6")
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def short(value: float) -> str:
    """1234 → 1.2k, 5600000 → 5.6M; small fractions keep two significant digits."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if magnitude and magnitude < 1:
        return f"{value:.2g}"
    return f"{value:.4g}"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exponent >= value:
            return step * exponent
    return 10 * exponent


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        parts.append(f'<rect x="{x:.1f}" y="{y + 15 * i:.1f}" width="10" height="10" fill="{PALETTE[i % len(PALETTE)]}"/>'
                     f'<text x="{x + 14:.1f}" y="{y + 9 + 15 * i:.1f}" {FONT}>{escape(name)}</text>')
    return parts


def bar_chart(
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    *,
    y_label: str = "",
    percent: bool = False,
    width: int = 760,
    height: int = 300,
    notes: dict[str, Sequence[str]] | None = None,
) -> str:
    """Vertical grouped bars: one group per category, one bar per series. ``notes`` add tooltip text."""
    names = list(series)
    top, right, bottom, left = 24 + 15 * max(len(names) - 1, 0), 16, 78, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((v for values in series.values() for v in values), default=0))
    group = plot_w / max(len(categories), 1)
    bar = group * 0.8 / max(len(names), 1)
    parts = [f'<svg class="chart-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for k in range(6):
        value = peak * k / 5
        y = top + plot_h - plot_h * k / 5
        label = f"{100 * value:.3g}%" if percent else short(value)
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{label}</text>')
    if y_label:
        parts.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
                     f'{FONT}>{escape(y_label)}</text>')
    rotate = len(categories) > 8 or max((len(c) for c in categories), default=0) > 10
    for i, category in enumerate(categories):
        x0 = left + group * i + group * 0.1
        for j, name in enumerate(names):
            value = float(series[name][i])
            h = plot_h * value / peak
            shown = f"{100 * value:.2f}%" if percent else f"{value:,.6g}"
            note = f" · {notes[name][i]}" if notes and name in notes else ""
            parts.append(
                f'<rect class="mark" x="{x0 + bar * j:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{max(h, 0.5 if value > 0 else 0):.1f}" fill="{PALETTE[j % len(PALETTE)]}">'
                f"<title>{escape(f'{category} · {name}: {shown}{note}')}</title></rect>"
            )
        cx, cy = left + group * (i + 0.5), top + plot_h + 14
        anchor = f'text-anchor="end" transform="rotate(-35 {cx:.1f} {cy:.1f})"' if rotate else 'text-anchor="middle"'
        parts.append(f'<text x="{cx:.1f}" y="{cy:.1f}" {anchor} {FONT}>{escape(category)}</text>')
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" stroke="#555"/>')
    if len(names) > 1:
        parts += _legend(names, left + plot_w - 150, 6)
    parts.append("</svg>")
    return "".join(parts)


def hbar_chart(rows: Sequence[tuple[str, float]], *, unit: str = "", width: int = 760, color: str = PALETTE[0],
               total: float | None = None) -> str:
    """Horizontal bars with the value (and share of ``total``) written after each bar: funnels and reasons."""
    label_w = min(260, 12 + 7 * max((len(label) for label, _ in rows), default=4))
    value_w = 150
    row_h = 22
    height = 10 + row_h * len(rows)
    plot_w = width - label_w - value_w
    peak = max((v for _, v in rows), default=0) or 1
    parts = [f'<svg class="chart-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for i, (label, value) in enumerate(rows):
        y = 5 + row_h * i
        w = plot_w * value / peak
        share = f" ({100 * value / total:.1f}%)" if total else ""
        text = f"{value:,.0f}{unit}{share}"
        shown = label if len(label) * 7 < label_w else label[: label_w // 7 - 1] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end" {FONT}>{escape(shown)}</text>'
            f'<rect class="mark" x="{label_w}" y="{y + 3}" width="{max(w, 1 if value > 0 else 0):.1f}" height="{row_h - 6}" '
            f'fill="{color}"><title>{escape(f"{label}: {text}")}</title></rect>'
            f'<text x="{label_w + w + 6:.1f}" y="{y + 14}" {FONT}>{escape(text)}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
