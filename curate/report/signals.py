"""Per-document signals of an output (quality's ``q_*`` columns, ``lang_score``, ``quality_score``) as
pre-binned histograms, with the thresholds the stage applied to them and the share each one removes.

Thresholds come from what the stage recorded: quality's ``--config`` resolved for each document's language
(the same settings the stage used), langid's ``--min-score`` and ``--thresholds`` file, the classifier's
``--min-score``. The share removed compares every sampled document with its own language's threshold.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import CurateError
from curate.report.samples import read_sample

BINS = 30
QUALITY_SIGNALS = "quality_signals"


@dataclass
class Histogram:
    column: str
    edges: list[float]
    counts: list[float]
    documents: int  # sampled documents with a value
    total: int  # documents in the output
    lines: list[tuple[float, str]] = field(default_factory=list)  # (threshold, label) drawn
    removes: float | None = None  # share of the documents beyond their threshold
    rule: str = ""  # the setting that holds the threshold (gopher_quality:min_doc_words)


def _languages(sample: pa.Table) -> tuple[list[str], np.ndarray]:
    """The sample's language codes and each row's index into them ("" for every row without a lang column)."""
    if "lang" not in sample.column_names:
        return [""], np.zeros(sample.num_rows, dtype=np.int64)
    encoded = pc.dictionary_encode(pc.fill_null(sample.column("lang").cast(pa.string()), "und")).combine_chunks()
    return encoded.dictionary.to_pylist(), encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


Rule = tuple[str, str, Callable[[str], float]]  # (setting, comparison: "<" or ">", threshold of a language)


def quality_thresholds(parameters: dict, prefix: str) -> dict[str, list[Rule]]:
    """Signal column → the rules a quality output applied to it (a signal can have a minimum and a maximum)."""
    from curate.stages.quality.config import FILTER_SECTIONS, QualityConfig, normalize_lang
    from curate.stages.quality.filters import THRESHOLD_RULES
    from curate.stages.quality.signals import DUP_NGRAM_KEY, TOP_NGRAM_KEY

    config_path = parameters.get("config")
    try:
        config = QualityConfig.load(Path(config_path) if config_path else None)
    except (CurateError, OSError):
        return {}
    filters = parameters.get("filters") or list(FILTER_SECTIONS)
    default = str(parameters.get("default_lang") or "en")

    def setting(section: str, key: str, n: int | None = None) -> Callable[[str], float]:
        def of(lang: str) -> float:
            value = getattr(config.settings(normalize_lang(lang or default)), section)[key]
            if n is not None:
                value = (value or {}).get(n)
            return math.nan if value is None or value is False else float(value)
        return of

    rules: dict[str, list[Rule]] = {}
    for name, key, signal, comparison in THRESHOLD_RULES:
        if name in filters:
            section = FILTER_SECTIONS[name]
            rules.setdefault(prefix + signal, []).append((f"{section}:{key}", comparison, setting(section, key)))
    if "gopher-repetition" in filters:
        for key, template in ((TOP_NGRAM_KEY, "top_{n}gram"), (DUP_NGRAM_KEY, "dup_{n}gram")):
            for n in range(2, 11):
                rules[prefix + template.format(n=n) + "_char_frac"] = [
                    (f"gopher_repetition:{key.replace('ngram', f'{n}gram')}", ">",
                     setting("gopher_repetition", key, n))]
    return rules


def score_thresholds(stage: str, parameters: dict) -> dict[str, list[Rule]]:
    """``lang_score`` (langid: --min-score and the per-language --thresholds) and ``quality_score``
    (the classifier's --min-score), where the stage (its name in the command table) applied one."""
    minimum = parameters.get("min_score")
    if stage == "langid":
        per_lang = dict(recorded_thresholds(parameters))
        default = per_lang.pop("default", None)
        if minimum is None and not per_lang and default is None:
            return {}

        def of(lang: str) -> float:
            values = [v for v in (minimum, per_lang.get(lang, default)) if v is not None]
            return float(max(values)) if values else math.nan
        return {"lang_score": [("thresholds" if per_lang else "min_score", "<", of)]}
    if stage == "quality-classify" and minimum is not None:
        return {"quality_score": [("min_score", "<", lambda lang: float(minimum))]}
    return {}


def recorded_thresholds(parameters: dict) -> dict[str, float]:
    """langid's per-language thresholds as its manifest recorded them (else read from its --thresholds file)."""
    values = parameters.get("threshold_values")
    if isinstance(values, dict) and values:
        return {str(k): float(v) for k, v in values.items()}
    path = parameters.get("thresholds")
    if not path or not Path(path).is_file():
        return {}
    from curate.stages.langid import load_thresholds

    try:
        return {str(k): float(v) for k, v in load_thresholds(path).items()}
    except (CurateError, ValueError, TypeError):
        return {}


def histograms(shards: list[str], columns: list[str], thresholds: dict[str, list[Rule]],
               top_languages: list[str]) -> list[Histogram]:
    """One histogram per numeric column (a sample of the output), thresholds of ``top_languages``."""
    sample = read_sample(shards, [*columns, "lang"], "signals") or read_sample(shards, columns, "signals")
    if sample is None:
        return []
    codes, index = _languages(sample.table)
    out = []
    for column in columns:
        values = sample.table.column(column)
        if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
            continue
        data = values.to_numpy(zero_copy_only=False).astype(np.float64)
        valid = ~np.isnan(data)
        if not valid.any():
            continue
        low, high = (np.nanpercentile(data, [0.5, 99.5]) if valid.sum() > 200 else (np.nanmin(data), np.nanmax(data)))
        low, high = float(low), float(high)
        span = (high - low) or 1.0
        rules = thresholds.get(column, [])
        beyond = np.zeros(len(data), dtype=bool)
        lines: list[tuple[float, str]] = []
        notes = []
        seen = np.bincount(index[valid], minlength=len(codes))
        present = sorted((code for code, n in zip(codes, seen, strict=True) if n),
                         key=lambda lang: (top_languages.index(lang) if lang in top_languages else len(top_languages),
                                           lang))
        for rule, comparison, of in rules:
            per_lang = {lang: of(lang) for lang in present}
            limits = np.asarray([per_lang.get(code, math.nan) for code in codes], dtype=np.float64)[index]
            with np.errstate(invalid="ignore"):
                beyond |= data < limits if comparison == "<" else data > limits
            shown = [(lang, v) for lang, v in per_lang.items() if not math.isnan(v)][:4]
            if not shown:
                continue
            main_lang, main = shown[0]
            if len({v for v in per_lang.values() if not math.isnan(v)}) == 1:
                main_lang = ""  # one threshold for every language
            if low - span <= main <= high + span:  # a threshold far beyond every document would flatten the chart
                lines.append((main, f"{comparison} {main:.3g}" + (f" ({main_lang})" if main_lang else "")))
                low, high = min(low, main), max(high, main)
            others = {f"{lang} {v:.3g}" for lang, v in shown[1:] if v != main}
            notes.append(f"{rule} {main:.3g}" + (f" for {main_lang}" if main_lang else "")
                         + (f" ({', '.join(sorted(others))})" if others else ""))
        integer = pa.types.is_integer(values.type)
        if high <= low:
            high = low + 1
        edges = np.linspace(low, high, BINS + 1)
        if integer and high - low < BINS:
            edges = np.arange(math.floor(low), math.ceil(high) + 2, dtype=np.float64) - 0.5
        # equal-width bins given as a count and a range: numpy's fast path, no sort of the data
        counts, _ = np.histogram(np.clip(data[valid], edges[0], edges[-1]), bins=len(edges) - 1,
                                 range=(edges[0], edges[-1]))
        out.append(Histogram(column, edges.tolist(), (counts * sample.scale).tolist(), int(valid.sum()),
                             sample.total, lines, float(beyond[valid].mean()) if rules else None, "; ".join(notes)))
    return out
