"""The dedup commands' pass lists: the stages (`dedup exact`, `dedup minhash`) and MinHash's passes run alone
(`curate dedup minhash signatures|cluster|filter`, for array jobs that schedule the passes themselves).
"""

from __future__ import annotations

import sys

from curate.io.errors import UsageError
from curate.io.options import IOOptions
from curate.io.storage import require_local, work_dir_beside
from curate.stages.base import Pass
from curate.stages.dedup import minhash_dedup
from curate.stages.dedup.minhash_dedup import cluster_pass, filter_pass, minhash_passes, signature_pass
from curate.stages.dedup.params import (
    ClusterParams,
    ExactParams,
    FilterParams,
    MinhashParams,
    SignatureParams,
)


def _directory_output(command: str, io: IOOptions) -> None:
    if io.output == "-":
        raise UsageError(f"{command} needs an output directory (-o DIR), not -")


def _announce(params: SignatureParams, io: IOOptions) -> None:
    """The LSH parameters, and a word before numba compiles the kernels (first run only: then cached)."""
    if not io.quiet:
        print(minhash_dedup.SignatureComputer(params).lsh.describe(), file=sys.stderr)
        if minhash_dedup.kernels_to_compile():
            print("compiling MinHash kernels (first run only)…", file=sys.stderr)


def exact_stage(params: ExactParams, io: IOOptions) -> list[Pass]:
    from curate.stages.dedup.exact import exact_passes

    _directory_output("dedup exact", io)
    return exact_passes(params, io, work_dir_beside(io.output, "exact-work"))


def minhash_stage(params: MinhashParams, io: IOOptions, rejected: str | None = None) -> list[Pass]:
    _directory_output("dedup minhash", io)
    _announce(params.signatures, io)
    return minhash_passes(params, io, rejected)


def signatures_command(params: SignatureParams, io: IOOptions) -> list[Pass]:
    _announce(params, io)
    return [signature_pass(params, require_local(io.output, "-o (the signatures directory)"))]


def cluster_command(params: ClusterParams, io: IOOptions) -> list[Pass]:
    if len(io.inputs) != 1:
        raise UsageError("dedup minhash cluster takes exactly one INPUT: the signatures directory")
    return [cluster_pass(params, require_local(io.inputs[0], "INPUT (the signatures directory)"),
                         require_local(io.output, "-o (the clusters directory)"))]


def filter_command(params: FilterParams, io: IOOptions, clusters: str = "", rejected: str | None = None) -> list[Pass]:
    return [filter_pass(params, require_local(clusters, "--clusters"), io.output, rejected, name="")]
