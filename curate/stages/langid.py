"""Language identification with fastText: adds ``lang``/``lang_score`` and filters by language and score.

The bundled default model is fastText's lid.176.ftz (176 languages, 917 KB), so the stage works offline right
after install. Any fastText LID model loads with ``--model``: lid.176.bin, GlotLID (``__label__eng_Latn``:
``lang=eng``, ``lang_script=Latn``), OpenLID. Newlines become spaces before prediction, as fastText expects.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns
from curate.io.output import file_checksum
from curate.params import load_mapping, option
from curate.stages.base import MapStage, StageOutput

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "lid.176.ftz"
LABEL_PREFIX = "__label__"
TOP_TYPE = pa.list_(pa.struct([("lang", pa.string()), ("score", pa.float32())]))
# FineWeb2's per-language threshold: tau = max(FLOOR, min(CEILING, median - std)) of the language's scores.
CALIBRATION_FLOOR, CALIBRATION_CEILING = 0.3, 0.9
_HISTOGRAM_BINS = 10_000


@dataclass
class LangidParams:
    model: str | None = option(None, "fastText LID model file (default: the bundled lid.176.ftz).")
    keep: list[str] = option([], "Keep only these languages, e.g. en,de,fr (or eng_Latn for GlotLID labels).")
    min_score: float | None = option(None, "Drop documents whose top language score is below this.")
    thresholds: str | None = option(
        None, "YAML/JSON file: language → minimum score (a 'default' key applies to unlisted languages)."
    )
    top_k: int | None = option(None, "Also add lang_top: the K best {lang, score} pairs.")


def load_model(path: str | None):
    """Load a fastText model, quietly (fastText prints a warning on stderr for every load)."""
    import fasttext

    model_path = Path(path) if path else DEFAULT_MODEL
    if not model_path.is_file():
        raise UsageError(f"{model_path}: language-ID model not found (see --model)")
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    try:
        return fasttext.load_model(str(model_path))
    except ValueError as exc:
        raise UsageError(f"{model_path}: not a fastText model ({exc})") from None


def split_label(label: str) -> tuple[str, str | None]:
    """``__label__en`` → (en, None); ``__label__eng_Latn`` → (eng, Latn)."""
    code = label[len(LABEL_PREFIX) :] if label.startswith(LABEL_PREFIX) else label
    lang, _, script = code.partition("_")
    return lang, (script or None)


def load_thresholds(path: str) -> dict[str, float]:
    data = load_mapping(path, "--thresholds")
    if not all(isinstance(v, int | float) for v in data.values()):
        raise UsageError(f"{path}: expected a mapping of language → number (e.g. en: 0.65)")
    return {str(k): float(v) for k, v in data.items()}


class Predictor:
    """Batched fastText prediction: one C++ call per batch, labels normalised once per distinct label."""

    def __init__(self, model_path: str | None):
        self.model = load_model(model_path)
        self.has_script = any(split_label(lbl)[1] for lbl in self.model.get_labels()[:50])

    def predict(self, text: pa.Array, k: int = 1) -> tuple[pa.Array, np.ndarray]:
        """Top-k codes (``lang`` or ``lang_Script``) flattened to n·k entries, and scores of shape (n, k)."""
        # fastText reads one line per document: newlines become spaces, and each line ends in "\n". The
        # binding's own per-text Python check is skipped: this is the same C++ call, over the whole batch.
        lines = pc.binary_join_element_wise(pc.replace_substring(text, "\n", " "), pa.scalar("\n"), "")
        labels, probs = self.model.f.multilinePredict(lines.to_pylist(), k, 0.0, "strict")
        if all(len(row) == k for row in labels):
            scores = np.asarray(probs, dtype=np.float32).reshape(len(labels), k)
            flat = list(itertools.chain.from_iterable(labels))
        else:  # models with fewer than k labels
            scores = np.zeros((len(labels), k), dtype=np.float32)
            for row, p in enumerate(probs):
                scores[row, : len(p)] = p
            flat = [lbl for row in labels for lbl in (row + [None] * (k - len(row)))]
        encoded = pc.dictionary_encode(pa.array(flat, pa.string()))
        codes = pa.array([_code(lbl) for lbl in encoded.dictionary.to_pylist()], pa.string())
        return pc.take(codes, encoded.indices), scores


def _code(label: str | None) -> str | None:
    if label is None:
        return None
    lang, script = split_label(label)
    return lang if script is None else f"{lang}_{script}"


class LangidStage(MapStage):
    name = "langid"

    def __init__(self, params: LangidParams):
        super().__init__(params)
        self.thresholds = load_thresholds(params.thresholds) if params.thresholds else {}
        if params.top_k is not None and params.top_k < 1:
            raise UsageError("--top-k must be ≥ 1")
        self.predictor: Predictor | None = None

    def identity(self) -> dict:
        model = Path(self.params.model) if self.params.model else DEFAULT_MODEL
        ident = {"model_checksum": file_checksum(model) if model.is_file() else None}
        if self.thresholds:
            ident["threshold_values"] = self.thresholds
        return ident

    def setup(self) -> None:
        self.predictor = Predictor(self.params.model)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        if self.predictor is None:
            self.setup()
        assert self.predictor is not None
        k = self.params.top_k or 1
        codes, scores = self.predictor.predict(batch.column(columns.text), k)
        full = codes if k == 1 else pc.take(codes, pa.array(np.arange(0, len(codes), k)))
        lang, script = _split_codes(full) if self.predictor.has_script else (full, None)
        score = pa.array(scores[:, 0], pa.float32())
        annotated = _append(batch, "lang", lang)
        annotated = _append(annotated, "lang_score", score)
        if script is not None:
            annotated = _append(annotated, "lang_script", script)
        if self.params.top_k:
            annotated = _append(annotated, "lang_top", _top_column(codes, scores))

        if not (self.thresholds or self.params.min_score is not None or self.params.keep):
            # annotation only: no row is removed, so nothing needs copying
            everything = pa.array(np.ones(len(lang), dtype=bool))
            return StageOutput(annotated, None, {"by_lang": _per_language(lang, batch.column(columns.text), everything)})
        reason = self._reasons(lang, full, scores[:, 0])
        kept_mask = pc.is_null(reason)
        removed = pc.invert(kept_mask)
        rejected = annotated.filter(removed).append_column("reason", reason.filter(removed))
        counters = {
            "removed": _value_counts(reason.filter(removed)),
            "by_lang": _per_language(lang, batch.column(columns.text), kept_mask),
        }
        return StageOutput(annotated.filter(kept_mask), rejected, counters)

    def _reasons(self, lang: pa.Array, full: pa.Array, score: np.ndarray) -> pa.Array:
        """Why each document is removed (first failing rule), or null when it is kept."""
        n = len(lang)
        reasons = np.full(n, None, dtype=object)
        if self.thresholds:
            keys = [k for k in self.thresholds if k != "default"]
            index = pc.index_in(lang, value_set=pa.array(keys, pa.string())).to_numpy(zero_copy_only=False)
            per_doc = np.full(n, self.thresholds.get("default", 0.0), dtype=np.float64)
            found = ~np.isnan(index.astype(np.float64))
            per_doc[found] = np.array([self.thresholds[k] for k in keys])[index[found].astype(np.int64)]
            reasons[score < per_doc] = "lang_score_below_threshold"
        if self.params.min_score is not None:
            reasons[score < self.params.min_score] = "lang_score_below_min"
        if self.params.keep:
            wanted = pa.array(self.params.keep, pa.string())
            kept = pc.or_(pc.is_in(lang, value_set=wanted), pc.is_in(full, value_set=wanted))
            reasons[~kept.to_numpy(zero_copy_only=False)] = "lang_not_kept"
        return pa.array(reasons, pa.string())


def _append(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """Add a column, replacing one of the same name (a rerun of langid on its own output)."""
    if name in batch.schema.names:
        batch = batch.drop_columns([name])
    return batch.append_column(name, values)


def _split_codes(full: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``eng_Latn`` → (``eng``, ``Latn``); a code without a script gets a null script."""
    parts = pc.extract_regex(full, r"^(?P<lang>[^_]*)_?(?P<script>.*)$")
    script = parts.field("script")
    return parts.field("lang"), pc.if_else(pc.equal(script, ""), pa.scalar(None, pa.string()), script)


