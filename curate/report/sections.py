"""The report's sections, each a function from the run's stage outputs to HTML (None: no data for it)."""

from __future__ import annotations

import math
from html import escape

from curate.io.inputs import parquet_file
from curate.registry import stage_named
from curate.report.data import StageDir, cluster_sizes, length_histogram, mixture, mixture_search
from curate.report.samples import (
    EXAMPLE_CHARS,
    Example,
    duplicate_clusters,
    examples_by_reason,
    language_counts,
    read_sample,
)
from curate.report.signals import histograms, quality_thresholds, recorded_thresholds, score_thresholds
from curate.report.svg import bar_chart, hbar_chart, histogram, percent, scatter, short, stage_graph

MAX_BARS = 20
MAX_LANGUAGES = 15
MAX_REASONS = 12  # reasons shown with examples per stage
EXAMPLES_PER_REASON = 2


def figure(chart_id: str, svg: str, caption: str = "") -> str:
    note = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure class="chart" id="chart-{escape(chart_id)}">{svg}{note}</figure>'


def _cell(value) -> str:
    if value is None:
        return '<td class="n">–</td>'
    if isinstance(value, float):
        return f'<td class="n">{"–" if math.isnan(value) else f"{value:,.4g}"}</td>'
    if isinstance(value, int):
        return f'<td class="n">{value:,}</td>'
    if isinstance(value, Num):
        return f'<td class="n">{escape(value.text)}</td>'
    return f"<td>{escape(str(value))}</td>"


class Num:
    """Text shown right-aligned in a numbers column (a percentage, an estimate)."""

    def __init__(self, text: str) -> None:
        self.text = text


def table(header: list[str], rows: list[list], css: str = "") -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table{f' class={css!r}' if css else ''}><tr>{head}</tr>{body}</table>"


def _what(stage: str) -> str:
    """The first sentence of the stage's help in the command table ("" for outputs of no stage)."""
    spec = stage_named(stage)
    return spec.help.split(": ", 1)[0].split(". ", 1)[0].split("; ", 1)[0] if spec else ""


def docs_in(stage: StageDir, by_name: dict[str, StageDir]) -> int | None:
    """Documents the stage read: its own count, else what the output it reads wrote."""
    if stage.docs_in() is not None:
        return stage.docs_in()
    parents = [by_name[p] for p in stage.parents if p in by_name]
    counts = [p.docs_out() for p in parents]
    return sum(counts) if parents and None not in counts else None


# -- stages and funnel ---------------------------------------------------------------------------------------
def depths(stages: list[StageDir]) -> dict[str, int]:
    """How many stages lie above each one on its longest chain of inputs."""
    depth: dict[str, int] = {}
    for s in stages:  # listed depth first, so a stage's parents come before it
        depth[s.name] = 1 + max((depth.get(p, 0) for p in s.parents), default=-1)
    return depth


def final(stages: list[StageDir]) -> StageDir:
    """The end of the pipeline among ``stages``: the deepest one (the last listed of equals)."""
    depth = depths(stages)
    return max(reversed(stages), key=lambda s: depth.get(s.name, 0))


def stages_section(stages: list[StageDir]) -> str:
    by_name = {s.name: s for s in stages}
    depth = depths(stages)
    nodes = []
    for s in stages:
        out = s.docs_out()
        note = f"{out:,} docs" if out is not None else "statistics only"
        tokens = s.tokens()[1]
        if tokens is not None:
            note += f" · {short(tokens)} tokens" + (" (est.)" if _estimated(s) else "")
        nodes.append((s.name, s.stage, note, depth[s.name]))
    edges = [(p, s.name) for s in stages for p in s.parents]
    rows = []
    for s in stages:
        read, wrote = docs_in(s, by_name), s.docs_out()
        kept = percent(wrote / read) if read and wrote is not None else None
        rows.append([s.name, ", ".join(s.parents) or "input", s.stage, read, wrote, Num(kept) if kept else None,
                     s.stats.get("chars_out"), s.stats.get("wall_seconds"), _what(s.stage)])
    return ("<h2 id='stages'>Stages</h2>"
            + figure("graph", stage_graph(nodes, edges), "Each stage output, with an arrow from the output it read "
                     "(as its plan records): outputs made from the same stage are branches.")
            + table(["output", "reads", "stage", "docs in", "docs out", "kept", "chars out", "seconds",
                     "what the stage does"], rows))


