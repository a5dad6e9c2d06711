"""`curate run recipe.yaml`: a pipeline of stages from YAML."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from curate.cli.common import user_errors


def summary_table(rows: list[tuple[str, dict]]) -> str:
    """One line per stage: documents in/out, and characters (text stages) or tokens (pack) out."""
    header = f"{'stage':<14} {'docs in':>9} {'docs out':>9} {'kept':>7} {'chars/tokens out':>18} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for name, s in rows:
        kept = 100 * s.get("docs_out", 0) / max(s.get("docs_in", 0), 1)
        tokens = s.get("tokens", {}).get("out") if isinstance(s.get("tokens"), dict) else None
        volume = f"{s['chars_out']:,} chars" if "chars_out" in s else f"{tokens:,} tokens" if tokens else "-"
        lines.append(
            f"{name:<14} {s.get('docs_in', 0):>9,} {s.get('docs_out', 0):>9,} {kept:>6.1f}% "
            f"{volume:>18} {s.get('wall_seconds', 0):>8.2f}"
        )
    return "\n".join(lines)


def register(app: typer.Typer) -> None:
    @app.command(
        "run",
        help="Run a recipe: a YAML pipeline of stages (each validated against the stage's own options). "
        "A rerun resumes at the first unfinished shard of the first unfinished stage.",
        epilog="Examples:\n\n\b\n  curate run recipes/demo.yaml --work-dir out\n"
        "  curate run recipes/fineweb-en.yaml --dry-run\n  curate run recipe.yaml --workers 2 --json",
    )
    def run_command(
        recipe: Path = typer.Argument(..., help="Recipe YAML file."),
        work_dir: str | None = typer.Option(
            None, help="Where stage outputs go (default: the recipe's work_dir)."
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the resolved plan and what is done; run nothing."
        ),
        workers: int | None = typer.Option(None, help="Worker processes for every stage."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress on stderr."),
        json_summary: bool = typer.Option(False, "--json", help="Print the summaries (or the plan) as JSON."),
    ) -> None:
        from curate.recipes import describe_stage, load_recipe, run_recipe

        with user_errors("run"):
            overrides = {"quiet": True} if quiet or json_summary else {}
            if workers is not None:
                overrides["workers"] = workers
            loaded = load_recipe(recipe, work_dir, overrides)
            if dry_run:
                plan = [describe_stage(stage) for stage in loaded.stages]
                if json_summary:
                    typer.echo(json.dumps(plan, indent=2, default=str))
                    return
                for i, row in enumerate(plan, 1):
                    units = (
                        "?" if row["units"] is None else f"{row['finished']}/{row['units']} units finished"
                    )
                    typer.echo(f"{i}. {row['stage']}: {row['status']} ({units})")
                    typer.echo(f"   in:  {', '.join(row['inputs'])}\n   out: {row['output']}")
                return
            summaries = run_recipe(loaded)
            rows = [(stage.name, s) for stage, s in zip(loaded.stages, summaries, strict=False)]
            if json_summary:
                typer.echo(json.dumps([s for _, s in rows], default=str, sort_keys=True))
            else:
                typer.echo(summary_table(rows))
