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
SMALL = 'font-family="system-ui, sans-serif" font-size="10"'


def short(value: float) -> str:
    """1234 → 1.2k, 5600000 → 5.6M; small fractions keep two significant digits."""
    magnitude = abs(value)
    for limit, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if magnitude and magnitude < 1:
        return f"{value:.2g}"
    return f"{value:.4g}"


def percent(share: float | None) -> str | None:
    """A share as a percentage that never reads 100% unless it is exactly 1 (a fill rate of 0.99996)."""
    if share is None or not isinstance(share, int | float) or math.isnan(share):
        return None
    if share == 1:
        return "100%"
    text = f"{100 * share:.2f}%"
    return f"{100 * share:.4f}%" if text == "100.00%" else text


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


def as_percent(value: float) -> str:
    return percent(value) or "–"


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
    longest = max((len(c) for c in categories), default=0)
    rotate = len(categories) > 8 or longest > 10
    # rotated labels (-35°) need room below the axis and, for the first one, left of it
    bottom = min(30 + 3.6 * longest, 150) if rotate else 40
    top, right, left = 24 + 15 * max(len(names) - 1, 0), 16, 64
    if rotate:
        left = max(left, min(5.6 * longest * 0.82 - (width - left - right) / max(len(categories), 1) / 2, 180))
    height = int(height - 78 + bottom)
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_max(max((v for values in series.values() for v in values), default=0))
    group = plot_w / max(len(categories), 1)
    bar = min(group * 0.8 / max(len(names), 1), 64)  # a few categories get bars, not slabs
    inset = (group - bar * len(names)) / 2
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
    for i, category in enumerate(categories):
        x0 = left + group * i + inset
        for j, name in enumerate(names):
            value = float(series[name][i])
            h = plot_h * value / peak
            shown = as_percent(value) if percent else f"{value:,.6g}"
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
    label_w = min(320, 12 + 7 * max((len(label) for label, _ in rows), default=4))
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


def histogram(edges: Sequence[float], counts: Sequence[float], *, lines: Sequence[tuple[float, str]] = (),
              width: int = 360, height: int = 170, x_label: str = "", color: str = PALETTE[0]) -> str:
    """One pre-binned histogram (``len(edges) == len(counts) + 1``) with labelled vertical lines (thresholds)."""
    top, right, bottom, left = 22, 10, 34, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high = float(edges[0]), float(edges[-1])
    span = (high - low) or 1.0
    peak = _nice_max(max(counts, default=0))

    def x_of(value: float) -> float:
        return left + plot_w * (min(max(value, low), high) - low) / span

    parts = [f'<svg class="chart-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    for k in (0, 1, 2):
        y = top + plot_h - plot_h * k / 2
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" {FONT}>{short(peak * k / 2)}</text>')
    for i, count in enumerate(counts):
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        h = plot_h * count / peak
        parts.append(f'<rect class="mark" x="{x0:.1f}" y="{top + plot_h - h:.1f}" width="{max(x1 - x0 - 0.5, 0.5):.1f}" '
                     f'height="{max(h, 0.5 if count else 0):.1f}" fill="{color}"><title>'
                     f"{escape(f'{short(edges[i])}–{short(edges[i + 1])}: {count:,.0f} documents')}</title></rect>")
    for value, label in lines:
        x = x_of(value)
        parts.append(f'<line class="threshold" x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{top + plot_h}" '
                     f'stroke="#c0504d" stroke-width="1.5" stroke-dasharray="4 2"><title>{escape(label)}</title></line>'
                     f'<text x="{x - 3 if x > left + plot_w * 0.5 else x + 3:.1f}" y="{top - 8}" '
                     f'text-anchor="{"end" if x > left + plot_w * 0.5 else "start"}" fill="#c0504d" {FONT}>'
                     f"{escape(label)}</text>")
    base = top + plot_h
    ends = (short(low), short(high))
    if ends[0] == ends[1]:  # a narrow range: enough digits to tell its ends apart
        ends = (f"{low:.4g}", f"{high:.4g}")
    parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{base}" y2="{base}" stroke="#555"/>'
                 f'<text x="{left}" y="{base + 13}" {FONT}>{ends[0]}</text>'
                 f'<text x="{left + plot_w}" y="{base + 13}" text-anchor="end" {FONT}>{ends[1]}</text>')
    if x_label:
        parts.append(f'<text x="{left + plot_w / 2:.1f}" y="{base + 27}" text-anchor="middle" {FONT}>{escape(x_label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter(points: Sequence[tuple[float, float]], *, x_label: str, y_label: str, width: int = 420,
            height: int = 300, marked: Sequence[tuple[float, float, str]] = ()) -> str:
    """Points with a y = x diagonal (predicted against measured), plus labelled ``marked`` points."""
    top, right, bottom, left = 14, 14, 40, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for p in points for v in p] + [v for x, y, _ in marked for v in (x, y)]
    low, high = min(values, default=0.0), max(values, default=1.0)
    pad = (high - low) * 0.05 or 0.5
    low, high = low - pad, high + pad

    def at(x: float, y: float) -> tuple[float, float]:
        return left + plot_w * (x - low) / (high - low), top + plot_h - plot_h * (y - low) / (high - low)

    parts = [f'<svg class="chart-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#ccc"/>']
    (x0, y0), (x1, y1) = at(low, low), at(high, high)
    parts.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="#aaa" stroke-dasharray="3 3"/>')
    for x, y in points:
        cx, cy = at(x, y)
        parts.append(f'<circle class="mark" cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{PALETTE[0]}" fill-opacity="0.7">'
                     f"<title>{escape(f'{x_label} {x:.4g} · {y_label} {y:.4g}')}</title></circle>")
    for x, y, label in marked:
        cx, cy = at(x, y)
        parts.append(f'<circle class="mark" cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{PALETTE[1]}"><title>'
                     f"{escape(f'{label}: {x_label} {x:.4g} · {y_label} {y:.4g}')}</title></circle>"
                     f'<text x="{cx + 7:.1f}" y="{cy + 4:.1f}" {FONT}>{escape(label)}</text>')
    parts.append(f'<text x="{left}" y="{top + plot_h + 14}" {FONT}>{low:.3g}</text>'
                 f'<text x="{left + plot_w}" y="{top + plot_h + 14}" text-anchor="end" {FONT}>{high:.3g}</text>'
                 f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" {FONT}>{escape(x_label)}</text>'
                 f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" {FONT}>'
                 f"{escape(y_label)}</text></svg>")
    return "".join(parts)