def _estimated(stage: StageDir) -> bool:
    """Whether the stage's token counts are estimates (mix apply without --tokenizer: bytes / 4)."""
    return str(stage.stats.get("tokenizer", "")) == "bytes/4"


def _labels(stages: list[StageDir]) -> dict[str, str]:
    """Chart label per stage: ``name (stage)``, plus ``← what it reads`` where that is not the stage listed
    just before it (a branch), so branches never read as a chain."""
    labels, previous = {}, None
    for s in stages:
        branch = s.reads != previous and not (s.reads is None and previous is None)
        labels[s.name] = f"{s.name} ({s.stage})" + (f" ← {s.reads or 'input'}" if branch else "")
        previous = s.name
    return labels


def funnel_section(stages: list[StageDir]) -> str:
    steps: list[tuple[str, float]] = []
    if stages[0].docs_in() is not None:
        steps.append(("input", stages[0].docs_in() or 0))
    labels = _labels(stages)
    steps += [(labels[s.name], s.docs_out() or 0) for s in stages if s.docs_out() is not None]
    parts = ["<h2 id='funnel'>Funnel</h2>"]
    if steps:
        parts.append(figure("funnel", hbar_chart(steps, unit=" docs", total=steps[0][1]),
                            "Documents after each stage (share of the input); ← marks a branch."))
    rows = []
    for s in stages:
        tokens_in, tokens_out = s.tokens()
        if tokens_in is None and tokens_out is None:
            continue
        how = ("estimated: bytes / 4 (no --tokenizer)" if _estimated(s)
               else f"counted with {_tokenizer_name(s)}")
        dropped = s.stats.get("tokens", {}).get("dropped_total") if isinstance(s.stats.get("tokens"), dict) else None
        rows.append([s.name, s.stage, tokens_in, tokens_out, dropped, how])
    if rows:
        parts.append("<h3>Tokens</h3><p class='note'>Estimates and counts are never compared: a stage's tokens "
                     "in and out are measured the same way.</p>"
                     + table(["output", "stage", "tokens in", "tokens out", "dropped", "how"], rows))
    return "".join(parts)


def _tokenizer_name(stage: StageDir) -> str:
    name = stage.parameters.get("tokenizer") or stage.stats.get("tokenizer")
    return str(name).rstrip("/").rsplit("/", 1)[-1] if name else "the tokenizer"


# -- removals and examples -------------------------------------------------------------------------------------
def _card(example: Example) -> str:
    meta = " · ".join(x for x in (example.id, example.lang) if x)
    more = "…" if len(example.text) >= EXAMPLE_CHARS else ""
    return (f"<div class='doc'><div class='doc-meta'>{escape(meta)}</div>"
            f"<div class='doc-text'>{escape(example.text)}{more}</div></div>")


def _examples(stage: StageDir, text: str, id_column: str) -> dict[str, list[Example]]:
    if stage.rejected is not None:
        shards = stage.rejected_shards()
        columns = parquet_file(shards[0]).schema_arrow.names if shards else []
        column = "quality_reasons" if "quality_reasons" in columns else "reason"
        return examples_by_reason(shards, column, text, id_column, per_reason=EXAMPLES_PER_REASON)
    if "quality_reasons" in stage.columns():  # annotate mode: the documents that would go
        return examples_by_reason(stage.shards(), "quality_reasons", text, id_column,
                                  per_reason=EXAMPLES_PER_REASON)
    return {}


