"""fastText quality classifiers: score documents (a MapStage) and train a model (the DCLM / FineWeb-Edu
recipe: positives = reference-quality text, negatives = random web text).

Text is normalised the same way for training and scoring: every run of whitespace (newlines included)
becomes one space, as fastText reads one example per line.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import OutputError, UsageError
from curate.io.inputs import BadRows, Columns, iter_batches
from curate.io.output import atomic_open, file_checksum
from curate.params import option
from curate.stages.base import MapStage, StageOutput

SCORE_COLUMN = "quality_score"
REASON_COLUMN = "quality_reasons"
POSITIVE_LABEL, NEGATIVE_LABEL = "__label__hq", "__label__lq"


def one_line(texts: pa.Array | pa.ChunkedArray) -> list[str]:
    """Texts as single lines (fastText's input format)."""
    return pc.utf8_trim_whitespace(pc.replace_substring_regex(texts, r"\s+", " ")).to_pylist()


def load_classifier(path: str):
    """Load a supervised fastText model quietly, with a clear error for a missing or wrong file."""
    import fasttext

    if not Path(path).is_file():
        raise UsageError(f"--model {path}: file not found")
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    try:
        model = fasttext.load_model(str(path))
    except ValueError as exc:
        raise UsageError(f"--model {path}: not a fastText model ({exc})") from None
    if not model.get_labels() or not str(model.get_labels()[0]).startswith("__label__"):
        raise UsageError(f"--model {path}: not a supervised (classification) fastText model")
    return model


def label_scores(model, texts: list[str], label: str) -> np.ndarray:
    """Probability of ``label`` for every text."""
    labels, probs = model.predict(texts, k=-1)
    scores = np.zeros(len(texts), dtype=np.float32)
    for row, (row_labels, row_probs) in enumerate(zip(labels, probs, strict=True)):
        for name, p in zip(row_labels, row_probs, strict=True):
            if name == label:
                scores[row] = p
                break
    return scores


@dataclass
class ClassifyParams:
    model: str = option("", "fastText classifier (.bin/.ftz), e.g. from `curate quality train`.")
    label: str = option(POSITIVE_LABEL, "Label whose probability becomes quality_score.")
    min_score: float | None = option(None, "Drop documents whose quality_score is below this.")


class QualityClassifierStage(MapStage):
    name = "quality-classify"

    def __init__(self, params: ClassifyParams):
        super().__init__(params)
        if not params.model:
            raise UsageError("--model is required (a fastText classifier, see `curate quality train`)")
        self.model = None

    def identity(self) -> dict:
        return {
            "model_checksum": file_checksum(self.params.model) if Path(self.params.model).is_file() else None
        }

    def setup(self) -> None:
        self.model = load_classifier(self.params.model)
        if self.params.label not in self.model.get_labels():
            known = ", ".join(self.model.get_labels()[:10])
            raise UsageError(
                f"--label {self.params.label}: not a label of {self.params.model} (it has {known})"
            )

    def __getstate__(self) -> dict:  # the fastText model is not picklable: each worker loads it in setup()
        return {**self.__dict__, "model": None}

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        if self.model is None:
            self.setup()
        scores = label_scores(self.model, one_line(batch.column(columns.text)), self.params.label)
        if SCORE_COLUMN in batch.schema.names:
            batch = batch.drop_columns([SCORE_COLUMN])
        scored = batch.append_column(SCORE_COLUMN, pa.array(scores, pa.float32()))
        if self.params.min_score is None:
            return StageOutput(scored)
        keep = scores >= self.params.min_score
        rejected = scored.filter(pa.array(~keep))
        reasons = pa.array([["quality_classifier:min_score"]] * rejected.num_rows, pa.list_(pa.string()))
        rejected = rejected.append_column(REASON_COLUMN, reasons)
        counters = {"removed": {"quality_classifier:min_score": int((~keep).sum())}}
        return StageOutput(scored.filter(pa.array(keep)), rejected, counters)


@dataclass
class TrainParams:
    positive: list[str] = option([], "Reference-quality inputs (files, directories, globs), comma-separated.")
    negative: list[str] = option([], "Random web-text inputs (files, directories, globs), comma-separated.")
    text_column: str = option("text", "Column holding the document text.")
    max_docs_per_class: int = option(
        200_000, "Use at most this many documents of each class (the first ones)."
    )
    holdout: float = option(0.1, "Fraction of each class held out to report precision/recall.")
    seed: int = option(0, "Seed of the shuffle, the holdout split and fastText.")
    threads: int = option(1, "fastText training threads (1 = bit-for-bit reproducible).", fingerprint=False)
    epoch: int = option(10, "fastText epochs.")
    lr: float = option(0.1, "fastText learning rate.")
    word_ngrams: int = option(2, "fastText word n-grams (DCLM uses 2).")
    dim: int = option(64, "fastText vector dimension.")
    min_count: int = option(1, "fastText minimum word count.")
    label: str = option(POSITIVE_LABEL, "Label given to the positives (negatives get __label__lq).")


def _read_texts(specs: list[str], column: str, limit: int, flag: str) -> list[str]:
    if not specs:
        raise UsageError(f"{flag}: give at least one input")
    texts: list[str] = []
    for batch in iter_batches(specs, Columns(column), bad=BadRows(skip=False)):
        texts += [t for t in one_line(batch.column(column)) if t]
        if len(texts) >= limit:
            return texts[:limit]
    if not texts:
        raise UsageError(f"{flag}: no non-empty documents in {', '.join(specs)}")
    return texts


def train_classifier(params: TrainParams, output: str) -> dict:
    """Train on positives vs negatives, evaluate on the held-out split, save the model atomically."""
    import fasttext

    if not 0 <= params.holdout < 1:
        raise UsageError("--holdout must be in [0, 1)")
    if params.label == NEGATIVE_LABEL or not params.label.startswith("__label__"):
        raise UsageError(f"--label must start with __label__ and differ from {NEGATIVE_LABEL}")
    rng = np.random.default_rng(params.seed)
    classes = {
        params.label: _read_texts(
            params.positive, params.text_column, params.max_docs_per_class, "--positive"
        ),
        NEGATIVE_LABEL: _read_texts(
            params.negative, params.text_column, params.max_docs_per_class, "--negative"
        ),
    }
    train: list[str] = []
    test: list[tuple[str, str]] = []
    for label, texts in classes.items():
        order = rng.permutation(len(texts))
        n_test = round(params.holdout * len(texts))
        test += [(label, texts[i]) for i in order[:n_test]]
        train += [f"{label} {texts[i]}" for i in order[n_test:]]
    train = [train[i] for i in rng.permutation(len(train))]

    fasttext.FastText.eprint = lambda *args, **kwargs: None
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(train) + "\n", encoding="utf-8")
        model = fasttext.train_supervised(
            input=str(train_file), epoch=params.epoch, lr=params.lr, wordNgrams=params.word_ngrams,
            dim=params.dim, minCount=params.min_count, thread=params.threads, seed=params.seed, verbose=0,
        )  # fmt: skip
    summary = {
        "stage": "quality train",
        "output": output,
        "train_docs": {
            label: len(texts) - sum(1 for t in test if t[0] == label) for label, texts in classes.items()
        },
        "holdout_docs": len(test),
    }
    if test:
        truth = np.asarray([label == params.label for label, _ in test])
        predicted = label_scores(model, [text for _, text in test], params.label) >= 0.5
        true_pos = int((truth & predicted).sum())
        summary["precision"] = round(true_pos / max(int(predicted.sum()), 1), 4)
        summary["recall"] = round(true_pos / max(int(truth.sum()), 1), 4)
        summary["accuracy"] = round(float((truth == predicted).mean()), 4)
    with tempfile.TemporaryDirectory(prefix="curate-model-") as staging:  # fastText writes only to a path
        local = Path(staging) / "model.bin"
        try:
            model.save_model(str(local))
        except (OSError, ValueError) as exc:
            raise OutputError(f"{output}: cannot write the model ({exc})") from None
        with atomic_open(output) as handle, open(local, "rb") as saved:
            shutil.copyfileobj(saved, handle)
    return summary
