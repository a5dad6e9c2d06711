"""`curate validate` (CI data checks), `curate stats` (corpus statistics) and `curate report` (HTML report)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from curate.cli.common import user_errors
from curate.io.errors import EXIT_CHECK_FAILED, UsageError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.params import cli_parameters, from_mapping

# The flags of IOOptions that a read-only command has (no output directory, no work splitting).
_READ_ONLY_EXCLUDE = ("inputs", "output", "max_rows_per_shard", "workers", "shard_index", "num_shards", "overwrite")

VALIDATE_EXAMPLES = """Exit codes: 0 every rule passed · 1 a rule failed · 2 usage error (bad flag, bad rules
file) · 3 input that cannot be read (missing file, corrupt Parquet or JSON, no text column; the message names
the file) · 5 remote storage still failing · 70 internal error.

Examples:

\b
  curate validate out/final --rules rules.yaml
  curate validate out/final --unique-ids --max-duplicate-ratio 0.01 --min-chars 200
  curate validate out/lid --languages en,de,fr --min-language-share en:0.5 --check 'lang_score>=0.65@0.95'
  curate validate out/final --rules rules.yaml --format junit > validate.xml
  curate validate data.jsonl.zst --min-tokens 16 --max-tokens 8192 --tokenizer gpt2.json --json

\b
rules.yaml holds the same options without dashes, e.g.:
  required_columns: [id, text:string, quality_score:float]
  unique_ids: true
  max_duplicate_ratio: 0.01
  languages: [en, de]
  min_language_share: {en: 0.6}
  min_rows: 1000
  check: ["quality_score >= 0.5 @ 0.9"]
"""

STATS_EXAMPLES = """Examples:

\b
  curate stats out/lid
  curate stats 'crawl/*.jsonl.zst' --tokenizer gpt2.json
  curate stats out/final --format md >> pr-comment.md
  curate stats out/final --json | jq .chars_per_doc.p50
"""

REPORT_EXAMPLES = """Examples:

\b
  curate demo -o demo-out && curate report demo-out -o demo-out/report.html
  curate report runs/2024-06-01 -o report.html --text-column content
"""


def _read_only_command(
    app: typer.Typer, name: str, params_cls: type, help: str, epilog: str, extra: list[inspect.Parameter],
    run: Callable[..., None],
) -> None:
    """A command taking INPUT..., the fields of ``params_cls`` and the read-side IO flags; ``run`` gets them."""
    io_names = [f.name for f in dataclasses.fields(IOOptions) if f.name not in _READ_ONLY_EXCLUDE]
    param_names = [f.name for f in dataclasses.fields(params_cls)]

    def command(**kwargs: Any) -> None:
        io = from_mapping(IOOptions, {k: kwargs[k] for k in io_names}, "options")
        io.inputs = list(kwargs["inputs"])
        run(io, {k: kwargs[k] for k in param_names}, {p.name: kwargs[p.name] for p in extra})

    command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list[str],
                          default=typer.Argument(..., metavar="INPUT...",
                                                 help="Parquet/JSONL files, directories, globs, or -")),
        *extra,
        *cli_parameters(params_cls),
        *cli_parameters(IOOptions, exclude=_READ_ONLY_EXCLUDE),
    ])
    app.command(name, help=help, epilog=epilog)(command)


def _option(name: str, annotation: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, help=help))


def register(app: typer.Typer) -> None:
    from curate.stages.corpus_stats import StatsParams
    from curate.stages.validate import ValidateRules

    def run_validate(io: IOOptions, values: dict, extra: dict) -> None:
        from curate.stages.validate import format_junit, format_text, load_rules, validate

        with user_errors("validate"):  # usage errors exit 2, unreadable input 3 (1 means a rule failed)
            io.check()
            fmt = "json" if io.json_summary else extra["format"]
            if fmt not in ("text", "json", "junit"):
                raise UsageError(f"--format must be text, json or junit, got {fmt!r}")
            given = from_mapping(ValidateRules, values, "options")
            rules = load_rules(extra["rules"], {k: getattr(given, k) for k in values})
            report = validate(rules, io.inputs, Columns(io.text_column, io.id_column), io.batch_size,
                              io.on_error == "skip")
            writers = {"json": lambda r: json.dumps(r, sort_keys=True), "junit": format_junit, "text": format_text}
            sys.stdout.write(writers[fmt](report).rstrip("\n") + "\n")
            if not report["passed"]:
                raise typer.Exit(EXIT_CHECK_FAILED)

    _read_only_command(
        app, "validate", ValidateRules,
        help="Check data against rules (columns and types, null/empty text, unique ids, languages, exact "
        "duplicates, lengths, row counts, numeric columns) in one streaming pass; exit 1 when a rule fails. "
        "Each failing rule shows its measured value, the bound and sample ids of offending rows.",
        epilog=VALIDATE_EXAMPLES,
        extra=[
            _option("rules", str | None, None, "--rules", help="YAML file of rules (flags given too override it)."),
            _option("format", str, "text", "--format", help="text, json or junit (JUnit XML, a test case per rule)."),
        ],
        run=run_validate,
    )

    def run_stats(io: IOOptions, values: dict, extra: dict) -> None:
        from curate.stages.corpus_stats import corpus_stats, format_markdown, format_table

        with user_errors("stats"):
            io.check()
            params = from_mapping(StatsParams, values, "options")
            stats = corpus_stats(params, io.inputs, Columns(io.text_column, io.id_column), io.batch_size,
                                 io.on_error == "skip")
            fmt = "json" if io.json_summary else params.format
            text = {"json": lambda s: json.dumps(s, sort_keys=True), "md": format_markdown, "table": format_table}
            sys.stdout.write(text[fmt](stats) + "\n")

    _read_only_command(
        app, "stats", StatsParams,
        help="Documents, characters, tokens (--tokenizer), per-language counts, length quantiles and null/empty "
        "counts, in one streaming pass: a terminal table, markdown (--format md) or --json.",
        epilog=STATS_EXAMPLES, extra=[], run=run_stats,
    )

    @app.command(
        "report",
        help="Write one self-contained HTML file (no network, inline SVG charts) about a run directory: the "
        "graph of its stages, the document and token funnel, removal reasons with examples, languages after "
        "every stage, signal histograms with their thresholds, parameters, lengths, dedup clusters, the "
        "mixture and its search, and packing.",
        epilog=REPORT_EXAMPLES,
    )
    def report_command(
        run_dir: str = typer.Argument(..., metavar="RUN_DIR", help="Directory holding one sub-directory per stage."),
        output: str = typer.Option(..., "-o", "--output", help="HTML file to write."),
        text_column: str = typer.Option("text", help="Column holding the document text (lengths, examples)."),
        id_column: str = typer.Option("id", help="Column holding document ids (shown with examples)."),
        title: str | None = typer.Option(None, help="Report title (default: the run directory's name)."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the report's path."),
    ) -> None:
        from curate.report import write_report

        with user_errors("report"):
            path = write_report(run_dir, output, text_column=text_column, id_column=id_column, title=title)
            if not quiet:
                typer.echo(f"report: {path}", err=True)
