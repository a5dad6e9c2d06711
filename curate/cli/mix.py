"""`curate mix …`: RegMix-style mixture search (stats, propose, proxy, fit, predict, optimize, apply)."""

from __future__ import annotations

import dataclasses
import inspect
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import typer
import yaml

from curate.cli.common import keyword_option, stage_command, user_errors
from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.io.output import write_text_atomic
from curate.params import from_mapping, option
from curate.stages.mix.apply import ApplyParams, apply_mixture
from curate.stages.mix.domains import DomainSpec, DomainStats, TokenCounter, compute_stats
from curate.stages.mix.optimize import OptimizeParams, optimize
from curate.stages.mix.propose import ProposeParams, epoch_caps, propose, temperature_prior
from curate.stages.mix.proxy import ProxyParams, build_proxy
from curate.stages.mix.regression import REGRESSORS, FitParams, fit, load_model, save_model
from curate.stages.mix.tables import INDEX, join_target, mixtures_frame, read_mixtures, write_csv

app = typer.Typer(
    help="Data-mixture search, RegMix-style: propose mixtures, score them with proxy runs, fit a regression, "
    "optimise it, and sample the winning mixture.\n\n"
    "Domains come from a column (--domain-column source) or one input per domain (web=path/ wiki=path/).",
    epilog="Examples (the whole search; each command's --help has more):\n\n\b\n"
    "  curate mix stats data/ --domain-column source -o stats.json\n"
    "  curate mix propose --stats stats.json --n 64 -o mixtures.csv\n"
    "  curate mix proxy data/ --domain-column source --mixtures mixtures.csv -o results.csv\n"
    "  curate mix fit --mixtures mixtures.csv --results results.csv --target bpb/mean -o model\n"
    "  curate mix optimize --model model -o weights.yaml\n"
    "  curate mix apply data/ --domain-column source --weights weights.yaml --tokens 1000000 -o mixed",
    no_args_is_help=True,
    rich_markup_mode=None,
)


@dataclasses.dataclass
class DomainParams:
    domain_column: str | None = option(None, "Column naming each document's domain (else INPUT is name=path).")
    tokenizer: str | None = option(None, "tokenizers JSON for exact token counts (default: ceil(bytes/4)).")


def _opt(name: str, annotation: Any, default: Any, *decls: str, help: str) -> inspect.Parameter:
    return keyword_option(name, annotation, default, *decls, help=help)


INPUTS = inspect.Parameter(
    "inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list[str],
    default=typer.Argument(..., metavar="INPUT...", help="name=path per domain, or inputs plus --domain-column."),
)
OPTIONAL_INPUTS = inspect.Parameter(
    "inputs", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=list[str] | None,
    default=typer.Argument(None, metavar="[INPUT...]", help="Data to take token shares from (or use --stats)."),
)
READ_OPTIONS = [
    _opt("text_column", str, "text", "--text-column", help="Column holding the document text."),
    _opt("batch_size", int, 10_000, "--batch-size", help="Rows per Arrow batch (bounds memory)."),
]
REPORT_OPTIONS = [
    _opt("json_summary", bool, False, "--json", help="Print the summary as JSON on stdout."),
    _opt("quiet", bool, False, "--quiet", "-q", help="Nothing on stderr."),
]


# name → (function, params dataclasses, other arguments): `curate run` calls these as `mix-NAME` recipe steps
COMMANDS: dict[str, tuple[Callable, list[type], list[inspect.Parameter]]] = {}


