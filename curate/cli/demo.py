"""`curate sample` (the embedded sample corpus) and `curate demo` (the main pipeline on it, with a summary)."""

from __future__ import annotations

from pathlib import Path

import typer

from curate.cli.common import user_errors
from curate.io.options import IOOptions
from curate.io.output import OutputDir, ShardWriter
from curate.sample import generate


def write_sample(out: Path, docs: int, seed: int) -> Path:
    """Write the generated sample as a one-shard curate output directory."""
    directory = OutputDir(out)
    directory.prepare(
        {"stage": "sample", "parameters": {"docs": docs, "seed": seed}, "inputs": [], "units": []}, True
    )
    writer = ShardWriter(directory, 0, max_rows=docs)
    writer.write(generate(docs, seed))
    writer.commit()
    return out


def _summary_table(rows: list[tuple[str, dict]]) -> str:
    header = f"{'stage':<10} {'docs in':>9} {'docs out':>9} {'kept':>7} {'chars out':>11} {'seconds':>8}"
    lines = [header, "-" * len(header)]
    for name, s in rows:
        kept = 100 * s.get("docs_out", 0) / max(s.get("docs_in", 0), 1)
        lines.append(
            f"{name:<10} {s.get('docs_in', 0):>9,} {s.get('docs_out', 0):>9,} {kept:>6.1f}% "
            f"{s.get('chars_out', 0):>11,} {s.get('wall_seconds', 0):>8.2f}"
        )
    return "\n".join(lines)


def _language_table(by_lang: dict) -> str:
    top = sorted(by_lang.items(), key=lambda kv: -kv[1]["docs_in"])[:10]
    return "languages (top 10): " + ", ".join(f"{lang} {row['docs_in']}" for lang, row in top)


def register(app: typer.Typer) -> None:
    @app.command("sample", help="Write the embedded sample corpus (generated, no network) as Parquet.")
    def sample_command(
        output: Path = typer.Option(..., "-o", "--output", help="Output directory."),
        docs: int = typer.Option(2_000, help="Number of documents."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        with user_errors("sample"):
            write_sample(output, docs, seed)
            typer.echo(f"sample: {docs:,} documents → {output}", err=True)

    @app.command(
        "demo",
        help="Generate the sample corpus and run the main pipeline on it, then print a summary table.",
        epilog="Example:\n\n\b\n  curate demo -o demo-out",
    )
    def demo_command(
        output: Path = typer.Option(
            Path("demo-out"), "-o", "--output", help="Where the demo writes everything."
        ),
        docs: int = typer.Option(2_000, help="Documents in the generated sample."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        from curate.io.runner import run_map_stage
        from curate.stages.langid import LangidParams, LangidStage

        with user_errors("demo"):
            sample = write_sample(output / "sample", docs, seed)
            io = IOOptions(inputs=[str(sample)], output=str(output / "langid"), overwrite=True, quiet=True)
            langid = run_map_stage(LangidStage(LangidParams(min_score=0.5)), io)
            typer.echo(f"curate demo: {docs:,} generated documents in {sample}\n")
            typer.echo(_summary_table([("langid", langid)]))
            typer.echo("\n" + _language_table(langid.get("by_lang", {})))
            typer.echo(f"\noutputs under {output}/ (each stage: part-*.parquet, _manifest.json, _stats.json)")
