"""`curate run recipe.yaml`: a pipeline of stages from YAML."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from curate.cli.common import describe_summary, user_errors
from curate.io.errors import UsageError
from curate.summary import RunSummary


def summary_table(rows: list[tuple[str, dict]]) -> str:
    """One line per stage: documents in/out, and characters (text stages) or tokens (pack) out."""
    header = f"{'stage':<14} {'docs in':>9} {'docs out':>9} {'kept':>7} {'chars/tokens out':>18} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for name, data in rows:
        s = RunSummary.from_dict(data)
        if s.docs_in is None:  # a tool step: it wrote a file
            lines.append(f"{name:<14} {'→ ' + (s.output or '-'):<46} {s.wall_seconds:>8.2f}")
            continue
        docs_out = s.docs_out or 0
        kept = 100 * docs_out / max(s.docs_in, 1)
        volume = (f"{s.chars_out:,} chars" if s.chars_out is not None
                  else f"{s.tokens_out:,} tokens" if s.tokens_out else "-")
        lines.append(f"{name:<14} {s.docs_in:>9,} {docs_out:>9,} {kept:>6.1f}% {volume:>18} {s.wall_seconds:>8.2f}")
    return "\n".join(lines)


def _print_plan(loaded, json_summary: bool) -> None:
    from curate.recipes import describe_stage

    plan = [describe_stage(stage) for stage in loaded.stages]
    if json_summary:
        typer.echo(json.dumps(plan, indent=2, default=str))
        return
    for i, row in enumerate(plan, 1):
        if row["kind"] == "tool":
            units = "tool"
        else:
            units = "?" if row["units"] is None else f"{row['finished']}/{row['units']} units finished"
        passes = f", passes {' → '.join(row['passes'])}" if row.get("passes") else ""
        typer.echo(f"{i}. {row['stage']}: {row['status']} ({units}{passes})")
        typer.echo(f"   in:  {', '.join(row['inputs']) or '-'}\n   out: {row['output']}")


def register(app: typer.Typer) -> None:
    @app.command(
        "run",
        help="Run a recipe: a YAML pipeline of stages (each validated against the stage's own options). "
        "A rerun resumes at the first unfinished shard of the first unfinished stage. --stage K runs one "
        "step (as array task --shard-index of --num-shards); --emit-slurm DIR writes one sbatch array script "
        "per pass, chained by submit.sh (see docs/pipelines.md).",
        epilog="Examples:\n\n\b\n  curate run recipes/demo.yaml --work-dir out\n"
        "  curate run recipes/fineweb-en.yaml --input /data/crawl --dry-run\n"
        "  curate run recipe.yaml --workers 2 --json\n"
        "  curate run recipe.yaml --executor ray --ray-address auto\n"
        "  curate run recipe.yaml --emit-slurm slurm/ --tasks 64 --sbatch-option=--partition=cpu && slurm/submit.sh\n"
        "  curate run recipe.yaml --stage 2 --shard-index 3 --num-shards 64   # what one array task runs\n"
        "  curate status out/",
    )
    def run_command(
        recipe: Path = typer.Argument(..., help="Recipe YAML file."),
        work_dir: str | None = typer.Option(
            None, help="Where stage outputs go (default: the recipe's work_dir)."
        ),
        inputs: list[str] | None = typer.Option(
            None, "--input", help="Replace the recipe's inputs (repeat for several)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the resolved plan and what is done; run nothing."
        ),
        workers: int | None = typer.Option(None, help="Worker processes for every stage (Ray: CPUs to use)."),
        stage: str | None = typer.Option(
            None, "--stage", help="Run only this step: its number (1-based), NN-name, or name."
        ),
        pass_name: str | None = typer.Option(
            None, "--pass", help="With --stage: only this pass (dedup-minhash: signatures, cluster, filter)."
        ),
        shard_index: int | None = typer.Option(
            None, help="This array task's index (default: $SLURM_ARRAY_TASK_ID relative to its minimum)."
        ),
        num_shards: int | None = typer.Option(
            None, help="Number of array tasks (default: $SLURM_ARRAY_TASK_COUNT, else 1)."
        ),
        executor: str = typer.Option("local", help="local (this machine's processes) or ray."),
        ray_address: str | None = typer.Option(
            None, help="Ray cluster to join (auto: the one this node belongs to; default: start a local one)."
        ),
        emit_slurm: Path | None = typer.Option(
            None, "--emit-slurm", help="Write one sbatch script per pass and submit.sh into DIR; run nothing."
        ),
        tasks: int | None = typer.Option(
            None, help="--emit-slurm: array tasks per array pass (default: units of the first stage)."
        ),
        sbatch_options: list[str] | None = typer.Option(
            None, "--sbatch-option", help="--emit-slurm: an extra #SBATCH line, e.g. --sbatch-option=--partition=cpu."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
        json_summary: bool = typer.Option(False, "--json", help="Print the summaries (or the plan) as JSON."),
    ) -> None:
        from curate.io.options import IOOptions
        from curate.pipeline import emit_slurm as write_slurm
        from curate.pipeline import record_pipeline
        from curate.recipes import describe_stage, load_recipe, run_recipe, run_step

        with user_errors("run"):
            overrides: dict = {"quiet": True} if quiet or json_summary else {}
            if workers is not None:
                overrides["workers"] = workers
            if executor != "local" or ray_address:
                overrides.update(executor=executor, ray_address=ray_address)
            loaded = load_recipe(recipe, work_dir, overrides, inputs=inputs or None)
            if dry_run:
                _print_plan(loaded, json_summary)
                return
            if emit_slurm is not None:
                count = tasks or describe_stage(loaded.stages[0]).get("units")
                if not count:
                    raise UsageError("--emit-slurm: the inputs cannot be planned yet; give --tasks N")
                written = write_slurm(loaded, emit_slurm, count, inputs or None, sbatch_options or [])
                typer.echo(f"{len(written) - 1} sbatch scripts ({count} tasks per array pass) and "
                           f"{written[-1]}; submit with: bash {written[-1]}")
                return
            if pass_name and not stage:
                raise UsageError("--pass needs --stage")
            task = IOOptions(shard_index=shard_index, num_shards=num_shards).task()
            record_pipeline(loaded, inputs or None)
            if stage:
                step = loaded.find(stage)
                pairs = [(step, run_step(step, task, pass_name))]
            else:
                pairs = list(zip(loaded.stages, run_recipe(loaded, task), strict=False))
            rows = [(step.name, s) for step, s in pairs]
            if json_summary:
                typer.echo(json.dumps([s for _, s in rows], default=str, sort_keys=True))
            elif stage and not quiet:
                typer.echo(describe_summary(rows[0][1]), err=True)
            elif not stage:
                typer.echo(summary_table(rows))

    @app.command(
        "status",
        help="Per step and pass of a `curate run` work dir: complete / running / failed / missing units, and "
        "the commands that resubmit only what is not finished (sbatch --array=… when --emit-slurm wrote "
        "scripts). Exit 0 when everything is complete, 1 otherwise.",
        epilog="Examples:\n\n\b\n  curate status out/\n  curate status out/ --json | jq '.pieces[].state'\n"
        "  curate status out/ --assume-dead   # after the Slurm jobs are gone: running tasks count as failed",
    )
    def status_command(
        work_dir: Path = typer.Argument(..., help="The work dir of `curate run`."),
        assume_dead: bool = typer.Option(
            False, "--assume-dead", help="Count tasks still marked running (on other hosts) as failed."
        ),
        json_summary: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    ) -> None:
        from curate.pipeline import load_pipeline, pipeline_status, resubmit_commands

        with user_errors("status"):
            loaded, record = load_pipeline(work_dir)
            slurm = record.get("slurm")
            rows = pipeline_status(loaded, slurm["tasks"] if slurm else None, assume_dead)
            commands = resubmit_commands(loaded, rows, slurm, record.get("inputs"))
            if json_summary:
                typer.echo(json.dumps({"pieces": [r.to_json() for r in rows], "resubmit": commands}, indent=2))
            else:
                typer.echo(status_table(rows))
                if commands:
                    typer.echo("\nresubmit only what is not finished:\n  " + "\n  ".join(commands))
                else:
                    typer.echo("\nall complete")
        raise typer.Exit(0 if not commands else 1)


def status_table(rows) -> str:
    header = f"{'step':<28} {'state':<10} {'units':>6} {'done':>6} {'running':>8} {'failed':>7} {'missing':>8}"
    lines = [header, "-" * len(header)]
    for r in rows:
        units = "?" if r.units is None else str(r.units)
        lines.append(f"{r.key:<28} {r.state:<10} {units:>6} {len(r.complete):>6} {len(r.running):>8} "
                     f"{len(r.failed):>7} {len(r.missing):>8}")
        if r.failed:
            tasks = _short(r.rerun_tasks())
            lines.append(f"{'':<28} failed units {_short(r.failed)} (tasks {tasks} of {r.tasks})")
        for error in r.errors[:3]:
            lines.append(f"{'':<28} error: {error}")
    return "\n".join(lines)


def _short(values: list[int]) -> str:
    from curate.pipeline import array_ranges

    return array_ranges(values) if values else "-"
