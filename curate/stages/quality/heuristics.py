"""`curate quality`: Gopher quality, Gopher repetition, C4 and FineWeb heuristics as one MapStage."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.output import file_checksum
from curate.params import option
from curate.stages.base import MapStage, StageOutput
from curate.stages.quality.config import QualityConfig, explain, normalize_lang, shipped_languages
from curate.stages.quality.filters import ALL_FILTERS, Decisions, decide
from curate.stages.quality.signals import (
    DUP_NGRAM_KEY,
    SIGNAL_NAME,
    TOP_NGRAM_KEY,
    PerDoc,
    TextView,
    compute_signals,
    ngram_sizes,
)

REASONS_COLUMN = "quality_reasons"
REASONS_TYPE = pa.list_(pa.string())
# signals that only feed a reason of their own: not worth a column
_INTERNAL_SIGNALS = {"c4_lorem_ipsum", "c4_curly_bracket", "nonblank_lines"}


@dataclass
class QualityParams:
    filters: list[str] = option(
        list(ALL_FILTERS),
        "Heuristic filters, comma-separated, applied in this order (a filter sees the text as the filters "
        "before it left it): " + ",".join(ALL_FILTERS) + ".",
    )
    config: str | None = option(
        None,
        "YAML file of thresholds: top-level sections override every language, `languages: {de: ...}` one "
        "language, `fallback:` unknown languages (keys as in curate/data/quality/defaults.yaml).",
    )
    mode: str = option(
        "filter",
        "filter: drop failing documents. annotate: keep all, add quality_reasons and the signal columns.",
        choices=["filter", "annotate"],
    )
    c4_remove_lines: bool = option(
        True,
        "C4 rewrites each text without the lines its line rules drop, as the reference does: the filters "
        "after c4 in --filters see the rewritten text, and it is what is written. --no-c4-remove-lines "
        "keeps the original text everywhere.",
    )
    lang_column: str = option(
        "lang", "Column with each document's language (as written by curate langid) choosing its settings."
    )
    default_lang: str = option("en", "Settings for every document when the input has no language column.")
    signal_prefix: str = option("q_", "Prefix of the signal columns added by --mode annotate.")


def _append(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """Add a column, replacing one of the same name (quality run again on its own output)."""
    if name in batch.schema.names:
        batch = batch.drop_columns([name])
    return batch.append_column(name, values)


class QualityStage(MapStage):
    name = "quality"

    def __init__(self, params: QualityParams):
        super().__init__(params)
        unknown = [f for f in params.filters if f not in ALL_FILTERS]
        if unknown or not params.filters:
            raise UsageError(
                f"--filters: unknown {unknown or 'empty list'}; choose from {','.join(ALL_FILTERS)}"
            )
        self.filters = list(dict.fromkeys(params.filters))  # the chain runs in the order given
        self.config = QualityConfig.load(Path(params.config) if params.config else None)
        known = {*shipped_languages(), "und", *map(normalize_lang, self.config.user.get("languages") or {})}
        every = [self.config.settings(lang) for lang in sorted(known)]
        # fixed across batches, so that annotate mode always writes the same columns
        self.ngram_sizes = {key: ngram_sizes(every, key) for key in (TOP_NGRAM_KEY, DUP_NGRAM_KEY)}
        self._warned_stale = False

    def identity(self) -> dict:
        if not self.params.config:
            return {}
        return {"config_checksum": file_checksum(self.params.config)}

    def _languages(self, batch: pa.RecordBatch) -> tuple[PerDoc, np.ndarray]:
        """Per-document settings and normalised language codes."""
        column = self.params.lang_column
        if column not in batch.schema.names:
            lang = normalize_lang(self.params.default_lang)
            codes = np.full(batch.num_rows, lang, dtype=object)
            return PerDoc(
                [self.config.settings(lang)], np.zeros(batch.num_rows, np.int64), self.ngram_sizes
            ), codes
        encoded = pc.dictionary_encode(pc.cast(batch.column(column), pa.string()))
        raw = [normalize_lang(v) for v in encoded.dictionary.to_pylist()] + ["und"]
        names = sorted(set(raw))
        raw_to_name = np.asarray([names.index(code) for code in raw], dtype=np.int64)
        indices = encoded.indices.fill_null(len(raw) - 1).to_numpy(zero_copy_only=False)
        lang_index = raw_to_name[indices]
        settings = [self.config.settings(code) for code in names]
        return PerDoc(settings, lang_index, self.ngram_sizes), np.asarray(names, dtype=object)[lang_index]

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        batch = self._without_stale_annotations(batch)
        annotate = self.params.mode == "annotate"
        per_doc, langs = self._languages(batch)
        n_docs = batch.num_rows
        text = pl.Series(columns.text, batch.column(columns.text)).cast(pl.String)
        alive = np.ones(n_docs, dtype=bool)
        rules: list[str] = []
        failed: list[np.ndarray] = []
        signals: dict[str, np.ndarray] = {}
        counters: dict[str, int] = {}
        view, view_rows = None, None
        for name in self.filters:
            rows = np.arange(n_docs) if annotate else np.nonzero(alive)[0]
            if view is None:
                view = TextView(text.gather(rows) if len(rows) < n_docs else text, per_doc.subset(rows))
            elif len(rows) < len(view_rows):  # an earlier filter removed documents: keep their splits
                view = view.subset(np.searchsorted(view_rows, rows))
            view_rows = rows
            result = compute_signals(name, view, c4_rewrite=self.params.c4_remove_lines)
            decisions = decide(name, result.values, view.per_doc, view.text_len)
            failed_here = np.zeros((n_docs, len(decisions.rules)), dtype=bool)
            failed_here[rows] = decisions.failed
            rules += decisions.rules
            failed.append(failed_here)
            for key, values in result.values.items():
                signals[key] = _scatter(values, rows, n_docs)
            if result.text is not None:
                text = text.scatter(rows, result.text) if len(rows) < n_docs else result.text
                view = None  # the filters after this one see the rewritten text
                counters["c4_lines_removed"] = int(result.values["c4_lines_removed"].sum())
                counters["c4_chars_removed"] = int(result.values["c4_chars_removed"].sum())
            alive[rows[decisions.failed.any(axis=1)]] = False
        decisions = Decisions(rules, np.concatenate(failed, axis=1))
        counters.update(decisions.counters(langs, self.filters))
        reasons = decisions.reasons()

        output = batch
        if self.params.c4_remove_lines and "c4" in self.filters:
            field = output.schema.field(columns.text)
            output = output.set_column(
                output.schema.get_field_index(columns.text), field, text.to_arrow().cast(field.type)
            )
        if annotate:
            output = _append(output, REASONS_COLUMN, reasons)
            for name, values in signals.items():
                if name not in _INTERNAL_SIGNALS:
                    column = values.astype(np.float32) if values.dtype == np.float64 else values
                    output = _append(output, self.params.signal_prefix + name, pa.array(column))
            return StageOutput(output, None, counters)
        passed = pa.array(decisions.passed)
        failed_mask = pc.invert(passed)
        rejected = _append(batch.filter(failed_mask), REASONS_COLUMN, reasons.filter(failed_mask))
        return StageOutput(output.filter(passed), rejected, counters)

    def _without_stale_annotations(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Drop the reasons and signal columns of an earlier quality run: new settings, new annotations."""
        stale = [name for name in batch.schema.names if name == REASONS_COLUMN or self._is_signal_column(name)]
        if stale and not self._warned_stale:
            self._warned_stale = True
            print(f"curate quality: warning: replacing the annotations of an earlier run ({', '.join(stale[:5])}"
                  f"{', …' if len(stale) > 5 else ''})", file=sys.stderr)
        return batch.drop_columns(stale) if stale else batch

    def _is_signal_column(self, name: str) -> bool:
        prefix = self.params.signal_prefix
        return bool(prefix) and name.startswith(prefix) and bool(SIGNAL_NAME.fullmatch(name[len(prefix):]))


def _scatter(values: np.ndarray, rows: np.ndarray, n_docs: int) -> np.ndarray:
    """Per-document values of the evaluated ``rows``; documents an earlier filter removed get zeros."""
    if len(rows) == n_docs:
        return values
    out = np.zeros(n_docs, dtype=values.dtype)
    out[rows] = values
    return out


def explain_settings(params: QualityParams, lang: str | None = None) -> list[str]:
    """What ``curate quality --explain`` prints: the settings a run with ``params`` uses for ``lang``."""
    stage = QualityStage(params)  # --filters and --config are checked as for a run
    return explain(stage.filters, stage.config, lang or params.default_lang).splitlines()
