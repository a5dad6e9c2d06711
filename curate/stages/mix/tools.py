"""The mixture-search tools (`curate mix stats|propose|proxy|fit|predict|optimize`), usable as recipe steps.

Each returns ``(summary, lines)``: the summary is what ``--json`` prints and recipes record, the lines what a
person reads on stderr. The command line and recipe keys come from the command table (curate/registry.py).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import polars as pl
import yaml

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.output import write_text_atomic
from curate.params import option
from curate.stages.mix.domains import DomainSpec, DomainStats, TokenCounter, compute_stats
from curate.stages.mix.optimize import OptimizeParams, optimize
from curate.stages.mix.propose import ProposeParams, epoch_caps, propose, temperature_prior
from curate.stages.mix.proxy import ProxyParams, build_proxy
from curate.stages.mix.regression import FitParams, fit, load_model, save_model
from curate.stages.mix.tables import INDEX, join_target, mixtures_frame, read_mixtures, write_csv


@dataclasses.dataclass
class DomainParams:
    domain_column: str | None = option(None, "Column naming each document's domain (else INPUT is name=path).")
    tokenizer: str | None = option(None, "tokenizers JSON for exact token counts (default: ceil(bytes/4)).")


def _table(rows: dict[str, dict], columns: list[str]) -> list[str]:
    width = max([len(r) for r in rows] + [6])
    lines = [f"{'domain':<{width}}  " + "  ".join(f"{c:>12}" for c in columns)]
    for name, row in rows.items():
        cells = [f"{row[c]:>12,}" if isinstance(row[c], int) else f"{row[c]:>12.4f}" for c in columns]
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return lines


def _stats_of(domain: DomainParams, inputs: list[str] | None, stats_path: str | None, text_column: str,
              batch_size: int) -> DomainStats:
    if stats_path:
        return DomainStats.load(stats_path)
    if not inputs:
        raise UsageError("give INPUT... (name=path or --domain-column) or --stats FILE")
    spec = DomainSpec.parse(inputs, domain.domain_column)
    return compute_stats(spec, Columns(text_column), TokenCounter(domain.tokenizer), batch_size)


def stats_tool(domain: DomainParams, inputs: list[str], output: str | None, text_column: str,
                  batch_size: int) -> tuple[dict, list[str]]:
    stats = _stats_of(domain, inputs, None, text_column, batch_size)
    if output:
        stats.save(output)
    data = stats.to_json()
    lines = _table(data["domains"], ["documents", "bytes", "tokens", "token_share"])
    return {"stage": "mix stats", "output": output, **data}, [*lines, f"tokens: {stats.tokenizer}"]


def propose_tool(params: ProposeParams, domain: DomainParams, inputs: list[str] | None, output: str,
                    stats: str | None, text_column: str, batch_size: int) -> tuple[dict, list[str]]:
    domain_stats = _stats_of(domain, inputs, stats, text_column, batch_size)
    tokens = domain_stats.tokens()
    prior = temperature_prior(tokens, params.temperature)
    caps = epoch_caps(tokens, params.token_budget, params.max_epochs)
    weights = propose(prior, caps, params.n, params.seed)
    write_csv(mixtures_frame(weights, domain_stats.names), output)
    rows = {d: {"prior": float(p), "cap": float(c), "mean": float(m), "max": float(x)}
            for d, p, c, m, x in zip(domain_stats.names, prior, caps, weights.mean(0), weights.max(0), strict=True)}
    summary = {"stage": "mix propose", "output": output, "mixtures": len(weights), "domains": rows}
    return summary, [*_table(rows, ["prior", "cap", "mean", "max"]), f"{len(weights)} mixtures → {output}"]


def proxy_tool(params: ProxyParams, domain: DomainParams, inputs: list[str], mixtures: str, output: str,
                  text_column: str, batch_size: int) -> tuple[dict, list[str]]:
    index, names, weights = read_mixtures(mixtures)
    started = time.perf_counter()
    spec = DomainSpec.parse(inputs, domain.domain_column)
    proxy, stats = build_proxy(spec, Columns(text_column), TokenCounter(domain.tokenizer), params, batch_size)
    stats.check_domains(names, mixtures)
    built = time.perf_counter()
    losses = proxy.losses(weights[:, [names.index(d) for d in proxy.domains]])
    scored = time.perf_counter()
    frame = pl.DataFrame({INDEX: index, **{c: losses[:, j] for j, c in enumerate(proxy.columns)}})
    write_csv(frame, output)
    summary = {
        "stage": "mix proxy", "output": output, "runs": len(weights), "targets": list(proxy.targets),
        "statistics_seconds": round(built - started, 3), "scoring_seconds": round(scored - built, 3),
        "best": {c: {"index": int(index[np.argmin(losses[:, j])]), "bpb": float(losses[:, j].min())}
                 for j, c in enumerate(proxy.columns)},
    }
    lines = [f"{len(weights)} proxy runs on {len(proxy.targets)} target(s): statistics {built - started:.1f}s, "
             f"scoring {scored - built:.1f}s → {output}"]
    return summary, lines


def fit_tool(params: FitParams, mixtures: str, results: str, output: str) -> tuple[dict, list[str]]:
    _, domains, x, y = join_target(mixtures, results, params.target)
    model = fit(x, y, domains, params)
    save_model(model, output)
    lines = [f"{params.folds}-fold CV on {len(y)} runs, target {params.target}:"]
    lines += [f"  {name:<9} spearman ρ {s['spearman']:.4f}   mse {s['mse']:.6f}" for name, s in model.cv.items()]
    return {"stage": "mix fit", "output": output, "runs": len(y), "target": params.target, "cv": model.cv}, [
        *lines, f"model → {output}"]


def predict_tool(model: str, mixtures: str, output: str, regressor: str) -> tuple[dict, list[str]]:
    fitted = load_model(model)
    index, names, weights = read_mixtures(mixtures)
    if sorted(names) != sorted(fitted.domains):
        raise UsageError(f"{mixtures}: domains differ from the model's ({', '.join(fitted.domains)})")
    predicted = fitted.predict(weights[:, [names.index(d) for d in fitted.domains]], regressor)
    write_csv(pl.DataFrame({INDEX: index, fitted.target: predicted}), output)
    return {"stage": "mix predict", "output": output, "rows": len(index), "target": fitted.target}, [
        f"{len(index)} predictions of {fitted.target} ({regressor}) → {output}"]


def optimize_tool(params: OptimizeParams, model: str, output: str | None) -> tuple[dict, list[str]]:
    fitted = load_model(model)
    prior, caps = None, None
    if params.stats:
        stats = DomainStats.load(params.stats)
        stats.check_domains(fitted.domains, params.stats)
        tokens = stats.tokens(fitted.domains)
        prior = temperature_prior(tokens, params.temperature)
        caps = epoch_caps(tokens, params.token_budget, params.max_epochs)
    result = optimize(fitted, params, caps=caps, prior=prior)
    output = output or f"{model}/weights.yaml"
    weights = {d: round(float(w), 6) for d, w in zip(fitted.domains, result.weights, strict=True)}
    document = {
        "target": fitted.target, "regressor": params.regressor, "predicted": round(result.predicted, 6),
        "n_sim": result.simulated, "top_k": params.top_k, "epoch_caps": caps is not None, "weights": weights,
    }
    header = f"# curate mix optimize --model {model}: average of the top {params.top_k} of {result.simulated:,}\n"
    write_text_atomic(output, header + yaml.safe_dump(document, sort_keys=False))
    ordered = dict(sorted(weights.items(), key=lambda kv: -kv[1]))
    lines = [f"{'domain':<40} weight", *[f"{d:<40} {w:.4f}" for d, w in ordered.items()],
             f"predicted {fitted.target}: {result.predicted:.4f} → {output}"]
    return {"stage": "mix optimize", "output": output, **document}, lines


def apply_lines(summary: dict) -> list[str]:
    """`curate mix apply`'s table: target and realised share, epochs and documents per domain."""
    rows = {d: {k: r[k] for k in ("target", "realised", "epochs", "docs")} for d, r in summary.get("domains", {}).items()}
    return _table(rows, ["target", "realised", "epochs", "docs"]) if rows else []