def removals_section(stages: list[StageDir], text: str, id_column: str) -> str | None:
    parts = []
    for s in stages:
        removed = sorted(s.removed().items(), key=lambda kv: (-kv[1], kv[0]))
        reasons = dict(removed)
        examples = _examples(s, text, id_column)
        if not removed and not examples:
            continue
        parts.append(f"<h3>Removed by {escape(s.name)} ({escape(s.stage)})</h3>")
        if removed:
            shown = removed[:MAX_BARS]
            more = f"; {len(removed) - len(shown)} smaller reasons not shown" if len(removed) > len(shown) else ""
            kind = ("first failing filter per document" if "removed_in_order" in s.stats
                    else "documents per reason" + (" (a document can fail several)" if s.stage == "quality" else ""))
            parts.append(figure(f"removed-{s.name}", hbar_chart(shown, unit=" docs", total=docs_in(s, {}),
                                                                 color="#c0504d"), f"{kind}{more}."))
        if examples:
            source = "its --rejected output" if s.rejected else "its annotated output"
            ordered = sorted(examples, key=lambda r: (-s.stats.get("removed", {}).get(r, reasons.get(r, 0)), r))
            rows = []
            for reason in ordered[:MAX_REASONS]:
                count = s.stats.get("removed", {}).get(reason)
                label = f"{reason}" + (f" ({count:,} documents)" if isinstance(count, int) else "")
                rows.append(f"<div class='reason'><div class='reason-name'>{escape(label)}</div>"
                            f"<div class='docs'>{''.join(_card(e) for e in examples[reason])}</div></div>")
            parts.append(f"<div class='examples' id='examples-{escape(s.name)}'><p class='note'>Examples from "
                         f"{source} (first {EXAMPLE_CHARS} characters):</p>{''.join(rows)}</div>")
        dropped = s.stats.get("tokens", {}).get("dropped") if isinstance(s.stats.get("tokens"), dict) else None
        if dropped:
            parts.append(f"<h3>Tokens dropped by {escape(s.name)}</h3>")
            parts.append(figure(f"dropped-{s.name}", hbar_chart(sorted(dropped.items(), key=lambda kv: -kv[1]),
                                                                 unit=" tokens", total=s.tokens()[0],
                                                                 color="#c0504d")))
    return "<h2 id='removals'>Removals</h2>" + "".join(parts) if parts else None


# -- languages -----------------------------------------------------------------------------------------------
def languages_section(stages: list[StageDir], text: str) -> str | None:
    """The final language mix, and documents and characters per language after every stage."""
    counted: list[tuple[StageDir, dict[str, tuple[float, float]], bool]] = []
    for s in stages:
        if "lang" in s.columns():
            result = language_counts(s.shards(), "lang", text)
            if result is not None:
                counted.append((s, *result))
    if not counted:
        return None
    depth = depths(stages)
    final_stage, final_counts, final_exact = max(reversed(counted), key=lambda c: depth.get(c[0].name, 0))
    first = counted[0][0]
    first_in = first.stats.get("by_lang") if isinstance(first.stats.get("by_lang"), dict) else {}
    ranked = sorted(final_counts.items(), key=lambda kv: (-kv[1][0], kv[0]))
    total_docs = sum(n for n, _ in final_counts.values()) or 1
    total_chars = sum(c for _, c in final_counts.values()) or 1
    shown = ranked[:MAX_BARS]
    series = {"documents": [n / total_docs for _, (n, _) in shown],
              "characters": [c / total_chars for _, (_, c) in shown]}
    rest = len(ranked) - len(shown)
    estimate = "" if final_exact else " (estimated from a sample)"
    parts = ["<h2 id='languages'>Languages</h2>",
             figure("languages", bar_chart([lang for lang, _ in shown], series, y_label="share", percent=True),
                    f"Final language mix: share of documents and characters per language in {final_stage.name} "
                    f"({final_stage.stage}){estimate}" + (f"; {rest} more languages." if rest else "."))]
    every = {lang for _, c, _ in counted for lang in c}
    languages = sorted(every, key=lambda lang: (-max(c.get(lang, (0, 0))[0] for _, c, _ in counted), lang))
    languages = languages[:MAX_LANGUAGES]
    header = ["language"]
    if first_in:
        header.append(f"into {first.name}")
    header += [s.name + ("" if exact else " ≈") for s, _, exact in counted]
    doc_rows, char_rows = [], []
    for lang in languages:
        doc_row, char_row = [lang], [lang]
        if first_in:
            row = first_in.get(lang, {})
            doc_row.append(row.get("docs_in"))
            char_row.append(_chars(row.get("chars_in")))
        for _, c, _ in counted:
            docs, chars = c.get(lang, (0, 0))
            doc_row.append(round(docs))
            char_row.append(_chars(chars))
        doc_rows.append(doc_row)
        char_rows.append(char_row)
    note = (f"Every stage with a <code>lang</code> column, in pipeline order; ≈: estimated from a sample of the "
            f"shards. Largest {len(languages)} languages.")
    parts += [f"<h3>Documents per language after each stage</h3><p class='note'>{note}</p>",
              table(header, doc_rows, "wide"),
              "<h3>Characters per language after each stage</h3>", table(header, char_rows, "wide")]
    return "".join(parts)


