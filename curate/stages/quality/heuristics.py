"""`curate quality`: Gopher quality, Gopher repetition, C4 and FineWeb heuristics as one MapStage."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.output import file_checksum
from curate.params import option
from curate.stages.base import MapStage, StageOutput
from curate.stages.quality.config import QualityConfig, normalize_lang, shipped_languages
from curate.stages.quality.filters import ALL_FILTERS, decide
from curate.stages.quality.signals import DUP_NGRAM_KEY, TOP_NGRAM_KEY, PerDoc, compute_signals, ngram_sizes

REASONS_COLUMN = "quality_reasons"
REASONS_TYPE = pa.list_(pa.string())
# signals that only feed a reason of their own: not worth a column
_INTERNAL_SIGNALS = {"c4_lorem_ipsum", "c4_curly_bracket", "nonblank_lines"}


@dataclass
class QualityParams:
    filters: list[str] = option(
        list(ALL_FILTERS), "Heuristic filters to apply, comma-separated: " + ",".join(ALL_FILTERS) + "."
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
        False, "Rewrite kept texts without the lines that C4's line rules drop (needs the c4 filter)."
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
        self.filters = [f for f in ALL_FILTERS if f in params.filters]
        if params.c4_remove_lines and "c4" not in self.filters:
            raise UsageError("--c4-remove-lines needs the c4 filter in --filters")
        self.config = QualityConfig.load(Path(params.config) if params.config else None)
        known = {*shipped_languages(), "und", *map(normalize_lang, self.config.user.get("languages") or {})}
        every = [self.config.settings(lang) for lang in sorted(known)]
        # fixed across batches, so that annotate mode always writes the same columns
        self.ngram_sizes = {key: ngram_sizes(every, key) for key in (TOP_NGRAM_KEY, DUP_NGRAM_KEY)}

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
        texts = batch.column(columns.text)
        per_doc, langs = self._languages(batch)
        signals = compute_signals(texts, per_doc, self.filters, c4_rewrite=self.params.c4_remove_lines)
        text_len = pc.utf8_length(texts).to_numpy(zero_copy_only=False)
        decisions = decide(signals, per_doc, self.filters, text_len)
        counters = decisions.counters(langs, self.filters)
        reasons = decisions.reasons()

        output = batch
        if signals.c4_text is not None:
            field = output.schema.field(columns.text)
            output = output.set_column(
                output.schema.get_field_index(columns.text), field, signals.c4_text.cast(field.type)
            )
            counters["c4_lines_removed"] = int(signals.values["c4_lines_removed"].sum())
            counters["c4_chars_removed"] = int(signals.values["c4_chars_removed"].sum())
        if self.params.mode == "annotate":
            output = _append(output, REASONS_COLUMN, reasons)
            for name, values in signals.values.items():
                if name not in _INTERNAL_SIGNALS:
                    output = _append(output, self.params.signal_prefix + name, pa.array(values))
            return StageOutput(output, None, counters)
        passed = pa.array(decisions.passed)
        failed = pc.invert(passed)
        rejected = _append(batch.filter(failed), REASONS_COLUMN, reasons.filter(failed))
        return StageOutput(output.filter(passed), rejected, counters)
