"""The passes of the dedup stages, as the runner, recipes, Slurm scripts and `curate status` see them.

MinHash: signatures (array, per input unit) → cluster (array, per band group; the last task writes the
clusters) → filter (array, per input unit). Each pass is also a command of its own
(`curate dedup minhash signatures|cluster|filter`) for array jobs that schedule the passes themselves.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.storage import require_local, work_dir_beside
from curate.stages.base import Pass
from curate.stages.dedup.params import ClusterParams, FilterParams, MinhashParams, SignatureParams


def _announce(params: SignatureParams, io: IOOptions) -> None:
    """The LSH parameters, and a word before numba compiles the kernels (first run only: then cached)."""
    from curate.stages.dedup.minhash_dedup import SignatureComputer, kernels_to_compile

    if not io.quiet:
        print(SignatureComputer(params).lsh.describe(), file=sys.stderr)
        if kernels_to_compile():
            print("compiling MinHash kernels (first run only)…", file=sys.stderr)


def signature_pass(params: SignatureParams, io: IOOptions, out: str | Path) -> Pass:
    from curate.stages.dedup.minhash_dedup import compute_signatures

    return Pass("signatures", Path(out), True, lambda task_io: compute_signatures(params, task_io, out))


def cluster_pass(params: ClusterParams, signatures: str | Path, out: str | Path) -> Pass:
    from curate.stages.dedup.minhash_dedup import cluster_signatures

    return Pass("cluster", Path(out), True, lambda task_io: cluster_signatures(params, signatures, out, task_io))


def filter_pass(params: FilterParams, clusters: str | Path, output: str, rejected: str | None,
                name: str = "filter") -> Pass:
    from curate.runner import run_map_stage
    from curate.stages.dedup.minhash_dedup import ClusterFilterStage

    return Pass(name, Path(output), True, lambda task_io: run_map_stage(
        ClusterFilterStage(params, clusters), task_io, rejected_dir=rejected))


def _narrow(params: MinhashParams, cls: type) -> object:
    """The fields of the whole stage's params that one pass takes."""
    return cls(**{f.name: getattr(params, f.name) for f in dataclasses.fields(cls)})


def minhash_passes(params: MinhashParams, io: IOOptions, rejected: str | None = None) -> list[Pass]:
    if io.output == "-":
        raise UsageError("dedup minhash needs an output directory (-o DIR), not -")
    work = Path(require_local(params.work_dir, "--work-dir") if params.work_dir
                else work_dir_beside(io.output, "minhash-work"))
    _announce(params, io)
    return [
        signature_pass(_narrow(params, SignatureParams), io, work / "signatures"),  # type: ignore[arg-type]
        cluster_pass(_narrow(params, ClusterParams), work / "signatures", work / "clusters"),  # type: ignore[arg-type]
        filter_pass(_narrow(params, FilterParams), work / "clusters", io.output, rejected),  # type: ignore[arg-type]
    ]


def signatures_command_passes(params: SignatureParams, io: IOOptions) -> list[Pass]:
    _announce(params, io)
    return [signature_pass(params, io, require_local(io.output, "-o (the signatures directory)"))]


def cluster_command_passes(params: ClusterParams, io: IOOptions) -> list[Pass]:
    if len(io.inputs) != 1:
        raise UsageError("dedup minhash cluster takes exactly one INPUT: the signatures directory")
    return [cluster_pass(params, require_local(io.inputs[0], "INPUT (the signatures directory)"),
                         require_local(io.output, "-o (the clusters directory)"))]


def filter_command_passes(params: FilterParams, io: IOOptions, clusters: str = "",
                          rejected: str | None = None) -> list[Pass]:
    return [filter_pass(params, require_local(clusters, "--clusters"), io.output, rejected, name="")]


def exact_passes(params, io: IOOptions) -> list[Pass]:
    from curate.stages.dedup.exact import exact_dedup

    if io.output == "-":
        raise UsageError("dedup exact needs an output directory (-o DIR), not -")
    return [Pass("", Path(io.output), False,
                 lambda task_io: exact_dedup(params, task_io, work_dir_beside(io.output, "exact-work")))]