def _chars(value: float | None) -> Num | None:
    return Num(short(value)) if isinstance(value, int | float) else None


# -- signals -------------------------------------------------------------------------------------------------
def signals_section(stages: list[StageDir], top_languages: list[str]) -> str | None:
    parts = []
    for s in stages:
        spec = stage_named(s.stage)
        kind = spec.name if spec else s.stage  # "quality-classify" whichever way the plan spells it
        columns = s.columns()
        thresholds = score_thresholds(kind, s.parameters)
        wanted = [c for c in ("lang_score", "quality_score") if c in columns and (c in thresholds or s.reads is None)]
        prefix = str(s.parameters.get("signal_prefix") or "")
        if kind == "quality" and prefix:
            signal_columns = [c for c in columns if c.startswith(prefix)]
            if signal_columns:
                thresholds = {**thresholds, **quality_thresholds(s.parameters, prefix)}
                wanted += signal_columns
        if not wanted or kind not in ("langid", "quality", "quality-classify"):
            continue
        # a filtering stage's output lacks what it removed: its --rejected output holds the rest
        shards = s.shards() + (s.rejected_shards() if s.rejected else [])
        made = histograms(shards, wanted, thresholds, top_languages)
        if not made:
            continue
        cells = []
        for h in made:
            removes = f"; beyond the thresholds: {percent(h.removes)} of documents" if h.removes is not None else ""
            rule = f" ({h.rule})" if h.rule else ""
            sampled = "" if h.documents >= h.total else f", a sample of {h.documents:,} of {h.total:,}"
            cells.append(figure(f"signal-{s.name}-{h.column}",
                                histogram(h.edges, h.counts, lines=h.lines, x_label=h.column),
                                f"{h.column}{rule}{sampled}{removes}."))
        filtered = s.parameters.get("mode", "filter") == "filter" and any(h.removes for h in made)
        kind = ("the documents it kept only (no --rejected output to add the removed ones)"
                if filtered and s.rejected is None and kind != "quality" else "every document the stage read")
        parts.append(f"<h3>{escape(s.name)} ({escape(s.stage)})</h3><p class='note'>Distribution over {kind}. "
                     "The dashed line is the threshold of the largest language; the caption gives the others and "
                     "the share of documents beyond their own language's threshold.</p>"
                     f"<div class='grid'>{''.join(cells)}</div>")
    return "<h2 id='signals'>Signals and thresholds</h2>" + "".join(parts) if parts else None


# -- parameters ----------------------------------------------------------------------------------------------
def _flatten(value, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(v, f"{prefix}{k}.")]
    if isinstance(value, list):
        text = ", ".join(map(str, value)) if value else "(none)"
    else:
        text = "–" if value is None else str(value)
    return [(prefix.rstrip("."), text)]


