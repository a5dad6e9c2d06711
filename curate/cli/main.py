"""The `curate` command: one sub-command per stage, imported only when it is called.

Stages pull in heavy libraries (numba, LightGBM, SciPy, tokenizers); importing every stage for every call
would cost seconds per invocation, which users of shell pipelines and array jobs pay thousands of times.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import typer
from typer.core import TyperGroup

import curate

# command name → (module, attribute): a typer sub-app, or a `register(app)` function adding root commands
COMMANDS: dict[str, tuple[str, str]] = {
    "langid": ("curate.cli.langid", "app"),
    "quality": ("curate.cli.quality", "app"),
    "pii": ("curate.cli.pii", "app"),
    "dedup": ("curate.cli.dedup", "app"),
    "mix": ("curate.cli.mix", "app"),
    "pack": ("curate.cli.pack", "register"),
    "tokenizer": ("curate.cli.pack", "register"),
    "validate": ("curate.cli.validate", "register"),
    "stats": ("curate.cli.validate", "register"),
    "report": ("curate.cli.validate", "register"),
    "run": ("curate.cli.run", "register"),
    "status": ("curate.cli.run", "register"),
    "sample": ("curate.cli.demo", "register"),
    "demo": ("curate.cli.demo", "register"),
}


def load_command(name: str) -> Any:
    module_name, attribute = COMMANDS[name]
    target = getattr(importlib.import_module(module_name), attribute)
    if attribute == "app":
        command = typer.main.get_command(target)
        command.name = name
        return command
    holder = typer.Typer(rich_markup_mode=None)
    target(holder)
    built = typer.main.get_command(holder)  # a group, or the command itself when register() added one
    return built.commands[name] if hasattr(built, "commands") else built


def load_all() -> None:
    """Import every command module (recipes need every stage's registration)."""
    for module_name, _ in set(COMMANDS.values()):
        importlib.import_module(module_name)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        return load_command(cmd_name) if cmd_name in COMMANDS else None


app = typer.Typer(
    cls=LazyGroup,
    help="curate: streaming tools that turn raw text corpora into pretraining data.\n\n"
    "Every stage reads Parquet/JSONL (files, directories, globs, - for stdin) and writes sharded Parquet.\n"
    "Exit codes: 0 ok · 1 check failed · 2 usage · 3 bad input · 4 output problem · 5 remote storage still failing · 70 internal · 130 interrupted · 141 stdout closed (| head).",
    epilog="Examples:\n\n\b\n  curate demo\n  curate langid data/ -o out/langid --keep en\n"
    "  curate run recipes/fineweb-en.yaml --input data/ --work-dir work/\n",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"curate {curate.__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show version.")):
    """curate: streaming tools that turn raw text corpora into pretraining data."""


def main() -> None:
    from curate.cli.common import closed_pipe

    stdout = sys.stdout
    try:
        app()
    except BrokenPipeError:  # output written outside a command's error handling
        raise SystemExit(closed_pipe().exit_code) from None
    except SystemExit as exc:
        if exc.code == 1 and sys.stdout is not stdout:  # click's own closed-pipe exit (help, usage) wraps stdout
            raise SystemExit(closed_pipe().exit_code) from None
        raise
