"""The `curate` command: one sub-command per stage, plus the demo."""

from __future__ import annotations

import typer

import curate
from curate.cli import demo, langid, run

app = typer.Typer(
    help="curate: streaming tools that turn raw text corpora into pretraining data.\n\n"
    "Every stage reads Parquet/JSONL (files, directories, globs, - for stdin) and writes sharded Parquet.\n"
    "Exit codes: 0 ok · 1 check failed · 2 usage · 3 bad input · 4 output problem · 70 internal · 130 interrupted.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)

# stage commands (one line each)
app.add_typer(langid.app, name="langid")
demo.register(app)
run.register(app)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curate {curate.__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version."),
):
    """curate: streaming tools that turn raw text corpora into pretraining data."""


def main() -> None:
    app()