def parameters_section(stages: list[StageDir], top_languages: list[str]) -> str | None:
    parts = []
    for s in stages:
        parameters = {k: v for k, v in s.parameters.items() if k not in ("io", "threshold_values")}
        if not parameters:
            continue
        version = s.manifest.get("curate_version")
        rows = [[key, value] for key, value in _flatten(parameters) if len(value) < 300]
        parts.append(f"<h3>{escape(s.name)} ({escape(s.stage)})"
                     + (f" <span class='meta'>curate {escape(str(version))}</span>" if version else "") + "</h3>"
                     + table(["parameter", "value"], rows))
        if s.stage == "langid":
            calibrated = recorded_thresholds(s.parameters)
            if calibrated:
                ordered = sorted(calibrated.items(), key=lambda kv: kv[0])
                parts.append("<p class='note'>Per-language thresholds (from --thresholds; a document is kept "
                             "when lang_score reaches its language's value):</p>"
                             + table(["language", "threshold"], [[k, v] for k, v in ordered], "wide"))
        if s.stage == "quality":
            rules = quality_thresholds(s.parameters, "")
            langs = top_languages[:6] or [str(s.parameters.get("default_lang", "en"))]
            rows = []
            listed = sorted((rule, signal, comparison, of) for signal, found in rules.items()
                            for rule, comparison, of in found)
            for rule, signal, comparison, of in listed:
                values = [of(lang) for lang in langs]
                if all(math.isnan(v) for v in values):
                    continue
                rows.append([rule, f"{signal} {comparison}", *[None if math.isnan(v) else v for v in values]])
            if rows:
                parts.append("<p class='note'>Thresholds as applied per language (the shipped settings merged with "
                             "--config; – : the rule is off for that language); a document is removed when its "
                             "signal is on the side shown:</p>"
                             + table(["rule", "removed when", *langs], rows, "wide"))
    return "<h2 id='parameters'>Parameters</h2>" + "".join(parts) if parts else None


# -- lengths, clusters -----------------------------------------------------------------------------------------
def lengths_section(stages: list[StageDir], text_column: str) -> str | None:
    first = stages[0]
    before_paths = first.inputs if first.docs_in() is not None and first.inputs else [str(first.path)]
    before = length_histogram(before_paths, text_column) or length_histogram([str(first.path)], text_column)
    with_text = [s for s in stages if text_column in s.columns()]
    last = final(with_text) if with_text else None
    after = length_histogram([str(last.path)], text_column) if last is not None else None
    histograms_ = {name: h for name, h in (("before", before), (f"after {last.name if last else ''}", after)) if h}
    if not histograms_:
        return None
    bins = sorted({(low, high) for h, _ in histograms_.values() for low, high, _ in h.octaves()})
    series, notes = {}, {}
    for name, (h, _) in histograms_.items():
        counts = {low: count for low, _, count in h.octaves()}
        series[name] = [counts.get(low, 0) / h.total for low, _ in bins]
        notes[name] = [f"{counts.get(low, 0):,} sampled documents" for low, _ in bins]
    labels = [f"{short(low)}–{short(high)}" for low, high in bins]
    rows = [[name, h.total, total if total else None, h.min, h.quantile(0.1), h.quantile(0.5), h.quantile(0.9),
             h.max, h.sum / h.total] for name, (h, total) in histograms_.items()]
    return ("<h2 id='lengths'>Document lengths</h2>"
            + figure("lengths", bar_chart(labels, series, y_label="share of documents", percent=True, notes=notes),
                     "Characters per document in power-of-two ranges, as a share of each side's documents "
                     "(a sample spread over the shards when an output is large).")
            + table(["", "documents read", "documents", "min", "p10", "median", "p90", "max", "mean"], rows))


