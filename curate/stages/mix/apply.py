"""Realise a mixture: sample documents per domain so that token shares match the weights for a budget.

Domain d needs ``w_d × budget`` tokens. It contributes ``floor(epochs)`` full passes over its documents and,
for the fractional pass, a seeded random subset: documents in a random order up to the prefix whose
token total is closest to what is left (so the error is at most about half a document). More than
``max_epochs`` passes is refused. Two streaming passes: token counts per document (one integer each),
then the selected rows — repeated as often as chosen — are written with a ``mix_domain`` column, one
output shard group per domain (``part-0000k`` = k-th domain; rows keep their input order, so shuffle
downstream before training).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

import curate
from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns, resolve_inputs
from curate.io.options import IOOptions
from curate.io.output import OutputDir, ShardWriter, UnitRecord, input_descriptions
from curate.params import StrictLoader, fingerprint, option
from curate.stages.base import Pass
from curate.stages.mix.domains import DomainSpec, TokenCounter

MIX_COLUMN = "mix_domain"


@dataclass
class ApplyParams:
    weights: str = option("", "YAML with domain weights (from `curate mix optimize`, or a plain domain: weight map).")
    tokens: int = option(0, "Token budget of the output mixture.")
    max_epochs: float = option(4.0, "Refuse to repeat a domain more often than this.")
    seed: int = option(42, "Seed of the document sampling: the same seed gives the same output.")
    domain_column: str | None = option(None, "Column naming each document's domain (else INPUT is name=path).")
    tokenizer: str | None = option(None, "tokenizers JSON for exact token counts (default: bytes/4).")


def load_weights(path: str) -> dict[str, float]:
    """``weights:`` mapping of an optimize YAML, or a bare mapping; must be non-negative and sum to ~1."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=StrictLoader)
    except FileNotFoundError:
        raise InputError(path, "file not found") from None
    except yaml.YAMLError as err:
        raise InputError(path, f"not YAML ({err})") from None
    data = data.get("weights", data) if isinstance(data, dict) else data
    if not isinstance(data, dict) or not all(isinstance(v, int | float) and v >= 0 for v in data.values()):
        raise InputError(path, "expected a mapping of domain → weight ≥ 0 (optionally under 'weights:')")
    total = sum(data.values())
    if abs(total - 1) > 0.01:
        raise InputError(path, f"weights sum to {total:.4f}, expected 1")
    return {str(k): float(v) / total for k, v in data.items()}


def plan_repeats(doc_tokens: np.ndarray, target: float, max_epochs: float, rng: np.random.Generator,
                 domain: str) -> np.ndarray:
    """How many times each document is written so the domain totals about ``target`` tokens."""
    total = float(doc_tokens.sum())
    if target <= 0:
        return np.zeros(len(doc_tokens), dtype=np.int64)
    if total <= 0:
        raise UsageError(f"domain {domain} has no tokens but a weight > 0")
    epochs = target / total
    if epochs > max_epochs + 1e-9:
        raise UsageError(
            f"domain {domain} would need {epochs:.2f} epochs (> --max-epochs {max_epochs:g}) for its "
            f"{target:,.0f} tokens: lower --tokens or its weight"
        )
    full = int(np.floor(epochs))
    rest = target - full * total
    order = rng.permutation(len(doc_tokens))
    prefix = np.concatenate([[0.0], np.cumsum(doc_tokens[order], dtype=np.float64)])
    take = int(np.argmin(np.abs(prefix - rest)))
    repeats = np.full(len(doc_tokens), full, dtype=np.int64)
    repeats[order[:take]] += 1
    return repeats


