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

from curate.io.errors import EXIT_CLOSED_PIPE, EXIT_INTERRUPTED, CurateError, UsageError, output_os_error
from curate.io.options import IOOptions
from curate.params import Argument, cli_parameters, from_mapping, leaf_fields
from curate.registry import EXPLAIN, ONLY_PASS, StageSpec, ToolSpec, load

EXIT_INTERNAL = 70


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
    """How error messages name the command: ``mix apply``, ``langid`` (a group's default ``run`` is implied),
    whether curate was started as ``curate`` or ``python -m curate``."""
    words = ctx.command_path[len(ctx.find_root().command_path):].split()
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


def cli_argument(argument: Argument) -> inspect.Parameter:
    """A typer parameter for an :class:`~curate.params.Argument`: ``inputs`` is the positional INPUT...,
    anything else an option (required when it has no default)."""
    default = ... if argument.required else argument.default
    if argument.name == "inputs":
        metavar = "INPUT..." if argument.required else "[INPUT...]"
        info: Any = typer.Argument(default, metavar=metavar, help=argument.help)
        return inspect.Parameter("inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=info,
                                 annotation=argument.type)
    info = typer.Option(default, *argument.flags, help=argument.help)
    return inspect.Parameter(argument.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=argument.type)


INPUTS = Argument("inputs", list[str], help="Parquet/JSONL/WARC files, directories, globs, or -")
SHARDS_OUTPUT = "Output directory, or - for JSON lines on stdout"


def _io_parameters(names: tuple[str, ...]) -> list[inspect.Parameter]:
    return cli_parameters(IOOptions, exclude=tuple(f.name for f in dataclasses.fields(IOOptions) if f.name not in names))


def _io_from(kwargs: dict, names: tuple[str, ...]) -> IOOptions:
    io = from_mapping(IOOptions, {k: kwargs[k] for k in names}, "options")
    io.inputs, io.output = list(kwargs["inputs"]), kwargs["output"]
    return io


def stage_command(spec: StageSpec) -> Callable[..., None]:
    """The command of a stage: INPUT... -o OUT, its parameters' flags, its options and the I/O flags it uses."""
    params_cls = spec.params_class()
    param_names = [f.name for f in leaf_fields(params_cls)]

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        with user_errors(command_label(ctx), kwargs["output"]):
            from curate.io.inputs import check_apart  # pyarrow: not for `curate --help`

            if kwargs.get(EXPLAIN.name):
                params = from_mapping(params_cls, {k: kwargs[k] for k in param_names}, "options")
                explain = load(spec.explain or "")
                typer.echo("\n".join(explain(params, **{a.name: kwargs[a.name] for a in spec.explain_options})))
                return
            if not kwargs["inputs"] or kwargs["output"] is None:
                raise UsageError("missing INPUT... and -o OUT (or --explain)")
            io = _io_from(kwargs, spec.io)
            check_apart(io.inputs, [], io.output)  # shards inside an input would be read back by the next run
            params = from_mapping(params_cls, {k: kwargs[k] for k in param_names}, "options")
            only = kwargs.get(ONLY_PASS.name)
            summary = spec.run(params, io, only, **{a.name: kwargs[a.name] for a in spec.options})
            emit_summary(summary, io)
            if not io.quiet and not io.json_summary and summary.get("complete", True):
                for line in spec.lines(summary):
                    typer.echo(line, err=True)

    # a stage that can explain its settings runs without inputs then: INPUT... and -o are checked above
    inputs, output = (INPUTS, Argument("output", str, flags=("-o", "--output"), help=SHARDS_OUTPUT))
    explaining: tuple[Argument, ...] = ()
    if spec.explain:
        inputs = dataclasses.replace(INPUTS, type=list[str] | None, default=None)
        output = dataclasses.replace(output, type=str | None, default=None)
        explaining = (EXPLAIN, *spec.explain_options)
    command.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context),
        cli_argument(inputs),
        cli_argument(output),
        *cli_parameters(params_cls),
        *map(cli_argument, spec.options),
        *map(cli_argument, explaining),
        *([cli_argument(ONLY_PASS)] if spec.passes is not None else []),
        *_io_parameters(spec.io),
    ])
    command.__doc__ = spec.help
    return command


def tool_command(spec: ToolSpec) -> Callable[..., None]:
    """The command of a tool: its parameters' flags and arguments (and INPUT... -o FILE with I/O flags)."""
    classes = spec.params_classes()
    report = ("json_summary", "quiet")

    def command(ctx: typer.Context, **kwargs: Any) -> None:
        with user_errors(command_label(ctx), kwargs.get("output")):
            params = [from_mapping(cls, {f.name: kwargs.pop(f.name) for f in leaf_fields(cls)}, "options")
                      for cls in classes]
            if spec.io:
                io = _io_from(kwargs, spec.io)
                arguments: dict[str, Any] = {"io": io}
            else:
                io = IOOptions(json_summary=kwargs.pop("json_summary"), quiet=kwargs.pop("quiet"))
                io.output = kwargs.get("output") or ""
                arguments = {a.name: kwargs[a.name] for a in spec.arguments}
            summary, lines = spec.call(params, arguments)
            if io.json_summary or not lines:
                emit_summary(summary, io)
            elif not io.quiet:
                typer.echo("\n".join(lines), err=True)

    signature = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
    if spec.io:
        signature += [cli_argument(INPUTS), cli_argument(Argument("output", str, flags=("-o", "--output"),
                                                                  help=spec.output))]
    signature += [*map(cli_argument, spec.arguments)]
    for cls in classes:
        signature += cli_parameters(cls)
    signature += _io_parameters(spec.io or report)
    command.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    command.__doc__ = spec.help
    return command
