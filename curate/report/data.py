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
from curate.report.samples import BUDGETS, read_sample, sample_lengths
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
    parents: list[str] = field(default_factory=list)  # every stage output it read (several for a mixture)
    rejected: str | None = None  # the --rejected output of this stage, when the run directory holds it
    plan: dict = field(default_factory=dict)

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

    @property
    def parameters(self) -> dict:
        """The stage's parameters as its manifest (else plan) records them."""
        value = (self.manifest or self.plan).get("parameters")
        return value if isinstance(value, dict) else {}

    def columns(self) -> list[str]:
        shards = self.shards()
        return parquet_file(shards[0]).schema_arrow.names if shards else []

    def rejected_shards(self) -> list[str]:
        if self.rejected is None:
            return []
        names = files_at(self.rejected).listing("part-")
        return [join(self.rejected, n) for n in sorted(names) if n.endswith(".parquet")]


def _read_json(folder: str, name: str) -> dict:
    try:
        value = json.loads(files_at(folder).read_text(name) or "{}")
    except (OSError, ValueError, CurateError):
        return {}
    return value if isinstance(value, dict) else {}


def _stage_dir(folder: str, name: str) -> StageDir | None:
    """The output in ``folder`` (a stage's, or the rows a stage rejected), or None when it is neither."""
    manifest = _read_json(folder, MANIFEST)
    plan = _read_json(folder, PLAN)
    recorded = manifest or plan
    if not recorded:
        return None
    inputs = [str(item.get("path", "")) if isinstance(item, dict) else str(item) for item in recorded.get("inputs", [])]
    return StageDir(folder, str(recorded.get("stage", name)), manifest, _read_json(folder, STATS), inputs, plan=plan)


def _attach_rejected(stages: list[StageDir], rejected: list[StageDir]) -> None:
    """Give each stage the ``--rejected`` output written with it: same stage, inputs and parameters."""
    for out in rejected:
        stage = out.stage.removesuffix(":rejected")
        match = [s for s in stages if s.stage == stage and sorted(s.inputs) == sorted(out.inputs)
                 and s.plan.get("parameters") == out.plan.get("parameters")]
        if len(match) == 1:
            match[0].rejected = out.path


def discover(run_dir: str | Path) -> list[StageDir]:
    """Stage outputs directly under ``run_dir`` (or ``run_dir`` itself when it is one), in tree order (see the
    module docstring; rejected-row outputs left out)."""
    run_dir = str(run_dir)
    if not is_remote(run_dir) and not Path(run_dir).is_dir():
        raise UsageError(f"{run_dir}: not a directory (expected a run directory with one sub-directory per stage)")
    itself = _stage_dir(run_dir, run_dir.rstrip("/").rsplit("/", 1)[-1])
    if itself is not None and not itself.stage.endswith(":rejected"):
        return [itself]
    found = [stage for name in files_at(run_dir).folders() if not name.startswith((".", "_"))
             if (stage := _stage_dir(join(run_dir, name), name)) is not None]
    stages = [s for s in found if not s.stage.endswith(":rejected")]
    _attach_rejected(stages, [s for s in found if s.stage.endswith(":rejected")])
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
    # each path resolved once: a stage lists every shard it read, and the tree compares every pair of stages
    inputs = {id(s): [normal(p) for p in s.inputs if p] for s in stages}

    def reads(stage: StageDir, other: StageDir) -> bool:
        base = resolved[id(other)]
        return other is not stage and any(p == base or p.startswith(base + "/") for p in inputs[id(stage)])

    # a stage reading several outputs (a mixture of two branches) hangs below the one made last
    ordered_by_name = sorted(stages, key=lambda s: s.name)
    children: dict[int | None, list[StageDir]] = {}
    for stage in ordered_by_name:
        parents = [other for other in ordered_by_name if reads(stage, other)]
        parent = max(parents, key=lambda p: _depth(p, stages, reads), default=None)
        stage.reads = parent.name if parent is not None else None
        stage.parents = [p.name for p in parents]
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


def length_histogram(paths: list[str], text_column: str) -> tuple[LengthHistogram, int] | None:
    """Characters per document of up to ``BUDGETS["text"]`` rows of ``paths`` (spread over Parquet row groups;
    the first rows of JSON lines), and how many rows the inputs hold (0: not counted, JSON lines)."""
    histogram = LengthHistogram()
    try:
        files = resolve_inputs(paths)
        parquet = [f.path for f in files if f.format == "parquet"]
        if parquet:
            sample = sample_lengths(parquet, text_column)
            if sample is None:
                return None
            histogram.add(sample.table.column("chars").to_numpy(zero_copy_only=False))
            return (histogram, sample.total) if histogram.total else None
        for batch in iter_batches(files, Columns(text_column)):
            histogram.add(char_lengths(batch.column(text_column)))
            if histogram.total >= BUDGETS["text"]:
                break
    except CurateError:
        return None  # inputs moved or unreadable: the report leaves the chart out
    return (histogram, 0) if histogram.total else None


