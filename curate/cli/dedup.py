"""`curate dedup exact`, `curate dedup minhash` (+ signatures / cluster / filter) and `curate dedup rehydrate`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import typer

from curate.cli.common import keyword_option, stage_command, stage_group
from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.storage import require_local, work_dir_beside
from curate.stages.dedup.params import (
    ClusterParams,
    ExactParams,
    FilterParams,
    MinhashParams,
    RehydrateParams,
    SignatureParams,
)

app = typer.Typer(
    help="Deduplication: exact keys, MinHash-LSH near-duplicates (out of core), FineWeb2 rehydration.",
    epilog="Examples:\n\n\b\n  curate dedup exact data/ -o out/exact\n  curate dedup minhash data/ -o out/dedup\n",
    no_args_is_help=True,
    rich_markup_mode=None,
)
minhash_app = stage_group(
    "MinHash-LSH near-duplicate removal. `curate dedup minhash INPUT... -o OUT` runs every pass; the passes\n"
    "`signatures`, `cluster` and `filter` run separately for cluster array jobs (--shard-index/--num-shards).",
    examples="Examples:\n\n\b\n  curate dedup minhash data/ -o out/dedup --threshold 0.8 --bands 14 --rows 8\n"
    "  curate dedup minhash signatures data/ -o work/sigs --shard-index 0 --num-shards 4\n",
)
app.add_typer(minhash_app, name="minhash")

REJECTED = keyword_option("rejected", str | None, None, "--rejected", help="Also write removed documents here.")
CLUSTERS = keyword_option("clusters", str, ..., "--clusters", help="Clusters directory from `dedup minhash cluster`.")


def _lsh_line(params: SignatureParams, io: IOOptions) -> None:
    """The LSH parameters, and a word before numba compiles the kernels (first run only: then cached)."""
    from curate.stages.dedup.minhash_dedup import SignatureComputer, kernels_to_compile

    if not io.quiet:
        typer.echo(SignatureComputer(params).lsh.describe(), err=True)
        if kernels_to_compile():
            typer.echo("compiling MinHash kernels (first run only)…", err=True)


def _sub(params, cls):
    """The fields of `params` that belong to the narrower dataclass `cls`."""
    return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


@stage_command(
    app, "exact", ExactParams, recipe="dedup-exact",
    help="Keep the first document (input order) of each group with an equal key; add dup_count (group size).",
    examples="Examples:\n\n\b\n  curate dedup exact data/ -o out/exact\n"
    "  curate dedup exact data/ -o out/exact --key url\n"
    "  curate dedup exact data/ -o out/exact --normalize   # equal after lowercasing, punctuation, digits\n",
)
def exact(params: ExactParams, io: IOOptions) -> dict:
    from curate.stages.dedup.exact import exact_dedup

    if io.output == "-":
        raise UsageError("dedup exact needs an output directory (-o DIR), not -")
    return exact_dedup(params, io, work_dir_beside(io.output, "exact-work"))


@stage_command(
    minhash_app, "run", MinhashParams, recipe="dedup-minhash",
    help="Run signatures → cluster → filter locally: keep one document per near-duplicate cluster; kept documents "
    "get dup_cluster_id and dup_cluster_size (--mode annotate keeps all and adds dup_keep).",
    examples="Examples:\n\n\b\n  curate dedup minhash data/ -o out/dedup\n"
    "  curate dedup minhash data/ -o out/dedup --threshold 0.7 --num-perm 128 --keep longest\n"
    "  curate dedup minhash data/ -o out/annotated --mode annotate --shingle chars --ngram 24\n"
    "  curate dedup minhash new/ -o out/new --against old-signatures/\n",
    extra=[REJECTED],
)
def minhash(params: MinhashParams, io: IOOptions, rejected: str | None = None) -> dict:
    from curate.runner import run_map_stage
    from curate.stages.dedup.minhash_dedup import ClusterFilterStage, cluster_signatures, compute_signatures

    if io.output == "-":
        raise UsageError("dedup minhash needs an output directory (-o DIR), not -")
    if io.task()[1] > 1:
        raise UsageError("for array jobs run the passes separately: `curate dedup minhash signatures`, "
                         "`… cluster`, `… filter`, each with --shard-index/--num-shards")
    started = time.perf_counter()
    work = Path(require_local(params.work_dir, "--work-dir") if params.work_dir
                else work_dir_beside(io.output, "minhash-work"))
    _lsh_line(params, io)
    summary = {"signatures": compute_signatures(_sub(params, SignatureParams), io, work / "signatures")}
    if summary["signatures"]["complete"]:
        cluster_io = dataclasses.replace(io, shard_index=0, num_shards=1)
        summary["cluster"] = cluster_signatures(_sub(params, ClusterParams), work / "signatures", work / "clusters",
                                                cluster_io)
        stage = ClusterFilterStage(_sub(params, FilterParams), work / "clusters")
        summary.update(run_map_stage(stage, io, rejected_dir=rejected))
    summary.setdefault("stage", "dedup minhash")
    summary["wall_seconds"] = round(time.perf_counter() - started, 3)
    return summary


@stage_command(
    minhash_app, "signatures", SignatureParams,
    help="Pass 1: MinHash signatures, one 64-bit key per LSH band, one Parquet part per input unit (-o SIGDIR). "
    "The output is also an index for --against.",
    examples="Examples:\n\n\b\n  curate dedup minhash signatures data/ -o work/sigs --num-shards 8 --shard-index 3\n",
)
def signatures(params: SignatureParams, io: IOOptions) -> dict:
    from curate.stages.dedup.minhash_dedup import compute_signatures

    _lsh_line(params, io)
    return compute_signatures(params, io, require_local(io.output, "-o (the signatures directory)"))


@stage_command(
    minhash_app, "cluster", ClusterParams,
    help="Pass 2: group equal band keys out of core and union-find the documents (INPUT = SIGDIR, -o CLUSTERDIR). "
    "With --num-shards N each task takes every N-th band; the last task to finish writes the clusters.",
    examples="Examples:\n\n\b\n  curate dedup minhash cluster work/sigs -o work/clusters\n"
    "  curate dedup minhash cluster work/sigs -o work/clusters --against index/sigs\n",
)
def cluster(params: ClusterParams, io: IOOptions) -> dict:
    from curate.stages.dedup.minhash_dedup import cluster_signatures

    if len(io.inputs) != 1:
        raise UsageError("dedup minhash cluster takes exactly one INPUT: the signatures directory")
    return cluster_signatures(params, require_local(io.inputs[0], "INPUT (the signatures directory)"),
                              require_local(io.output, "-o (the clusters directory)"), io)


@stage_command(
    minhash_app, "filter", FilterParams,
    help="Pass 3: keep one document per cluster (or annotate all) using --clusters; same INPUT as signatures.",
    examples="Examples:\n\n\b\n  curate dedup minhash filter data/ --clusters work/clusters -o out/dedup\n",
    extra=[CLUSTERS, REJECTED],
)
def filter_command(params: FilterParams, io: IOOptions, clusters: str = "", rejected: str | None = None) -> dict:
    from curate.runner import run_map_stage
    from curate.stages.dedup.minhash_dedup import ClusterFilterStage

    return run_map_stage(ClusterFilterStage(params, require_local(clusters, "--clusters")), io, rejected_dir=rejected)


@stage_command(
    app, "rehydrate", RehydrateParams, recipe="dedup-rehydrate",
    help="Add `repeat` from each document's dup_cluster_size through a table (largest key ≤ size); "
    "--materialize writes each document `repeat` times instead.",
    examples="Examples:\n\n\b\n  curate dedup rehydrate out/dedup -o out/rehydrated\n"
    "  curate dedup rehydrate out/dedup -o out/train --materialize --table '1:1,2:2,3:3,5:5,100:8,1000:1'\n",
)
def rehydrate(params: RehydrateParams, io: IOOptions) -> dict:
    from curate.runner import run_map_stage
    from curate.stages.dedup.rehydrate import RehydrateStage

    return run_map_stage(RehydrateStage(params), io)
