"""`curate report RUN_DIR -o report.html`: one self-contained HTML page about what a pipeline run did.

The page has no external resource at all (inline CSS, inline SVG charts from :mod:`curate.report.svg`, one
inline script that only marks each chart as rendered), so it can be attached to a CI run or mailed. Sections
appear when their data is present in the run directory (see docs/report.md):

funnel (documents and tokens per stage, removal reasons) · languages · lengths before/after · dedup cluster
sizes · mixture target vs realised · pack buckets and fill rate.
"""

from __future__ import annotations

import math
import time
from html import escape
from pathlib import Path

import curate
from curate.io.errors import OutputError
from curate.io.output import write_text_atomic
from curate.io.storage import is_remote
from curate.registry import stage_named
from curate.report.data import StageDir, cluster_sizes, discover, length_histogram, mixture
from curate.report.svg import bar_chart, hbar_chart, short
from curate.stages.corpus_stats import LengthHistogram

MAX_BARS = 20

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:980px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 6px}.meta{color:#666;font-size:13px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure.chart{margin:8px 0 16px}figcaption{font-size:12px;color:#666;margin-top:2px}
.missing{color:#888;font-size:13px}nav a{margin-right:12px;font-size:13px}
"""

# Marks each chart figure as rendered once the browser has laid out its SVG (the Chromium test reads it).
_CHECK_SCRIPT = """
for (const fig of document.querySelectorAll('figure.chart')) {
  const svg = fig.querySelector('svg');
  const box = svg ? svg.getBBox() : {width: 0, height: 0};
  const marks = svg ? svg.querySelectorAll('.mark').length : 0;
  const ok = box.width > 0 && box.height > 0 && marks > 0;
  fig.setAttribute('data-rendered', ok ? 'yes' : 'no');
  if (!ok) console.error('chart not rendered: ' + fig.id);
}
"""


def _figure(chart_id: str, svg: str, caption: str = "") -> str:
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="chart" id="chart-{escape(chart_id)}">{svg}{note}</figure>'


def _cell(value) -> str:
    if value is None:
        return '<td class="n">–</td>'
    if isinstance(value, float):
        return f'<td class="n">{"–" if math.isnan(value) else f"{value:,.4g}"}</td>'
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    return f"<td>{escape(str(value))}</td>"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _overview(stages: list[StageDir]) -> str:
    rows = []
    for s in stages:
        docs_in, docs_out = s.docs_in(), s.docs_out()
        kept = f"{100 * docs_out / docs_in:.1f}%" if docs_in and docs_out is not None else None
        rows.append([s.name, s.reads or "input", s.stage, docs_in, docs_out, kept, s.stats.get("chars_out"),
                     s.tokens()[1], s.stats.get("wall_seconds"), _what(s.stage)])
    return _table(["output", "reads", "stage", "docs in", "docs out", "kept", "chars out", "tokens out", "seconds",
                   "what the stage does"], rows)


def _what(stage: str) -> str:
    """The first sentence of the stage's help in the command table ("" for outputs of no stage)."""
    spec = stage_named(stage)
    return spec.help.split(": ", 1)[0].split(". ", 1)[0].split("; ", 1)[0] if spec else ""


def _labels(stages: list[StageDir]) -> dict[str, str]:
    """Chart label per stage: ``name (stage)``, plus ``← what it reads`` where that is not the stage listed
    just before it (a branch), so branches never read as a chain."""
    labels, previous = {}, None
    for s in stages:
        branch = s.reads != previous and not (s.reads is None and previous is None)
        labels[s.name] = f"{s.name} ({s.stage})" + (f" ← {s.reads or 'input'}" if branch else "")
        previous = s.name
    return labels


def _funnel(stages: list[StageDir]) -> str:
    steps: list[tuple[str, float]] = []
    first = stages[0]
    if first.docs_in() is not None:
        steps.append(("input", first.docs_in() or 0))
    labels = _labels(stages)
    steps += [(labels[s.name], s.docs_out() or 0) for s in stages if s.docs_out() is not None]
    parts = ["<h2 id='funnel'>Funnel</h2>", _overview(stages)]
    if steps:
        parts.append(_figure("funnel", hbar_chart(steps, unit=" docs", total=steps[0][1]),
                             "Documents after each stage (share of the input)."))
    tokens = []
    for s in stages:
        tokens_in, tokens_out = s.tokens()
        if tokens_in is not None:
            tokens.append((f"{s.name} in", tokens_in))
        if tokens_out is not None:
            tokens.append((f"{s.name} out", tokens_out))
    if tokens:
        parts.append(_figure("tokens", hbar_chart(tokens, unit=" tokens", total=tokens[0][1]),
                             "Tokens where a stage counted them (mix apply, pack)."))
    for s in stages:
        removed = sorted(s.removed().items(), key=lambda kv: (-kv[1], kv[0]))
        if removed:
            shown = removed[:MAX_BARS]
            more = f"; {len(removed) - len(shown)} smaller reasons not shown" if len(removed) > len(shown) else ""
            kind = ("first failing filter per document" if "removed_in_order" in s.stats
                    else "documents per reason (a document can fail several)")
            parts.append(f"<h3>Removed by {escape(s.name)} ({escape(s.stage)})</h3>")
            parts.append(_figure(f"removed-{s.name}", hbar_chart(shown, unit=" docs", total=s.docs_in(),
                                                                  color="#c0504d"), f"{kind}{more}."))
        dropped = s.stats.get("tokens", {}).get("dropped") if isinstance(s.stats.get("tokens"), dict) else None
        if dropped:
            parts.append(f"<h3>Tokens dropped by {escape(s.name)}</h3>")
            parts.append(_figure(f"dropped-{s.name}", hbar_chart(sorted(dropped.items(), key=lambda kv: -kv[1]),
                                                                  unit=" tokens", total=s.tokens()[0],
                                                                  color="#c0504d")))
    return "".join(parts)


def _languages(stages: list[StageDir]) -> str | None:
    stage = next((s for s in stages if isinstance(s.stats.get("by_lang"), dict) and s.stats["by_lang"]), None)
    if stage is None:
        return None
    by_lang = stage.stats["by_lang"]
    ordered = sorted(by_lang.items(), key=lambda kv: (-int(kv[1].get("docs_in", 0)), kv[0]))
    shown = ordered[:MAX_BARS]
    out_key = "docs_out" if any("docs_out" in row for _, row in shown) else "docs_passed"
    series = {"documents in": [row.get("docs_in", 0) for _, row in shown],
              "documents kept": [row.get(out_key, 0) for _, row in shown]}
    rest = len(ordered) - len(shown)
    caption = f"From {stage.name} ({stage.stage}), largest {len(shown)} languages" + (f"; {rest} more." if rest else ".")
    return ("<h2 id='languages'>Languages</h2>"
            + _figure("languages", bar_chart([lang for lang, _ in shown], series, y_label="documents"), caption))


def _length_section(stages: list[StageDir], text_column: str) -> str | None:
    first = stages[0]
    before_paths = first.inputs if first.docs_in() is not None and first.inputs else [str(first.path)]
    before = length_histogram(before_paths, text_column) or length_histogram([str(first.path)], text_column)
    last = next((s for s in reversed(stages) if s.has_column(text_column)), None)
    after = length_histogram([str(last.path)], text_column) if last is not None else None
    histograms = {name: h for name, h in (("before", before), (f"after {last.name if last else ''}", after)) if h}
    if not histograms:
        return None
    bins = _octave_union(list(histograms.values()))
    series, notes = {}, {}
    for name, h in histograms.items():
        counts = {low: count for low, _, count in h.octaves()}
        series[name] = [counts.get(low, 0) / h.total for low, _ in bins]
        notes[name] = [f"{counts.get(low, 0):,} documents" for low, _ in bins]
    labels = [f"{short(low)}–{short(high)}" for low, high in bins]
    rows = [[name, h.total, h.min, h.quantile(0.1), h.quantile(0.5), h.quantile(0.9), h.max, h.sum / h.total]
            for name, h in histograms.items()]
    return ("<h2 id='lengths'>Document lengths</h2>"
            + _figure("lengths", bar_chart(labels, series, y_label="share of documents", percent=True, notes=notes),
                      "Characters per document in power-of-two ranges, as a share of each side's documents.")
            + _table(["", "documents", "min", "p10", "median", "p90", "max", "mean"], rows))


def _octave_union(histograms: list[LengthHistogram]) -> list[tuple[int, int]]:
    ranges = sorted({(low, high) for h in histograms for low, high, _ in h.octaves()})
    return ranges


def _clusters(stages: list[StageDir]) -> str | None:
    parts = []
    for s in stages:
        if not s.stage.startswith("dedup"):
            continue
        sizes = cluster_sizes(s)
        if not sizes:
            continue
        singles = sizes.get(1, 0)
        bins: dict[str, int] = {}
        for size in sorted(k for k in sizes if k > 1):
            low = 1 << (size - 1).bit_length() - 1 if size > 4 else size
            label = str(size) if size <= 4 else f"{low + 1}–{2 * low}"
            bins[label] = bins.get(label, 0) + sizes[size]
        clustered = sum(sizes[k] for k in sizes if k > 1)
        removed = sum((k - 1) * v for k, v in sizes.items())
        caption = (f"{s.name}: {clustered:,} clusters of 2 or more documents ({removed:,} documents removed), "
                   f"{singles:,} documents without a duplicate.")
        if bins:
            parts.append(_figure(f"clusters-{s.name}", bar_chart(list(bins), {"clusters": list(bins.values())},
                                                                 y_label="clusters"), caption))
        else:
            parts.append(f"<p class='missing'>{escape(caption)}</p>")
    return "<h2 id='dedup'>Duplicate clusters</h2>" + "".join(parts) if parts else None


def _mixture(stages: list[StageDir]) -> str | None:
    parts = []
    for s in stages:
        table = mixture(s)
        if not table:
            continue
        domains = list(table)
        series = {"realised": [table[d]["realised"] for d in domains]}
        if any(not math.isnan(row["target"]) for row in table.values()):
            series = {"target": [0.0 if math.isnan(table[d]["target"]) else table[d]["target"] for d in domains],
                      **series}
        parts.append(_figure(f"mixture-{s.name}", bar_chart(domains, series, y_label="token share", percent=True),
                             f"{s.name}: token share per domain, target vs realised."))
        parts.append(_table(["domain", "target", "realised", "tokens", "documents"],
                            [[d, row["target"], row["realised"], row["tokens"], row["docs"]] for d, row in table.items()]))
    return "<h2 id='mixture'>Mixture</h2>" + "".join(parts) if parts else None


def _pack(stages: list[StageDir]) -> str | None:
    parts = []
    for s in stages:
        buckets, compare = s.stats.get("buckets"), s.stats.get("compare")
        if isinstance(buckets, dict) and buckets:
            names = list(buckets)
            tokens = [int(b.get("tokens", 0)) for b in buckets.values()]
            notes = {"tokens": [f"{int(b.get('sequences', 0)):,} sequences" for b in buckets.values()]}
            fill = s.stats.get("fill_rate")
            caption = f"{s.name}: tokens per bucket" + (f"; fill rate {100 * fill:.2f}% (real tokens / slots)."
                                                        if isinstance(fill, int | float) else ".")
            parts.append(_figure(f"pack-{s.name}", bar_chart(names, {"tokens": tokens}, y_label="tokens", notes=notes),
                                 caption))
        if isinstance(compare, dict) and compare:
            names = list(compare)
            parts.append(_figure(f"pack-compare-{s.name}", bar_chart(
                names, {"fill rate": [float(compare[n].get("fill_rate", 0)) for n in names],
                        "tokens kept": [float(compare[n].get("kept_share", 0)) for n in names]}, percent=True),
                f"{s.name}: packing strategies compared."))
        if parts and isinstance(s.stats.get("tokens"), dict):
            t = s.stats["tokens"]
            parts.append(_table(["tokens in", "tokens out", "dropped", "padding", "sequences", "fill rate"],
                                [[t.get("in"), t.get("out"), t.get("dropped_total"), t.get("padding"),
                                  s.stats.get("sequences"), s.stats.get("fill_rate")]]))
    return "<h2 id='pack'>Packing</h2>" + "".join(parts) if parts else None


def build_report(run_dir: str | Path, *, text_column: str = "text", title: str | None = None) -> str:
    """The report's HTML as a string."""
    stages = discover(run_dir)
    where = str(run_dir) if is_remote(str(run_dir)) else str(Path(run_dir).resolve())
    title = title or f"curate run: {where.rstrip('/').rsplit('/', 1)[-1]}"
    sections = {
        "funnel": _funnel(stages),
        "languages": _languages(stages),
        "lengths": _length_section(stages, text_column),
        "dedup": _clusters(stages),
        "mixture": _mixture(stages),
        "pack": _pack(stages),
    }
    present = {k: v for k, v in sections.items() if v}
    nav = "".join(f'<a href="#{k}">{k}</a>' for k in present)
    absent = [k for k, v in sections.items() if not v]
    missing = f"<p class='missing'>No data in this run for: {', '.join(absent)}.</p>" if absent else ""
    meta = (f"{len(stages)} stage outputs in {escape(where)} · curate {curate.__version__} · "
            f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><h1>{escape(title)}</h1><p class='meta'>{meta}</p><nav>{nav}</nav>{missing}"
            + "".join(present.values()) + f"<script>{_CHECK_SCRIPT}</script></body></html>\n")


def write_report(run_dir: str | Path, output: str | Path, *, text_column: str = "text", title: str | None = None) -> Path:
    """Build the report for ``run_dir`` and write it atomically to ``output``; returns the path."""
    html = build_report(run_dir, text_column=text_column, title=title)
    if is_remote(output):
        write_text_atomic(output, html)
        return output
    path = Path(output)
    if path.is_dir():
        raise OutputError(f"{output}: is a directory; name the HTML file to write (-o report.html)")
    if not path.parent.exists():
        raise OutputError(f"{path.parent}: no such directory for -o {output}")
    write_text_atomic(path, html)
    return path.resolve()