def _top_column(codes: pa.Array, scores: np.ndarray) -> pa.Array:
    n, k = scores.shape
    structs = pa.StructArray.from_arrays([codes, pa.array(scores.reshape(-1), pa.float32())], names=["lang", "score"])
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs).cast(TOP_TYPE)


def _value_counts(values: pa.Array) -> dict[str, int]:
    if len(values) == 0:
        return {}
    return {item["values"]: item["counts"] for item in pc.value_counts(values).to_pylist()}


def _per_language(lang: pa.Array, text: pa.Array, kept: pa.Array) -> dict[str, dict[str, int]]:
    """Documents and characters in and out per language (bincounts over the dictionary-encoded codes)."""
    encoded = pc.dictionary_encode(pc.fill_null(lang, "") if lang.null_count else lang)
    index = encoded.indices.to_numpy(zero_copy_only=False)
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.float64)
    keep = kept.to_numpy(zero_copy_only=False)
    n = len(encoded.dictionary)
    columns = {
        "docs_in": np.bincount(index, minlength=n),
        "chars_in": np.bincount(index, weights=chars, minlength=n),
        "docs_out": np.bincount(index[keep], minlength=n),
        "chars_out": np.bincount(index[keep], weights=chars[keep], minlength=n),
    }
    return {
        code: {name: int(values[i]) for name, values in columns.items()}
        for i, code in enumerate(encoded.dictionary.to_pylist())
    }