def cluster_sizes(stage: StageDir) -> tuple[dict[int, float], bool] | None:
    """Clusters per size, from the size column of a dedup output (one kept document per cluster), and whether
    that is exact (else scaled from a sample)."""
    columns = stage.columns()
    column = next((c for c in CLUSTER_COLUMNS if c in columns), None)
    if column is None:
        return None
    wanted = [column] + (["dup_keep"] if "dup_keep" in columns else [])
    sample = read_sample(stage.shards(), wanted, "short")
    if sample is None:
        return None
    sizes = sample.table.column(0)
    if len(wanted) == 2:  # annotate mode keeps every document: count each cluster's kept one
        sizes = sizes.filter(pc.fill_null(sample.table.column(1), False))
    values, hits = np.unique(sizes.to_numpy(zero_copy_only=False), return_counts=True)
    return {int(v): float(h) * sample.scale for v, h in zip(values.tolist(), hits.tolist(), strict=True)}, sample.exact


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


@dataclass
class MixtureSearch:
    """What `curate mix fit` and `mix optimize` wrote for the weights a `mix apply` output realised."""

    target: str
    cv: dict  # regressor → {spearman, mse}
    domains: list[str]
    optimised: dict[str, float]
    natural: dict[str, float]  # token share of each domain in the data (`mix stats`), when known
    predicted: float | None  # the regression's prediction for the optimised weights
    predicted_natural: float | None
    runs: list[tuple[float, float]]  # (measured, predicted) target of every proxy run
    regressor: str = "lightgbm"


def tool_steps(run_dir: str) -> dict[str, dict]:
    """Summaries of the tools a recipe ran (``_steps/NN-name.json`` in its work dir), by tool name."""
    found = {}
    folder = Path(run_dir) / "_steps"
    if not is_remote(run_dir) and folder.is_dir():
        for path in sorted(folder.glob("*.json")):
            summary = _read_json(str(folder), path.name).get("summary")
            if isinstance(summary, dict):
                found[path.stem.split("-", 1)[-1]] = summary
    return found


def mixture_search(stage: StageDir, steps: dict[str, dict]) -> MixtureSearch | None:
    """The search behind a `mix apply` output: its --weights file when `mix optimize` wrote it, the model
    that file names, and (in a recipe's work dir) the proxy runs and the domain statistics."""
    import yaml

    from curate.stages.mix.regression import load_model
    from curate.stages.mix.tables import join_target, read_versioned_json

    weights_file = stage.parameters.get("weights")
    if not weights_file or is_remote(str(weights_file)) or not Path(weights_file).is_file():
        return None
    text = Path(weights_file).read_text()
    document = yaml.safe_load(text)
    if not isinstance(document, dict) or "predicted" not in document or "weights" not in document:
        return None  # hand-written weights: no search to show
    model_dir = steps.get("mix-fit", {}).get("output")
    header = text.split("\n", 1)[0]
    if " --model " in header:
        model_dir = header.split(" --model ", 1)[1].rsplit(": average", 1)[0].strip()
    try:
        model = load_model(model_dir) if model_dir else None
    except (CurateError, OSError, ValueError):
        model = None
    if model is None:
        return None
    regressor = str(document.get("regressor", "lightgbm"))
    optimised = {str(k): float(v) for k, v in document["weights"].items()}
    natural: dict[str, float] = {}
    stats_file = steps.get("mix-stats", {}).get("output")
    if stats_file and Path(stats_file).is_file():
        try:
            stats = read_versioned_json(stats_file, "curate-mix-stats/1", "")
            natural = {d: float(row.get("token_share", 0)) for d, row in stats.get("domains", {}).items()}
        except (CurateError, ValueError):
            natural = {}
    predicted_natural = None
    if natural and sorted(natural) == sorted(model.domains):
        predicted_natural = float(model.predict(np.array([[natural[d] for d in model.domains]]), regressor)[0])
    runs: list[tuple[float, float]] = []
    mixtures, results = steps.get("mix-propose", {}).get("output"), steps.get("mix-proxy", {}).get("output")
    if mixtures and results and Path(mixtures).is_file() and Path(results).is_file():
        try:
            _, names, x, y = join_target(mixtures, results, model.target)
            predicted = model.predict(x[:, [names.index(d) for d in model.domains]], regressor)
            runs = [(float(a), float(b)) for a, b in zip(y.tolist(), predicted.tolist(), strict=True)]
        except (CurateError, ValueError):
            runs = []
    return MixtureSearch(model.target, model.cv, list(model.domains), optimised, natural,
                         float(document["predicted"]), predicted_natural, runs, regressor)
