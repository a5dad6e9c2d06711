"""`curate quality train`: a fastText quality classifier (the stage commands come from the command table)."""

from __future__ import annotations

import inspect
from typing import Any

import typer

from curate.cli.common import cli_argument, emit_summary, user_errors
from curate.io.options import IOOptions
from curate.params import Argument, cli_parameters, from_mapping
from curate.stages.quality.classifier import TrainParams, train_classifier

_REPORT = ("json_summary", "quiet")


def _train_command(**kwargs: Any) -> None:
    with user_errors("quality train"):
        params = from_mapping(TrainParams, {k: v for k, v in kwargs.items() if k not in ("output", *_REPORT)},
                              "options")
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


_train_command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [
        cli_argument(Argument("output", str, flags=("-o", "--output"), help="Model file to write (.bin).")),
        *cli_parameters(TrainParams),
        *cli_parameters(IOOptions, exclude=tuple(f for f in IOOptions.__dataclass_fields__ if f not in _REPORT)),
    ]
)


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        help="Train a fastText quality classifier (DCLM / FineWeb-Edu recipe) on positives vs negatives; "
        "prints precision/recall on a held-out split. The model works with `curate quality classify`.",
        epilog="Examples:\n\n\b\n  curate quality train --positive wiki/ --negative crawl/ -o model.bin\n"
        "  curate quality train --positive ref.parquet --negative web.parquet -o model.bin --epoch 10 --json\n",
    )(_train_command)