def clusters_section(stages: list[StageDir], text: str, id_column: str) -> str | None:
    parts = []
    for s in stages:
        if not s.stage.startswith("dedup"):
            continue
        counted = cluster_sizes(s)
        if not counted:
            continue
        sizes, exact = counted
        singles = sizes.get(1, 0)
        bins: dict[str, float] = {}
        for size in sorted(k for k in sizes if k > 1):
            low = 1 << (size - 1).bit_length() - 1 if size > 4 else size
            label = str(size) if size <= 4 else f"{low + 1}–{2 * low}"
            bins[label] = bins.get(label, 0) + sizes[size]
        clustered = sum(sizes[k] for k in sizes if k > 1)
        removed = sum((k - 1) * v for k, v in sizes.items())
        about = "" if exact else "about "
        caption = (f"{s.name}: {about}{clustered:,.0f} clusters of 2 or more documents ({about}{removed:,.0f} "
                   f"documents removed), {about}{singles:,.0f} documents without a duplicate.")
        if bins:
            parts.append(figure(f"clusters-{s.name}", bar_chart(list(bins), {"clusters": list(bins.values())},
                                                                y_label="clusters"), caption))
        else:
            parts.append(f"<p class='missing'>{escape(caption)}</p>")
        groups = duplicate_clusters(s.shards(), s.rejected_shards(), text, id_column)
        if groups:
            rows = "".join(f"<div class='reason'><div class='reason-name'>cluster of {size} documents"
                           f"{f' ({len(g)} shown)' if len(g) < size else ''}</div>"
                           f"<div class='docs'>{''.join(_labelled(e) for e in g)}</div></div>" for size, g in groups)
            parts.append(f"<div class='examples' id='clusters-{escape(s.name)}'><p class='note'>The largest "
                         f"clusters: the kept document first, then removed members (first {EXAMPLE_CHARS} "
                         f"characters).</p>{rows}</div>")
    return "<h2 id='dedup'>Duplicate clusters</h2>" + "".join(parts) if parts else None


def _labelled(example: Example) -> str:
    return _card(Example(example.reason, f"{example.reason}: {example.id}", example.lang, example.text))


# -- mixture, pack ----------------------------------------------------------------------------------------------
def mixture_section(stages: list[StageDir], steps: dict[str, dict]) -> str | None:
    parts = []
    for s in stages:
        realised = mixture(s)
        if not realised:
            continue
        domains = list(realised)
        series = {"realised": [realised[d]["realised"] for d in domains]}
        if any(not math.isnan(row["target"]) for row in realised.values()):
            series = {"target": [0.0 if math.isnan(realised[d]["target"]) else realised[d]["target"] for d in domains],
                      **series}
        kind = "estimated tokens (bytes / 4)" if _estimated(s) else "tokens"
        parts.append(figure(f"mixture-{s.name}", bar_chart(domains, series, y_label="token share", percent=True),
                            f"{s.name}: share of {kind} per domain, target vs realised."))
        parts.append(table(["domain", "target", "realised", "tokens" + (" (est.)" if _estimated(s) else ""),
                            "documents"],
                           [[d, Num(percent(row["target"]) or "–"), Num(percent(row["realised"]) or "–"),
                             row["tokens"], row["docs"]] for d, row in realised.items()]))
        search = mixture_search(s, steps)
        if search is not None:
            parts.append(_search(s, search))
    return "<h2 id='mixture'>Mixture</h2>" + "".join(parts) if parts else None


def _search(stage: StageDir, search) -> str:
    domains = search.domains
    series = {"optimised": [search.optimised.get(d, 0.0) for d in domains]}
    if search.natural:
        series = {"natural (token share)": [search.natural.get(d, 0.0) for d in domains], **series}
    cv = [[name, scores.get("spearman"), scores.get("mse")] for name, scores in search.cv.items()]
    rows = [["optimised weights (predicted)", search.predicted]]
    if search.predicted_natural is not None:
        rows.append(["natural weights (predicted)", search.predicted_natural])
    if search.runs:
        best = min(search.runs)
        rows.append([f"best of {len(search.runs)} proxy runs (measured)", best[0]])
    parts = [f"<h3>Mixture search behind {escape(stage.name)}</h3>",
             figure(f"search-weights-{stage.name}", bar_chart(domains, series, y_label="weight", percent=True),
                    "Weights chosen by `curate mix optimize` next to each domain's natural token share."),
             f"<p class='note'>Regression of {escape(search.target)} on the mixture weights: cross-validated "
             f"Spearman ρ and mean squared error (the optimiser used {escape(search.regressor)}).</p>",
             table(["regressor", "CV spearman ρ", "CV MSE"], cv),
             table([search.target, "value"], rows)]
    if search.runs:
        parts.append(figure(f"search-fit-{stage.name}", scatter(
            [(m, p) for m, p in search.runs], x_label=f"measured {search.target}", y_label=f"predicted {search.target}",
            ), "Each proxy run: its measured loss against the regression's prediction (in-sample); "
            "the optimised mixture has a prediction only, as no proxy run measured it."))
    return "".join(parts)


