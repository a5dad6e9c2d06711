"""The `curate` command: one sub-command per stage, imported only when it is called.

Stages pull in heavy libraries (numba, LightGBM, SciPy, tokenizers); importing every stage for every call
would cost seconds per invocation, which users of shell pipelines and array jobs pay thousands of times.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click
import typer
from typer.core import TyperGroup

import curate
from curate.registry import (
    COMMANDS,
    GROUPS,
    STAGES,
    TOOLS,
    CommandSpec,
    StageSpec,
    ToolSpec,
    load,
    top_level_words,
)


def _path_specs(path: tuple[str, ...]) -> tuple[StageSpec | ToolSpec | CommandSpec | None, list[str]]:
    """The entry of the command table at ``path`` (if any) and the next words of the commands below it."""
    here, below = None, []
    for spec in (*STAGES.values(), *TOOLS.values(), *COMMANDS):
        words = spec.command
        if words == path:
            here = spec
        elif words[: len(path)] == path and words[len(path)] not in below:
            below.append(words[len(path)])
    return here, below


def _single(callback: Callable[..., None], name: str, help: str, examples: str) -> click.Command:
    holder = typer.Typer(rich_markup_mode=None, add_completion=False)
    holder.command(name, help=help, epilog=examples, no_args_is_help=True)(callback)
    return typer.main.get_command(holder)


def build_command(path: tuple[str, ...]) -> click.Command | None:
    """The click command at ``path``: built from the command table when it is asked for (only that entry's
    parameters module is imported), a group when commands sit below it."""
    from curate.cli.common import stage_command, tool_command

    spec, below = _path_specs(path)
    command: click.Command | None = None
    if isinstance(spec, StageSpec):
        command = _single(stage_command(spec), path[-1], spec.help, spec.examples)
    elif isinstance(spec, ToolSpec):
        command = _single(tool_command(spec), path[-1], spec.help, spec.examples)
    elif isinstance(spec, CommandSpec):
        holder = typer.Typer(rich_markup_mode=None, add_completion=False)
        load(spec.register)(holder)
        built = typer.main.get_command(holder)
        command = built.commands[path[-1]] if hasattr(built, "commands") else built
    if not below:
        return command
    return StageGroup(path, command, below)


class StageGroup(TyperGroup):
    """A command with sub-commands: ``curate langid INPUT -o OUT`` runs the stage, ``curate langid calibrate …``
    the tool below it. ``--help`` shows the stage's own flags and examples, then the sub-commands."""

    def __init__(self, path: tuple[str, ...], default: click.Command | None, below: list[str]):
        help_text, examples = GROUPS.get(path, (default.help or "" if default else "", None))
        super().__init__(name=path[-1], help=help_text, epilog=examples, no_args_is_help=True,
                         rich_markup_mode=None)
        self.path, self.default, self.below = path, default, below

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.below)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name == "run" and self.default is not None:  # the old spelling, `curate langid run …`
            return self.default
        return build_command((*self.path, cmd_name)) if cmd_name in self.below else None

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if self.default is not None and args and args[0] not in (*self.below, "run", "--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        if self.default is None:
            super().format_help(ctx, formatter)
            return
        self.default.format_help(ctx, formatter)
        self.format_commands(ctx, formatter)


class LazyGroup(TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        return top_level_words()

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        return build_command((cmd_name,)) if cmd_name in top_level_words() else None


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
