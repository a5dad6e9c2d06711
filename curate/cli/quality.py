"""`curate quality` (heuristic filters), `curate quality classify` and `curate quality train` (fastText)."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from curate.cli.common import emit_summary, keyword_option, stage_command, stage_group, user_errors
from curate.io.options import IOOptions
from curate.params import cli_parameters, from_mapping
from curate.stages.quality import QualityParams, QualityStage
from curate.stages.quality.classifier import (
    ClassifyParams,
    QualityClassifierStage,
    TrainParams,
    train_classifier,
)

app = stage_group(
    "Quality filtering: Gopher quality/repetition, C4 and FineWeb heuristics with per-language settings, "
    "and fastText quality classifiers.\n\n\b\n"
    "Usage: curate quality INPUT... -o OUT [options]   (see `curate quality run --help`)\n"
    "       curate quality classify INPUT... -o OUT --model model.bin\n"
    "       curate quality train --positive P --negative N -o model.bin"
)

_REJECTED = keyword_option(
    "rejected",
    str | None,
    None,
    "--rejected",
    help="Also write removed documents here, with quality_reasons.",
)

EXAMPLES = """Examples:

\b
  curate quality data/ -o out/quality
  curate quality langid-out/ -o out --filters gopher-quality,fineweb --rejected out-rejected
  curate quality data/ -o out --mode annotate            # keep all; add quality_reasons and q_* signals
  curate quality data/ -o out --filters gopher-repetition,gopher-quality,c4,fineweb   # FineWeb's chain
  curate quality data/ -o out --config quality.yaml --no-c4-remove-lines --workers 2

\b
quality.yaml (keys as in curate/data/quality/defaults.yaml; null disables a rule):
  gopher_quality: {min_doc_words: 30}
  languages:
    de: {stop_words: [der, die, das, und], fineweb: {max_short_line_ratio: 0.8}}
  fallback: {gopher_quality: {min_avg_word_length: 2}}
"""


@stage_command(
    app,
    "run",
    QualityParams,
    recipe="quality",
    help="Apply the heuristic quality filters; per-language settings come from the lang column.",
    examples=EXAMPLES,
    extra=[_REJECTED],
)
def quality(params: QualityParams, io: IOOptions, rejected: str | None = None) -> dict:
    from curate.runner import run_map_stage

    return run_map_stage(QualityStage(params), io, rejected_dir=rejected)


@stage_command(
    app,
    "classify",
    ClassifyParams,
    recipe="quality-classify",
    help="Add quality_score (float32): a fastText classifier's probability of --label; optionally filter.",
    examples="Examples:\n\n\b\n  curate quality classify data/ -o scored --model model.bin\n"
    "  curate quality classify data/ -o kept --model model.bin --min-score 0.5 --rejected low\n",
    extra=[_REJECTED],
)
def classify(params: ClassifyParams, io: IOOptions, rejected: str | None = None) -> dict:
    from curate.runner import run_map_stage

    return run_map_stage(QualityClassifierStage(params), io, rejected_dir=rejected)


def _train_command(**kwargs: Any) -> None:
    with user_errors("quality train"):
        params = from_mapping(TrainParams, {k: v for k, v in kwargs.items() if k not in _TRAIN_IO}, "options")
        summary = train_classifier(params, kwargs["output"])
        io = IOOptions(json_summary=kwargs["json_summary"], quiet=kwargs["quiet"])
        io.output = kwargs["output"]
        if io.json_summary:
            emit_summary(summary, io)
        elif not io.quiet and "precision" in summary:
            typer.echo(
                f"quality train: {summary['holdout_docs']:,} held-out docs: precision {summary['precision']:.3f}"
                f" · recall {summary['recall']:.3f} · accuracy {summary['accuracy']:.3f} → {io.output}",
                err=True,
            )


_TRAIN_IO = ("output", "json_summary", "quiet")
_train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        keyword_option("output", str, ..., "-o", "--output", help="Model file to write (.bin)."),
        *cli_parameters(TrainParams),
        *cli_parameters(
            IOOptions, exclude=tuple(f for f in IOOptions.__dataclass_fields__ if f not in _TRAIN_IO[1:])
        ),
    ]
)
app.command(
    "train",
    help="Train a fastText quality classifier (DCLM / FineWeb-Edu recipe) on positives vs negatives; "
    "prints precision/recall on a held-out split. The model works with `curate quality classify`.",
    epilog="Examples:\n\n\b\n  curate quality train --positive wiki/ --negative crawl/ -o model.bin\n"
    "  curate quality train --positive ref.parquet --negative web.parquet -o model.bin --epoch 10 --json\n",
)(_train_command)