def pack_section(stages: list[StageDir]) -> str | None:
    parts = []
    for s in stages:
        buckets, compare = s.stats.get("buckets"), s.stats.get("compare")
        if not (isinstance(buckets, dict) and buckets) and not (isinstance(compare, dict) and compare) and \
                not (s.stage == "pack" and isinstance(s.stats.get("tokens"), dict)):
            continue
        parts.append(f"<h3>{escape(s.name)}</h3>")
        fill = s.stats.get("fill_rate")
        if isinstance(buckets, dict) and buckets:
            names = [n for n, b in buckets.items() if int(b.get("tokens", 0))] or list(buckets)
            by_domain = _bucket_domains(s, names)
            if by_domain:
                domains, estimated = by_domain
                series = {d: [domains[d].get(n, 0.0) for n in names] for d in sorted(domains)}
                caption = "Tokens per bucket and domain" + (" (scaled from a sample)" if estimated else "") + "."
            else:
                series = {"tokens": [float(buckets[n].get("tokens", 0)) for n in names]}
                caption = "Tokens per bucket."
            notes = {name: [f"{int(buckets[n].get('sequences', 0)):,} sequences" for n in names] for name in series}
            parts.append(figure(f"pack-{s.name}", bar_chart(names, series, y_label="tokens", notes=notes), caption))
        if isinstance(compare, dict) and compare:
            names = list(compare)
            parts.append(figure(f"pack-compare-{s.name}", bar_chart(
                names, {"fill rate": [float(compare[n].get("fill_rate", 0)) for n in names],
                        "tokens kept": [float(compare[n].get("kept_share", 0)) for n in names]}, percent=True),
                f"{s.name}: packing strategies compared."))
        if isinstance(s.stats.get("tokens"), dict):
            t = s.stats["tokens"]
            parts.append(table(["tokens in", "tokens out", "dropped", "padding", "sequences", "fill rate"],
                               [[t.get("in"), t.get("out"), t.get("dropped_total"), t.get("padding"),
                                 s.stats.get("sequences"), Num(percent(fill) or "–")]]))
    return "<h2 id='pack'>Packing</h2>" + "".join(parts) if parts else None


def _bucket_domains(stage: StageDir, buckets: list[str]) -> tuple[dict[str, dict[str, float]], bool] | None:
    """Tokens per domain in each bucket, from the sequences' domain column (``mix_domain`` kept by pack)."""
    import pyarrow.compute as pc

    from curate.io.output import files_at
    from curate.io.storage import join

    found: dict[str, dict[str, float]] = {}
    estimated = False
    for bucket in buckets:
        folder = join(stage.path, bucket)
        shards = [join(folder, n) for n in sorted(files_at(folder).listing("part-")) if n.endswith(".parquet")]
        sample = read_sample(shards, ["mix_domain", "input_ids"], "sequences")
        if sample is None:
            return None
        estimated |= not sample.exact
        lengths = pc.list_value_length(sample.table.column("input_ids"))
        frame = sample.table.select(["mix_domain"]).append_column("n", lengths)
        grouped = frame.group_by("mix_domain").aggregate([("n", "sum")])
        for domain, n in zip(grouped.column("mix_domain").to_pylist(), grouped.column("n_sum").to_pylist(),
                             strict=True):
            found.setdefault(str(domain), {})[bucket] = n * sample.scale
    return found, estimated