def stage_graph(nodes: Sequence[tuple[str, str, str, int]], edges: Sequence[tuple[str, str]], *,
                width: int = 940) -> str:
    """The run's stages as boxes (name, stage, a count line; column = depth) with an arrow from each input.

    ``nodes``: (name, stage, note, depth) in display order (depth first), so siblings stack under each other.
    """
    box_w, box_h, gap_y = 170, 44, 12
    depth_max = max((d for *_, d in nodes), default=0)
    step_x = min(box_w + 40, (width - box_w - 8) / max(depth_max, 1))
    place: dict[str, tuple[float, float]] = {}
    for row, (name, _, _, depth) in enumerate(nodes):
        place[name] = (4 + step_x * depth, 4 + row * (box_h + gap_y))
    height = 8 + len(nodes) * (box_h + gap_y)
    parts = [f'<svg class="chart-svg" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">',
             '<defs><marker id="arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#888"/></marker></defs>']
    for source, target in edges:
        if source not in place or target not in place:
            continue
        (sx, sy), (tx, ty) = place[source], place[target]
        x0, y0 = sx + 16, sy + box_h
        parts.append(f'<path d="M{x0:.1f},{y0:.1f} L{x0:.1f},{ty + box_h / 2:.1f} L{tx - 2:.1f},{ty + box_h / 2:.1f}" '
                     'fill="none" stroke="#888" marker-end="url(#arrow)"/>')
    for name, stage, note, _ in nodes:
        x, y = place[name]
        parts.append(f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{box_w}" height="{box_h}" rx="4" '
                     f'fill="#eef3fa" stroke="{PALETTE[0]}"><title>{escape(f"{name} ({stage}): {note}")}</title></rect>'
                     f'<text x="{x + 8:.1f}" y="{y + 16:.1f}" {FONT} font-weight="bold">{escape(_clip(name, 26))}</text>'
                     f'<text x="{x + 8:.1f}" y="{y + 30:.1f}" {FONT} fill="#555">{escape(_clip(stage, 28))}</text>'
                     f'<text x="{x + 8:.1f}" y="{y + 41:.1f}" {SMALL} fill="#555">{escape(_clip(note, 30))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _clip(text: str, size: int) -> str:
    return text if len(text) <= size else text[: size - 1] + "…"
