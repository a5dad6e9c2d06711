"""`curate report RUN_DIR -o report.html`: one self-contained HTML page about what a pipeline run did.

The page has no external resource at all (inline CSS, inline SVG charts from :mod:`curate.report.svg`, one
inline script that only marks each chart as rendered), so it can be attached to a CI run or mailed, and it
reads the same without JavaScript. Sections appear when their data is present in the run directory (see
docs/report.md): stages (the graph of what read what) · funnel and tokens · removals with examples ·
languages per stage · signals with their thresholds · parameters · lengths · duplicate clusters · mixture
and its search · packing. Whatever is computed from the shards reads a bounded sample
(:mod:`curate.report.samples`), so the page and its build time do not grow with the corpus.
"""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

import curate
from curate.io.errors import OutputError
from curate.io.output import write_text_atomic
from curate.io.storage import is_remote
from curate.report import sections
from curate.report.data import discover, tool_steps

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px auto;max-width:1000px;color:#222;padding:0 16px}
h1{font-size:22px;margin-bottom:4px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:22px 0 6px}.meta{color:#666;font-size:13px;font-weight:normal}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{padding:3px 10px;border-bottom:1px solid #eee}
th{text-align:left;background:#f6f6f6;white-space:nowrap}td.n{text-align:right;font-variant-numeric:tabular-nums}
table.wide{display:block;overflow-x:auto;max-width:100%}
figure.chart{margin:8px 0 16px}figcaption{font-size:12px;color:#666;margin-top:2px;max-width:760px}
.missing,.note{color:#666;font-size:13px}nav a{margin-right:12px;font-size:13px}
.grid{display:flex;flex-wrap:wrap;gap:0 16px}.grid figure.chart{width:360px;margin:4px 0 12px}
.reason{margin:10px 0}.reason-name{font-size:13px;font-weight:600;margin-bottom:4px}
.docs{display:flex;gap:10px;align-items:stretch}.doc{flex:1;min-width:0;border:1px solid #e3e3e3;border-radius:4px;
padding:6px 8px;background:#fafafa}.doc-meta{font-size:11px;color:#777;margin-bottom:3px}
.doc-text{font-family:ui-monospace,monospace;font-size:11.5px;white-space:pre-wrap;overflow-wrap:anywhere;
max-height:9.5em;overflow:hidden}
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


def build_report(run_dir: str | Path, *, text_column: str = "text", id_column: str = "id",
                 title: str | None = None) -> str:
    """The report's HTML as a string."""
    stages = discover(run_dir)
    where = str(run_dir) if is_remote(str(run_dir)) else str(Path(run_dir).resolve())
    steps = tool_steps(where)
    title = title or f"curate run: {where.rstrip('/').rsplit('/', 1)[-1]}"
    languages = sections.languages_section(stages, text_column)
    top = _top_languages(stages)
    parts = {
        "stages": sections.stages_section(stages),
        "funnel": sections.funnel_section(stages),
        "removals": sections.removals_section(stages, text_column, id_column),
        "languages": languages,
        "signals": sections.signals_section(stages, top),
        "lengths": sections.lengths_section(stages, text_column),
        "dedup": sections.clusters_section(stages, text_column, id_column),
        "mixture": sections.mixture_section(stages, steps),
        "pack": sections.pack_section(stages),
        "parameters": sections.parameters_section(stages, top),
    }
    present = {k: v for k, v in parts.items() if v}
    nav = "".join(f'<a href="#{k}">{k}</a>' for k in present)
    absent = [k for k, v in parts.items() if not v]
    missing = f"<p class='missing'>No data in this run for: {', '.join(absent)}.</p>" if absent else ""
    versions = sorted({str(s.manifest["curate_version"]) for s in stages if s.manifest.get("curate_version")})
    made_by = f" (outputs written by curate {', '.join(versions)})" if versions else ""
    meta = (f"{len(stages)} stage outputs in {escape(where)} · report by curate {curate.__version__}{escape(made_by)} · "
            f"generated {time.strftime('%Y-%m-%d %H:%M:%S')}")
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head>'
            f"<body><h1>{escape(title)}</h1><p class='meta'>{meta}</p><nav>{nav}</nav>{missing}"
            + "".join(present.values()) + f"<script>{_CHECK_SCRIPT}</script></body></html>\n")


def _top_languages(stages) -> list[str]:
    """The languages with most documents in the first langid statistics, for the threshold lines."""
    for s in stages:
        by_lang = s.stats.get("by_lang")
        if isinstance(by_lang, dict) and by_lang:
            ranked = sorted(by_lang.items(), key=lambda kv: (-int(kv[1].get("docs_in", 0)), kv[0]))
            return [lang for lang, _ in ranked[:6]]
    return []


def write_report(run_dir: str | Path, output: str | Path, *, text_column: str = "text", id_column: str = "id",
                 title: str | None = None) -> Path:
    """Build the report for ``run_dir`` and write it atomically to ``output``; returns the path."""
    html = build_report(run_dir, text_column=text_column, id_column=id_column, title=title)
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