def _command(name: str, params_classes: list[type], arguments: list[inspect.Parameter], *, help: str,
             examples: str) -> Callable[[Callable[..., tuple[dict, list[str]]]], Callable]:
    """Register ``fn(*params, **arguments) -> (summary, lines)``; flags come from the params dataclasses."""
    from curate.params import cli_parameters

    def decorator(fn: Callable[..., tuple[dict, list[str]]]) -> Callable:
        def command(**kwargs: Any) -> None:
            with user_errors(f"mix {name}"):
                params = []
                for cls in params_classes:
                    names = [f.name for f in dataclasses.fields(cls)]
                    params.append(from_mapping(cls, {k: kwargs.pop(k) for k in names}, "options"))
                json_summary, quiet = kwargs.pop("json_summary"), kwargs.pop("quiet")
                summary, lines = fn(*params, **kwargs)
                if json_summary:
                    sys.stdout.write(json.dumps(summary, sort_keys=True, default=str) + "\n")
                elif not quiet:
                    typer.echo("\n".join(lines), err=True)

        signature = [*arguments]
        for cls in params_classes:
            signature += cli_parameters(cls)
        command.__signature__ = inspect.Signature([*signature, *REPORT_OPTIONS])  # type: ignore[attr-defined]
        app.command(name, help=help, epilog=examples)(command)
        COMMANDS[name] = (fn, params_classes, arguments)
        return fn

    return decorator


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


@_command(
    "stats", [DomainParams],
    [INPUTS, _opt("output", str | None, None, "-o", "--output", help="Write the stats JSON here."), *READ_OPTIONS],
    help="Documents, bytes and tokens per domain (tokens with --tokenizer, else bytes/4).",
    examples="Examples:\n\n\b\n  curate mix stats data.parquet --domain-column source -o stats.json\n"
    "  curate mix stats web=crawl/ wiki=wiki/ --tokenizer tokenizer.json",
)
def stats_command(domain: DomainParams, inputs: list[str], output: str | None, text_column: str,
                  batch_size: int) -> tuple[dict, list[str]]:
    stats = _stats_of(domain, inputs, None, text_column, batch_size)
    if output:
        stats.save(output)
    data = stats.to_json()
    lines = _table(data["domains"], ["documents", "bytes", "tokens", "token_share"])
    return {"stage": "mix stats", "output": output, **data}, [*lines, f"tokens: {stats.tokenizer}"]


