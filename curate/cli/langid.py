"""`curate langid` and `curate langid calibrate`."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import typer

from curate.cli.common import keyword_option, stage_command, stage_group
from curate.io.inputs import BadRows, Columns, iter_batches
from curate.io.options import IOOptions
from curate.io.output import write_text_atomic
from curate.params import option
from curate.stages.langid import (
    CALIBRATION_CEILING,
    CALIBRATION_FLOOR,
    ORIGINAL_LANG,
    LangidParams,
    LangidStage,
    calibrate,
)

app = stage_group(
    "Language identification with fastText (offline default model): adds lang and lang_score, filters.\n\n"
    "Usage: curate langid INPUT... -o OUT [options]   (see `curate langid run --help`)",
    examples="Examples:\n\n\b\n  curate langid data/ -o out/langid --keep en --min-score 0.65\n"
    "  curate langid calibrate out/langid -o thresholds.yaml\n",
)

EXAMPLES = """Examples:

\b
  curate langid data/ -o out/langid
  curate langid 'crawl/*.jsonl.zst' -o out --keep en,de,fr --min-score 0.65 --workers 2
  curate langid docs.parquet -o out --thresholds thresholds.yaml --top-k 3
  zstdcat x.jsonl.zst | curate langid - -o - | head
  curate langid data/ -o out --model glotlid/model_v3.bin   # lang=eng, lang_script=Latn
"""


@stage_command(
    app,
    "run",
    LangidParams,
    help="Add lang, lang_score (and lang_top with --top-k) to every document; optionally filter. "
    "An input column named lang is kept as lang_original (with a warning on stderr).",
    examples=EXAMPLES,
    extra=[
        keyword_option("rejected", str | None, None, "--rejected", help="Also write removed documents here.")
    ],
    recipe="langid",
)
def langid(params: LangidParams, io: IOOptions, rejected: str | None = None) -> dict:
    from curate.runner import run_map_stage

    stage = LangidStage(params)
    for wanted, code in stage.keep_mapped.items():
        typer.echo(f"curate langid: --keep {wanted}: using the model's code '{code}'", err=True)
    summary = run_map_stage(stage, io, rejected_dir=rejected)
    if summary.get(ORIGINAL_LANG):
        typer.echo(f"curate langid: warning: the input already had a 'lang' column; it is kept as "
                   f"'{ORIGINAL_LANG}' ({summary[ORIGINAL_LANG]:,} documents) and 'lang' now holds the "
                   "model's prediction", err=True)
    if summary.get("docs_in") and not summary.get("docs_out"):
        removed = ", ".join(f"{reason} {count:,}" for reason, count in sorted(summary.get("removed", {}).items()))
        typer.echo(f"curate langid: warning: no document kept of {summary['docs_in']:,} (removed: {removed}); "
                   "check --keep, --min-score and --thresholds", err=True)
    return summary


@dataclass
class CalibrateParams:
    model: str | None = option(
        None,
        "fastText LID model (default: bundled lid.176.ftz); unused when the input has lang and lang_score.",
    )
    min_docs: int = option(20, "Languages with fewer predicted documents get no threshold.")


@stage_command(
    app,
    "calibrate",
    CalibrateParams,
    help=(
        "Per-language score thresholds, the FineWeb2 way: for each predicted language, "
        f"tau = max({CALIBRATION_FLOOR}, min({CALIBRATION_CEILING}, median - std)) of its documents' scores. "
        "-o names the YAML file to write (- for stdout); use it with `curate langid --thresholds`."
    ),
    output_file="YAML file of thresholds to write (- for stdout)",
    examples="Examples:\n\n\b\n  curate langid calibrate data/ -o thresholds.yaml\n"
    "  curate langid data/ -o out --thresholds thresholds.yaml\n",
)
def calibrate_command(params: CalibrateParams, io: IOOptions) -> dict:
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    table = calibrate(
        iter_batches(io.inputs, columns, io.batch_size, bad=bad), params.model, columns, params.min_docs
    )
    lines = [
        f"# curate langid calibrate: tau = max({CALIBRATION_FLOOR}, min({CALIBRATION_CEILING}, median - std))"
    ]
    lines += [
        f"{lang}: {row['threshold']}  # docs={row['docs']} median={row['median']} std={row['std']}"
        for lang, row in table.items()
    ]
    text = "\n".join(lines) + "\n"
    if io.output == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(io.output, text)
    return {
        "stage": "langid calibrate",
        "output": io.output,
        "languages": table,
        "errors_skipped": len(bad.records),
    }