def apply_mixture(params: ApplyParams, io: IOOptions) -> dict:
    io.check()
    started = time.perf_counter()
    if not params.weights or params.tokens <= 0:
        raise UsageError("--weights FILE and --tokens BUDGET (> 0) are required")
    if io.task()[1] > 1:
        raise UsageError("mix apply samples across all inputs at once: run it as a single task (no --num-shards)")
    if not io.output or io.output == "-":
        raise UsageError("-o OUT must be a directory")
    weights = load_weights(params.weights)
    spec = DomainSpec.parse(io.inputs, params.domain_column)
    columns = Columns(io.text_column, io.id_column)
    counter = TokenCounter(params.tokenizer)

    pieces: dict[str, list[np.ndarray]] = {}
    for domain, batch in spec.batches(columns, io.batch_size):
        pieces.setdefault(domain, []).append(counter.count(batch.column(columns.text)))
    doc_tokens = {d: np.concatenate(p) for d, p in pieces.items()}
    domains = list(doc_tokens)
    unknown = sorted(set(weights) - set(domains))
    if unknown:
        raise UsageError(f"{params.weights}: domain(s) {', '.join(unknown)} not in the inputs ({', '.join(domains)})")
    rng = np.random.default_rng(params.seed)
    repeats = {}
    for domain in domains:  # one generator, domains in input order: deterministic for a seed
        repeats[domain] = plan_repeats(doc_tokens[domain], weights.get(domain, 0.0) * params.tokens, params.max_epochs, rng, domain)

    files = [f for _, path in spec.sources for f in resolve_inputs([path])]
    plan = {
        "curate_version": curate.__version__,
        "stage": "mix apply",
        "parameters": {**fingerprint(params), "io": fingerprint(io)},
        "inputs": input_descriptions(files),
        "units": [{"index": i, "domain": d} for i, d in enumerate(domains)],
    }
    out = OutputDir(io.output)
    out.prepare(plan, io.overwrite)
    out.discard_units(range(len(domains)))  # every unit is written in the same pass: redo them all
    writers = {d: ShardWriter(out, i, io.max_rows_per_shard) for i, d in enumerate(domains)}
    written = {d: {"docs": 0, "tokens": 0} for d in domains}
    seen = dict.fromkeys(domains, 0)
    try:
        for domain, batch in spec.batches(columns, io.batch_size):
            start = seen[domain]
            seen[domain] += batch.num_rows
            counts = repeats[domain][start : start + batch.num_rows]
            rows = np.repeat(np.arange(batch.num_rows), counts)
            if not len(rows):
                continue
            chosen = batch.take(pa.array(rows))
            chosen = chosen.append_column(MIX_COLUMN, pa.array([domain] * len(rows), pa.string()))
            writers[domain].write(chosen)
            written[domain]["docs"] += len(rows)
            written[domain]["tokens"] += int(doc_tokens[domain][start : start + batch.num_rows] @ counts)
        records = []
        for index, domain in enumerate(domains):
            record = UnitRecord(index, writers[domain].commit(), {"mix": {domain: written[domain]}})
            out.mark_finished(record)
            records.append(record)
    except BaseException:
        for writer in writers.values():
            writer.abort()
        raise
    total = sum(w["tokens"] for w in written.values()) or 1
    table = {
        d: {
            "target": round(weights.get(d, 0.0), 6),
            "realised": round(written[d]["tokens"] / total, 6),
            "docs": written[d]["docs"],
            "tokens": written[d]["tokens"],
            "epochs": round(written[d]["tokens"] / max(int(doc_tokens[d].sum()), 1), 4),
        }
        for d in domains
    }
    stats = out.finalize(plan, records, sys.argv, time.perf_counter() - started)
    return {
        **stats,
        "output": out.location,
        "docs_in": int(sum(len(t) for t in doc_tokens.values())),
        "docs_out": int(sum(w["docs"] for w in written.values())),
        "tokenizer": counter.name,
        "tokens_target": params.tokens,
        "tokens_written": total,
        "max_abs_share_error": round(max(abs(r["realised"] - r["target"]) for r in table.values()), 6),
        "domains": table,
    }


def apply_passes(params: ApplyParams, io: IOOptions) -> list[Pass]:
    return [Pass("", Path(io.output), False, lambda task_io: apply_mixture(params, task_io))]
