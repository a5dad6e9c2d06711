"""Thin glue between typer and the stages: flags derived from params dataclasses, errors, summaries."""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from curate.io.errors import EXIT_CLOSED_PIPE, EXIT_INTERRUPTED, CurateError, output_os_error
from curate.io.options import IOOptions
from curate.params import cli_parameters, from_mapping

EXIT_INTERNAL = 70
_IO_ONLY = ("inputs", "output")


class DefaultCommandGroup(TyperGroup):
    """A group that runs its default command when the first argument is not a subcommand.

    This lets ``curate langid INPUT -o OUT`` and ``curate langid calibrate INPUT -o FILE`` live side by side.
    """

    default_command = "run"

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def stage_group(help: str, examples: str | None = None) -> typer.Typer:
    """A typer sub-app whose default command (``run``) handles ``curate STAGE INPUT... -o OUT``."""
    return typer.Typer(cls=DefaultCommandGroup, help=help, epilog=examples, no_args_is_help=True,
                       rich_markup_mode=None)


def closed_pipe() -> typer.Exit:
    """Downstream closed the pipe (``curate … -o - | head``): stop quietly, as Unix tools do, with status 141
    (128 + SIGPIPE, what a shell reports for a tool killed by SIGPIPE). Writes still buffered for stdout go
    nowhere, so the interpreter's own flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return typer.Exit(EXIT_CLOSED_PIPE)


@contextlib.contextmanager
def user_errors(command: str, output: str | None = None) -> Iterator[None]:
    """Turn every failure into one line on stderr and a documented exit code (never a bare traceback).

    ``output`` names where a command writes, for errors that do not (a full disk reported without a path).
    """
    try:
        yield
    except CurateError as exc:
        typer.echo(f"curate {command}: error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except BrokenPipeError:
        raise closed_pipe() from None
    except OSError as exc:
        error = output_os_error(exc, exc.filename or output)
        if error is None:
            _internal(command, exc)
        typer.echo(f"curate {command}: error: {error}", err=True)
        raise typer.Exit(error.exit_code) from None
    except KeyboardInterrupt:
        typer.echo(f"curate {command}: interrupted; rerun the same command to resume", err=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except Exception as exc:
        _internal(command, exc)


def _internal(command: str, exc: Exception) -> NoReturn:
    if os.environ.get("CURATE_DEBUG"):
        traceback.print_exc()
    typer.echo(
        f"curate {command}: internal error: {type(exc).__name__}: {exc} "
        "(set CURATE_DEBUG=1 for a traceback, and please report it)",
        err=True,
    )
    raise typer.Exit(EXIT_INTERNAL) from None


def command_label(ctx: typer.Context) -> str:
    """How error messages name the command: ``mix apply``, ``langid`` (a group's default ``run`` is implied)."""
    words = ctx.command_path.split()[1:]
    return " ".join(words[:-1] if len(words) > 1 and words[-1] == "run" else words)


def emit_summary(summary: dict, io: IOOptions) -> None:
    """--json: the summary on stdout (stderr when stdout carries the data); else one line on stderr."""
    if io.json_summary:
        stream = sys.stderr if io.output == "-" else sys.stdout
        stream.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
        stream.flush()
    elif not io.quiet:
        typer.echo(describe_summary(summary), err=True)


_SUMMARY_SHOWN = 5  # removal reasons (or other fields) named on the summary line; the rest are counted
_BOOKKEEPING = {"stage", "output", "wall_seconds", "complete", "units", "units_this_task", "units_processed",
                "units_already_done", "docs_per_s", "errors_skipped", "removed", "chars_in", "chars_out", "seconds"}


def describe_summary(summary: dict) -> str:
    """One readable line: documents in and out, the main removal reasons, skipped errors, time and output."""
    docs_in, docs_out = summary.get("docs_in"), summary.get("docs_out")
    parts = []
    if docs_in is not None and docs_out is not None:
        share = f" ({100 * docs_out / docs_in:.1f}%)" if docs_in else ""
        parts.append(f"{docs_in:,} docs in → {docs_out:,} kept{share}")
    else:  # commands whose result is not a document count (calibrate, compare, ...): their own fields
        parts.extend(_fields(summary))
    if summary.get("removed"):
        parts.append("removed: " + _largest(summary["removed"]))
    if summary.get("errors_skipped"):
        where = f" (see {summary['output']}/_errors.jsonl)" if summary.get("output") not in (None, "-") else ""
        parts.append(f"{summary['errors_skipped']:,} bad rows or files skipped{where}")
    if not summary.get("complete", True):
        parts.append(f"this task finished {summary.get('units_processed', 0)} unit(s); other tasks still pending")
    parts.append(f"{summary.get('wall_seconds', 0):.1f}s → {summary.get('output', '')}")
    return f"{summary.get('stage', 'curate')}: " + " · ".join(parts)


def _largest(counts: dict) -> str:
    """The largest counts first, at most _SUMMARY_SHOWN of them, then how many more there are."""
    ranked = sorted(counts.items(), key=lambda item: (-_total(item[1]), item[0]))
    text = ", ".join(f"{name} {_total(count):,}" for name, count in ranked[:_SUMMARY_SHOWN])
    return text + (f", … {len(ranked) - _SUMMARY_SHOWN} more" if len(ranked) > _SUMMARY_SHOWN else "")


def _total(count: Any) -> int:
    return sum(_total(v) for v in count.values()) if isinstance(count, dict) else count


def _fields(summary: dict) -> list[str]:
    shown = []
    for key, value in summary.items():
        if key in _BOOKKEEPING or isinstance(value, bool):
            continue
        label = key.replace("_", " ")
        if isinstance(value, int | float):
            shown.append(f"{label} {value:,}")
        elif isinstance(value, dict | list):
            shown.append(f"{label}: {len(value):,}")
    return shown[:_SUMMARY_SHOWN]


@dataclasses.dataclass(frozen=True)
class RecipeStage:
    """A stage as recipes call it: the same params dataclass and function as its command."""

    name: str
    params_cls: type
    run: Callable[..., dict]
    extra: tuple[str, ...]


RECIPE_STAGES: dict[str, RecipeStage] = {}


def stage_command(
    app: typer.Typer,
    name: str,
    params_cls: type,
    *,
    help: str,
    examples: str,
    extra: list[inspect.Parameter] | None = None,
    recipe: str | None = None,
    output_file: str | None = None,
) -> Callable[[Callable[..., dict]], Callable[..., dict]]:
    """Register ``fn(params, io, **extra) -> summary`` as a command taking INPUT... -o OUT and every flag.

    The flags come from ``IOOptions`` and ``params_cls`` (one source of truth); ``extra`` adds command-only
    parameters (e.g. --rejected) that are passed to ``fn`` by keyword. ``recipe`` names the stage in
    recipe YAML (``curate run``), which validates its section against the same ``params_cls``.
    ``output_file`` describes -o when the command writes one file (a model, a table) instead of shards.
    """
    io_names = [f.name for f in dataclasses.fields(IOOptions) if f.name not in _IO_ONLY]
    param_names = [f.name for f in dataclasses.fields(params_cls)]
    extra = extra or []

    def decorator(fn: Callable[..., dict]) -> Callable[..., dict]:
        def command(ctx: typer.Context, **kwargs: Any) -> None:
            with user_errors(command_label(ctx), kwargs["output"]):
                io = from_mapping(IOOptions, {k: kwargs[k] for k in io_names}, "options")
                io.inputs, io.output = list(kwargs["inputs"]), kwargs["output"]
                if output_file is None:  # shards inside an input would be read back by the next run
                    from curate.io.inputs import check_apart

                    check_apart(io.inputs, [], io.output)
                params = from_mapping(params_cls, {k: kwargs[k] for k in param_names}, "options")
                summary = fn(params, io, **{p.name: kwargs[p.name] for p in extra})
                emit_summary(summary, io)

        signature = [
            inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
            inspect.Parameter(
                "inputs",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=typer.Argument(
                    ..., metavar="INPUT...", help="Parquet/JSONL files, directories, globs, or -"
                ),
                annotation=list[str],
            ),
            inspect.Parameter(
                "output",
                inspect.Parameter.KEYWORD_ONLY,
                default=typer.Option(
                    ..., "-o", "--output", help=output_file or "Output directory, or - for JSON lines on stdout"
                ),
                annotation=str,
            ),
            *cli_parameters(params_cls),
            *extra,
            *cli_parameters(IOOptions, exclude=_IO_ONLY),
        ]
        command.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
        command.__doc__ = help
        app.command(name, help=help, epilog=examples)(command)
        if recipe:
            RECIPE_STAGES[recipe] = RecipeStage(recipe, params_cls, fn, tuple(p.name for p in extra))
        return fn

    return decorator


def keyword_option(name: str, annotation: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
    """A command-only option (not part of a params dataclass), for ``stage_command(extra=...)``."""
    return inspect.Parameter(
        name,
        inspect.Parameter.KEYWORD_ONLY,
        default=typer.Option(default, *decls, help=help),
        annotation=annotation,
    )
