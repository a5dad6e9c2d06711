"""What the report reads from a run directory: its stage outputs in pipeline order, and figures from their data.

A stage output is a sub-directory with ``_manifest.json`` (or, for an output without one such as the demo's
sample, ``_plan.json``); a run directory that is itself one stage output gives a one-stage report. Each stage
*reads* the output whose files its plan lists as inputs (or the run's inputs), so the stages form a tree:
outputs made from the same stage (a pack and a Megatron pack of one mixture) are branches, not a chain. They
are listed depth first, every stage right after the one it reads. Length histograms and dedup cluster sizes are computed from the Parquet shards, one column and one
batch at a time, when the stats do not already hold them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from curate.io.errors import CurateError, UsageError
from curate.io.inputs import Columns, iter_batches, parquet_file, resolve_inputs
from curate.io.output import MANIFEST, PLAN, STATS, files_at
from curate.io.storage import is_remote, join
from curate.stages.corpus_stats import LengthHistogram, char_lengths
from curate.summary import RunSummary

CLUSTER_COLUMNS = ("dup_cluster_size", "dup_count")  # written by `dedup minhash` and `dedup exact`


@dataclass
class StageDir:
    """One stage output of the run."""

    path: str  # a local directory or a remote prefix (s3://…)
    stage: str
    manifest: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    reads: str | None = None  # the name of the stage output it read; None: the run's inputs

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def rows(self) -> int | None:
        """Rows in the output shards (the manifest's count, else the Parquet footers)."""
        if "rows" in self.manifest:
            return int(self.manifest["rows"])
        shards = self.shards()
        return sum(parquet_file(p).metadata.num_rows for p in shards) if shards else None

    def shards(self) -> list[str]:
        names = files_at(self.path).listing("part-")
        return [join(self.path, n) for n in sorted(names) if n.endswith(".parquet")]

    def has_column(self, column: str) -> bool:
        shards = self.shards()
        return bool(shards) and column in parquet_file(shards[0]).schema_arrow.names

    @property
    def summary(self) -> RunSummary:
        return RunSummary.from_dict(self.stats)

    def docs_in(self) -> int | None:
        return self.summary.docs_in

    def docs_out(self) -> int | None:
        summary = self.summary
        if summary.docs_out is None and "compare" not in self.stats:
            return self.rows
        return summary.docs_out

    def tokens(self) -> tuple[int | None, int | None]:
        """(tokens in, tokens out) where the stage counted them (mix apply, pack)."""
        return self.summary.tokens_in, self.summary.tokens_out

    def removed(self) -> dict[str, int]:
        """Documents removed per reason: each document once (first failing rule) when the stage says so."""
        return self.summary.removed


def _read_json(folder: str, name: str) -> dict:
    try:
        value = json.loads(files_at(folder).read_text(name) or "{}")
    except (OSError, ValueError, CurateError):
        return {}
    return value if isinstance(value, dict) else {}


def _stage_dir(folder: str, name: str) -> StageDir | None:
    """The stage output in ``folder``, or None when it is none (or holds rows rejected by a stage)."""
    manifest = _read_json(folder, MANIFEST)
    plan = manifest or _read_json(folder, PLAN)
    if not plan or ":rejected" in str(plan.get("stage", "")):
        return None
    inputs = [str(item.get("path", "")) if isinstance(item, dict) else str(item) for item in plan.get("inputs", [])]
    return StageDir(folder, str(plan.get("stage", name)), manifest, _read_json(folder, STATS), inputs)


def discover(run_dir: str | Path) -> list[StageDir]:
    """Stage outputs directly under ``run_dir`` (or ``run_dir`` itself when it is one), in tree order (see the
    module docstring; rejected-row outputs left out)."""
    run_dir = str(run_dir)
    if not is_remote(run_dir) and not Path(run_dir).is_dir():
        raise UsageError(f"{run_dir}: not a directory (expected a run directory with one sub-directory per stage)")
    itself = _stage_dir(run_dir, run_dir.rstrip("/").rsplit("/", 1)[-1])
    if itself is not None:
        return [itself]
    stages = [stage for name in files_at(run_dir).folders() if not name.startswith((".", "_"))
              if (stage := _stage_dir(join(run_dir, name), name)) is not None]
    if not stages:
        raise UsageError(f"{run_dir}: no stage outputs found (sub-directories with {MANIFEST} or {PLAN}, "
                         "or a stage output itself)")
    return _tree_order(stages)


def _tree_order(stages: list[StageDir]) -> list[StageDir]:
    """Set each stage's ``reads`` and list them depth first: every stage right after the one it reads, the
    stages reading the same one (branches) by directory name."""
    def normal(path: str) -> str:
        return path.rstrip("/") if is_remote(path) else str(Path(path).resolve())

    resolved = {id(s): normal(s.path) for s in stages}

    def reads(stage: StageDir, other: StageDir) -> bool:
        base = resolved[id(other)]
        return other is not stage and any(
            normal(p) == base or normal(p).startswith(base + "/") for p in stage.inputs if p)

    # a stage reading several outputs (a mixture of two branches) hangs below the one made last
    ordered_by_name = sorted(stages, key=lambda s: s.name)
    children: dict[int | None, list[StageDir]] = {}
    for stage in ordered_by_name:
        parents = [other for other in ordered_by_name if reads(stage, other)]
        parent = max(parents, key=lambda p: _depth(p, stages, reads), default=None)
        stage.reads = parent.name if parent is not None else None
        children.setdefault(id(parent) if parent is not None else None, []).append(stage)
    ordered: list[StageDir] = []

    def visit(stage: StageDir) -> None:
        if any(s is stage for s in ordered):  # a cycle of inputs (hand-made folders): list each once
            return
        ordered.append(stage)
        for child in children.get(id(stage), []):
            visit(child)

    for root in children.get(None, []) + ordered_by_name:  # every stage, even within a cycle
        visit(root)
    return ordered


def _depth(stage: StageDir, stages: list[StageDir], reads) -> int:
    """How many stages lie above ``stage`` on its longest chain of inputs."""
    depth, frontier, seen = 0, [stage], {id(stage)}
    while True:
        above = [o for s in frontier for o in stages if id(o) not in seen and reads(s, o)]
        if not above:
            return depth
        seen.update(id(o) for o in above)
        frontier, depth = above, depth + 1


def length_histogram(paths: list[str], text_column: str) -> LengthHistogram | None:
    """Characters per document of every row in ``paths`` (Parquet: only the text column is read)."""
    histogram = LengthHistogram()
    try:
        files = resolve_inputs(paths)
        for file in files:
            if file.format == "parquet":
                parquet = parquet_file(file.path, file.size)
                if text_column not in parquet.schema_arrow.names:
                    return None
                for batch in parquet.iter_batches(batch_size=10_000, columns=[text_column]):
                    histogram.add(char_lengths(pc.fill_null(batch.column(0), "")))
            else:
                for batch in iter_batches([file], Columns(text_column)):
                    histogram.add(char_lengths(batch.column(text_column)))
    except CurateError:
        return None  # inputs moved or unreadable: the report leaves the chart out
    return histogram if histogram.total else None


def cluster_sizes(stage: StageDir) -> dict[int, int] | None:
    """Clusters per size, from the size column of a dedup output (one kept document per cluster)."""
    column = next((c for c in CLUSTER_COLUMNS if stage.has_column(c)), None)
    if column is None:
        return None
    counts: dict[int, int] = {}
    for shard in stage.shards():
        parquet = parquet_file(shard)
        wanted = [column] + (["dup_keep"] if "dup_keep" in parquet.schema_arrow.names else [])
        for batch in parquet.iter_batches(batch_size=65_536, columns=wanted):
            sizes = batch.column(0)
            if len(wanted) == 2:  # annotate mode keeps every document: count each cluster's kept one
                sizes = sizes.filter(pc.fill_null(batch.column(1), False))
            values, hits = np.unique(sizes.to_numpy(zero_copy_only=False), return_counts=True)
            for size, hit in zip(values.tolist(), hits.tolist(), strict=True):
                counts[int(size)] = counts.get(int(size), 0) + int(hit)
    return counts or None


def mixture(stage: StageDir) -> dict[str, dict[str, float]] | None:
    """Domain → target and realised token share (and tokens, documents), for a `mix apply` output."""
    realised = stage.stats.get("mix")
    if not isinstance(realised, dict) or not realised:
        return None
    total = sum(int(row.get("tokens", 0)) for row in realised.values()) or 1
    targets = {d: float(row["target"]) for d, row in stage.stats.get("domains", {}).items() if "target" in row}
    weights_file = stage.manifest.get("parameters", {}).get("weights")
    if not targets and weights_file and Path(weights_file).is_file():
        from curate.stages.mix.apply import load_weights

        try:
            targets = load_weights(weights_file)
        except CurateError:
            targets = {}
    return {
        domain: {
            "target": targets.get(domain, float("nan")),
            "realised": int(row.get("tokens", 0)) / total,
            "tokens": int(row.get("tokens", 0)),
            "docs": int(row.get("docs", 0)),
        }
        for domain, row in sorted(realised.items())
    }