class ScoreHistogram:
    """Per-language score distribution in fixed bins: bounded memory, mergeable, exact enough for medians."""

    def __init__(self) -> None:
        self.counts: dict[str, np.ndarray] = {}
        self.sums: dict[str, np.ndarray] = {}  # [sum, sum of squares]

    def add(self, lang: pa.Array, score: np.ndarray) -> None:
        bins = np.minimum((score * _HISTOGRAM_BINS).astype(np.int64), _HISTOGRAM_BINS - 1)
        codes = (
            pc.dictionary_encode(lang).combine_chunks()
            if isinstance(lang, pa.ChunkedArray)
            else pc.dictionary_encode(lang)
        )
        indices = codes.indices.to_numpy(zero_copy_only=False)
        for i, name in enumerate(codes.dictionary.to_pylist()):
            mask = indices == i
            counts = self.counts.setdefault(name, np.zeros(_HISTOGRAM_BINS, dtype=np.int64))
            counts += np.bincount(bins[mask], minlength=_HISTOGRAM_BINS)
            sums = self.sums.setdefault(name, np.zeros(2))
            chosen = score[mask].astype(np.float64)
            sums += (chosen.sum(), (chosen**2).sum())

    def thresholds(self, min_docs: int) -> dict[str, dict[str, float]]:
        """FineWeb2 thresholds per language with at least ``min_docs`` documents."""
        result = {}
        for lang in sorted(self.counts):
            counts = self.counts[lang]
            n = int(counts.sum())
            if n < min_docs:
                continue
            mean = self.sums[lang][0] / n
            std = float(np.sqrt(max(self.sums[lang][1] / n - mean**2, 0.0)))
            median_bin = int(np.searchsorted(np.cumsum(counts), (n + 1) / 2))
            median = (median_bin + 0.5) / _HISTOGRAM_BINS
            tau = max(CALIBRATION_FLOOR, min(CALIBRATION_CEILING, median - std))
            result[lang] = {
                "threshold": round(tau, 4),
                "docs": n,
                "median": round(median, 4),
                "std": round(std, 4),
            }
        return result


def calibrate(batches, model: str | None, columns: Columns, min_docs: int) -> dict[str, dict[str, float]]:
    """Per-language thresholds from predicted scores (existing ``lang``/``lang_score`` columns are reused)."""
    histogram = ScoreHistogram()
    predictor: Predictor | None = None
    for batch in batches:
        if "lang" in batch.schema.names and "lang_score" in batch.schema.names:
            lang = batch.column("lang")
            score = batch.column("lang_score").to_numpy(zero_copy_only=False).astype(np.float32)
        else:
            predictor = predictor or Predictor(model)
            lang, scores = predictor.predict(batch.column(columns.text))
            score = scores[:, 0]
        if pc.any(pc.is_null(lang)).as_py():
            raise InputError("input", "column 'lang' has nulls; calibrate expects langid output or raw text")
        histogram.add(lang, score)
    return histogram.thresholds(min_docs)
