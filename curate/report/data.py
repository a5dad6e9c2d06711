"""What the report reads from a run directory: its stage outputs in pipeline order, and figures from their data.

A stage output is a sub-directory with ``_manifest.json`` (or, for an output without one such as the demo's
sample, ``_plan.json``). Stages are ordered by their inputs: a stage that reads another's output comes
after it. Length histograms and dedup cluster sizes are computed from the Parquet shards, one column and one
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

CLUSTER_COLUMNS = ("dup_cluster_size", "dup_count")  # written by `dedup minhash` and `dedup exact`


@dataclass
class StageDir:
    """One stage output of the run."""

    path: str  # a local directory or a remote prefix (s3://…)
    stage: str
    manifest: dict = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)

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

    def docs_in(self) -> int | None:
        if "docs_in" in self.stats:
            return int(self.stats["docs_in"])
        documents = self.stats.get("documents")
        return int(documents["in"]) if isinstance(documents, dict) and "in" in documents else None

    def docs_out(self) -> int | None:
        if "docs_out" in self.stats:
            return int(self.stats["docs_out"])
        documents = self.stats.get("documents")
        if isinstance(documents, dict) and "in" in documents:  # pack: documents with a token in the output
            return int(documents["in"]) - int(documents.get("dropped", 0))
        return self.rows

    def tokens(self) -> tuple[int | None, int | None]:
        """(tokens in, tokens out) where the stage counted them (mix apply, pack)."""
        tokens = self.stats.get("tokens")
        if isinstance(tokens, dict):
            return tokens.get("in"), tokens.get("out")
        mix = self.stats.get("mix")
        if isinstance(mix, dict):
            return None, sum(int(row.get("tokens", 0)) for row in mix.values())
        return None, None

    def removed(self) -> dict[str, int]:
        """Documents removed per reason: each document once (first failing rule) when the stage says so."""
        reasons = self.stats.get("removed_in_order") or self.stats.get("removed") or {}
        return {str(k): int(v) for k, v in reasons.items() if isinstance(v, int | float) and v}


def _read_json(folder: str, name: str) -> dict:
    try:
        value = json.loads(files_at(folder).read_text(name) or "{}")
    except (OSError, ValueError, CurateError):
        return {}
    return value if isinstance(value, dict) else {}


def discover(run_dir: str | Path) -> list[StageDir]:
    """Stage outputs directly under ``run_dir``, in pipeline order (rejected-row outputs left out)."""
    run_dir = str(run_dir)
    if not is_remote(run_dir) and not Path(run_dir).is_dir():
        raise UsageError(f"{run_dir}: not a directory (expected a run directory with one sub-directory per stage)")
    stages = []
    for name in files_at(run_dir).folders():
        if name.startswith((".", "_")):
            continue
        child = join(run_dir, name)
        manifest = _read_json(child, MANIFEST)
        plan = manifest or _read_json(child, PLAN)
        if not plan or ":rejected" in str(plan.get("stage", "")):
            continue
        inputs = [str(item.get("path", "")) if isinstance(item, dict) else str(item) for item in plan.get("inputs", [])]
        stages.append(StageDir(child, str(plan.get("stage", name)), manifest, _read_json(child, STATS), inputs))
    if not stages:
        raise UsageError(f"{run_dir}: no stage outputs found (sub-directories with {MANIFEST} or {PLAN})")
    return _pipeline_order(stages)


def _pipeline_order(stages: list[StageDir]) -> list[StageDir]:
    """Topological order by "reads the output of", ties broken by directory name."""
    def normal(path: str) -> str:
        return path.rstrip("/") if is_remote(path) else str(Path(path).resolve())

    resolved = {id(s): normal(s.path) for s in stages}

    def reads(stage: StageDir, other: StageDir) -> bool:
        base = resolved[id(other)]
        return any(normal(p) == base or normal(p).startswith(base + "/") for p in stage.inputs if p)

    ordered: list[StageDir] = []
    remaining = list(stages)
    while remaining:
        ready = [s for s in remaining if not any(reads(s, o) for o in remaining if o is not s)] or remaining[:1]
        ordered.append(ready[0])
        remaining.remove(ready[0])
    return ordered


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
