"""`curate sample` (the embedded sample corpus) and `curate demo` (the main pipeline on it, with a summary)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import typer

from curate.cli.common import user_errors
from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.output import OutputDir, ShardWriter
from curate.sample import generate

DEMO_VOCAB_SIZE = 2_000  # small: the demo's tokenizer is trained on the sample itself


def write_sample(out: str | Path, docs: int, seed: int) -> str | Path:
    """Write the generated sample as a one-shard curate output directory."""
    directory = OutputDir(out)
    directory.prepare(
        {"stage": "sample", "parameters": {"docs": docs, "seed": seed}, "inputs": [], "units": []}, True
    )
    writer = ShardWriter(directory, 0, max_rows=docs)
    writer.write(generate(docs, seed))
    writer.commit()
    return out


@contextlib.contextmanager
def demo_recipe(given: Path | None) -> Iterator[Path]:
    """The recipe to run: ``given``, else the demo recipe shipped inside the package (``recipes/demo.yaml`` of
    a checkout links to that file), so `curate demo` works from any directory and from an installed wheel."""
    if given is not None:
        if not given.exists():
            raise UsageError(f"--recipe {given}: recipe not found")
        yield given
        return
    with resources.as_file(resources.files("curate.data") / "recipes" / "demo.yaml") as path:
        yield path


def _language_table(by_lang: dict) -> str:
    top = sorted(by_lang.items(), key=lambda kv: -kv[1]["docs_in"])[:10]
    return "languages (top 10): " + ", ".join(f"{lang} {row['docs_in']}" for lang, row in top)


def register(app: typer.Typer) -> None:
    @app.command(
        "sample",
        help="Write the embedded sample corpus (generated, no network) as Parquet: several languages, web "
        "boilerplate and junk, near-duplicates, short and long documents, a `source` column of domains.",
        epilog="Examples:\n\n\b\n  curate sample -o sample --docs 5000 --seed 1\n"
        "  curate sample -o sample && curate langid sample -o out/langid",
    )
    def sample_command(
        output: str = typer.Option(..., "-o", "--output", help="Output directory (or s3://… prefix)."),
        docs: int = typer.Option(2_000, help="Number of documents."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        with user_errors("sample"):
            write_sample(output, docs, seed)
            typer.echo(f"sample: {docs:,} documents → {output}", err=True)

    @app.command(
        "demo",
        help="Generate the sample corpus and run the demo recipe on it, then print a summary table.",
        epilog="Example:\n\n\b\n  curate demo -o demo-out",
    )
    def demo_command(
        output: Path = typer.Option(
            Path("demo-out"), "-o", "--output", help="Where the demo writes everything."
        ),
        recipe: Path | None = typer.Option(
            None, help="The pipeline to run on the sample (default: the demo recipe shipped with curate, "
            "recipes/demo.yaml in a checkout)."
        ),
        docs: int = typer.Option(2_000, help="Documents in the generated sample."),
        seed: int = typer.Option(0, help="Random seed."),
    ) -> None:
        from curate.cli.run import summary_table
        from curate.recipes import load_recipe, run_recipe
        from curate.report import write_report
        from curate.stages.pack.train import train_tokenizer

        with user_errors("demo"), demo_recipe(recipe) as recipe_path:
            sample = write_sample(output / "sample", docs, seed)
            tokenizer_io = IOOptions(inputs=[str(sample)], output=str(output / "tokenizer.json"), quiet=True)
            train_tokenizer(DEMO_VOCAB_SIZE, 2, "<|endoftext|>", tokenizer_io)
            loaded = load_recipe(
                recipe_path, str(output), {"quiet": True, "overwrite": True}, inputs=[str(sample)]
            )
            summaries = run_recipe(loaded)
            typer.echo(f"curate demo: {docs:,} generated documents in {sample}, recipe {recipe or 'demo.yaml'}\n")
            typer.echo(
                summary_table(
                    [(s.name, summary) for s, summary in zip(loaded.stages, summaries, strict=False)]
                )
            )
            by_lang = next((s["by_lang"] for s in summaries if "by_lang" in s), None)
            if by_lang:
                typer.echo("\n" + _language_table(by_lang))
            report = write_report(output, output / "report.html")
            typer.echo(f"\noutputs under {output}/ (each stage: its shards, _manifest.json, _stats.json)")
            typer.echo(f"report: {report}")