@_command(
    "propose", [ProposeParams, DomainParams],
    [OPTIONAL_INPUTS, _opt("output", str, ..., "-o", "--output", help="Mixtures CSV to write."),
     _opt("stats", str | None, None, "--stats", help="Domain stats JSON from `curate mix stats -o`."),
     *READ_OPTIONS],
    help="RegMix's generator: Dirichlet draws around token share ** temperature, within the epoch caps.",
    examples="Examples:\n\n\b\n  curate mix propose --stats stats.json --n 512 --seed 1 -o mixtures.csv\n"
    "  curate mix propose web=crawl/ wiki=wiki/ --token-budget 25000000000 -o mixtures.csv",
)
def propose_command(params: ProposeParams, domain: DomainParams, inputs: list[str] | None, output: str,
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


@_command(
    "proxy", [ProxyParams, DomainParams],
    [INPUTS, _opt("mixtures", str, ..., "--mixtures", help="Mixtures CSV (index + one column per domain)."),
     _opt("output", str, ..., "-o", "--output", help="Results CSV to write (index + one loss column per target)."),
     *READ_OPTIONS],
    help="Built-in CPU proxy runs: a smoothed byte n-gram LM per mixture, scored in bits/byte on held-out "
    "text of each target domain (see docs/mix.md).",
    examples="Examples:\n\n\b\n  curate mix proxy data.parquet --domain-column source --mixtures mixtures.csv -o results.csv\n"
    "  curate mix proxy web=crawl/ wiki=wiki/ --mixtures m.csv --targets web -o results.csv",
)
def proxy_command(params: ProxyParams, domain: DomainParams, inputs: list[str], mixtures: str, output: str,
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


@_command(
    "fit", [FitParams],
    [_opt("mixtures", str, ..., "--mixtures", help="Mixtures CSV (index + one column per domain)."),
     _opt("results", str, ..., "--results", help="Results CSV (index + metric columns), joined on index."),
     _opt("output", str, ..., "-o", "--output", help="Model directory (model.json + lightgbm.txt).")],
    help="Fit LightGBM (RegMix: gbdt, 1000 rounds, lr 0.01, seed 42) and linear regression from mixture "
    "weights to --target; prints k-fold cross-validated Spearman ρ and MSE of both.",
    examples="Examples:\n\n\b\n  curate mix fit --mixtures mixtures.csv --results results.csv --target bpb/mean -o model\n"
    "  curate mix fit --mixtures train_mixture_1m.csv --results train_pile_loss_1m.csv \\\n"
    "      --target metric/the_pile_pile_cc_val_loss -o model",
)
def fit_command(params: FitParams, mixtures: str, results: str, output: str) -> tuple[dict, list[str]]:
    _, domains, x, y = join_target(mixtures, results, params.target)
    model = fit(x, y, domains, params)
    save_model(model, output)
    lines = [f"{params.folds}-fold CV on {len(y)} runs, target {params.target}:"]
    lines += [f"  {name:<9} spearman ρ {s['spearman']:.4f}   mse {s['mse']:.6f}" for name, s in model.cv.items()]
    return {"stage": "mix fit", "output": output, "runs": len(y), "target": params.target, "cv": model.cv}, [
        *lines, f"model → {output}"]


@_command(
    "predict", [],
    [_opt("model", str, ..., "--model", help="Model directory from `curate mix fit`."),
     _opt("mixtures", str, ..., "--mixtures", help="Mixtures CSV to score."),
     _opt("output", str, ..., "-o", "--output", help="Predictions CSV (index + predicted target)."),
     _opt("regressor", str, "lightgbm", "--regressor", help=f"One of {', '.join(REGRESSORS)}.")],
    help="Predict the target for each mixture (index + predicted target column).",
    examples="Examples:\n\n\b\n  curate mix predict --model model --mixtures test_mixture_1m.csv -o predictions.csv",
)
def predict_command(model: str, mixtures: str, output: str, regressor: str) -> tuple[dict, list[str]]:
    fitted = load_model(model)
    index, names, weights = read_mixtures(mixtures)
    if sorted(names) != sorted(fitted.domains):
        raise UsageError(f"{mixtures}: domains differ from the model's ({', '.join(fitted.domains)})")
    predicted = fitted.predict(weights[:, [names.index(d) for d in fitted.domains]], regressor)
    write_csv(pl.DataFrame({INDEX: index, fitted.target: predicted}), output)
    return {"stage": "mix predict", "output": output, "rows": len(index), "target": fitted.target}, [
        f"{len(index)} predictions of {fitted.target} ({regressor}) → {output}"]


@_command(
    "optimize", [OptimizeParams],
    [_opt("model", str, ..., "--model", help="Model directory from `curate mix fit`."),
     _opt("output", str | None, None, "-o", "--output", help="Weights YAML (default: MODEL/weights.yaml).")],
    help="Simulate --n-sim mixtures from the generator, predict them, and average the --top-k best into "
    "the final weights (within the epoch caps when --stats is given). Writes YAML for `curate mix apply`.",
    examples="Examples:\n\n\b\n  curate mix optimize --model model\n"
    "  curate mix optimize --model model --stats stats.json --token-budget 25000000000 -o weights.yaml",
)
def optimize_command(params: OptimizeParams, model: str, output: str | None) -> tuple[dict, list[str]]:
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


@stage_command(
    app, "apply", ApplyParams, recipe="mix-apply",
    help="Sample documents per domain to realise --weights for a --tokens budget (repeating a domain up to "
    "--max-epochs), adding mix_domain; reports realised vs target token shares.",
    examples="Examples:\n\n\b\n  curate mix apply data.parquet --domain-column source -o mixed --weights weights.yaml --tokens 1000000\n"
    "  curate mix apply web=crawl/ wiki=wiki/ -o mixed --weights w.yaml --tokens 2000000000 --tokenizer tokenizer.json",
)
def apply_command(params: ApplyParams, io: IOOptions) -> dict:
    summary = apply_mixture(params, io)
    if not io.quiet and not io.json_summary:
        rows = {d: {k: r[k] for k in ("target", "realised", "epochs", "docs")} for d, r in summary["domains"].items()}
        typer.echo("\n".join(_table(rows, ["target", "realised", "epochs", "docs"])), err=True)
    return summary
