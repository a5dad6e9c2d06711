"""Mixture search on real multi-domain text: English sources by `source`, web pages, UDHR paragraphs."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from scipy.stats import spearmanr
from test_pipeline import kill_after_units, progress_records, ray_session  # noqa: F401  (one Ray per session)
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.output import file_checksum

WEIGHTS = {  # nltk-abc (two 2 MB documents) gets 0: one of its documents is 5% of this budget
    "web": 0.35, "udhr": 0.15, "nltk-movie_reviews": 0.2, "gensim-enwiki-wikitext": 0.15, "nltk-state_union": 0.05,
    "nltk-webtext": 0.05, "nltk-inaugural": 0.03, "allenai-cc-fixture": 0.02, "nltk-abc": 0.0,
}


def _inputs(data) -> list[str]:
    return [str(data / "english" / "misc.parquet"), f"web={data / 'web' / 'trafilatura_pages.parquet'}",
            f"udhr={data / 'udhr' / 'paragraphs.parquet'}", "--domain-column", "source"]


def _read(folder, columns=("id", "text", "mix_domain")) -> pl.DataFrame:
    """Shards differ in their other columns (web pages have url, the English set source): read the shared ones."""
    return pl.concat([pl.read_parquet(p, columns=list(columns)) for p in sorted(folder.glob("part-*.parquet"))])


def _run(*args: str) -> dict:
    result = CliRunner().invoke(app, ["mix", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_builtin_proxy_results_are_predictable_by_the_regression(shared_data, tmp_path):
    stats = _run("stats", *_inputs(shared_data), "-o", str(tmp_path / "stats.json"))
    assert stats["domains"]["web"]["documents"] == 1032
    assert len(stats["domains"]) == 9
    _run("propose", "--stats", str(tmp_path / "stats.json"), "--n", "256", "--seed", "5",
         "-o", str(tmp_path / "mixtures.csv"))
    proxy = _run("proxy", *_inputs(shared_data), "--mixtures", str(tmp_path / "mixtures.csv"),
                 "--targets", "web,gensim-enwiki-wikitext", "--valid-bytes", "50000", "-o", str(tmp_path / "results.csv"))
    assert proxy["runs"] == 256
    results = pl.read_csv(tmp_path / "results.csv")
    assert results.columns == ["index", "bpb/web", "bpb/gensim-enwiki-wikitext", "bpb/mean"]
    mixtures = pl.read_csv(tmp_path / "mixtures.csv").join(results, on="index")
    # more of a domain in the mixture → lower loss on its held-out text
    assert spearmanr(mixtures["web"], mixtures["bpb/web"])[0] < -0.5
    assert spearmanr(mixtures["gensim-enwiki-wikitext"], mixtures["bpb/gensim-enwiki-wikitext"])[0] < -0.5
    assert results["bpb/web"].min() > 1.0 and results["bpb/web"].max() < 16  # bits per byte of a real LM
    fitted = _run("fit", "--mixtures", str(tmp_path / "mixtures.csv"), "--results", str(tmp_path / "results.csv"),
                  "--target", "bpb/web", "-o", str(tmp_path / "model"))
    assert fitted["cv"]["lightgbm"]["spearman"] >= 0.9
    optimised = _run("optimize", "--model", str(tmp_path / "model"), "--stats", str(tmp_path / "stats.json"),
                     "--n-sim", "5000")
    assert max(optimised["weights"], key=optimised["weights"].get) == "web"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "weights.yaml"
    path.write_text(yaml.safe_dump({"weights": WEIGHTS}))
    return path


def _apply(data, out, weights, *more: str) -> list[str]:
    return ["apply", *_inputs(data), "-o", str(out), "--weights", str(weights), "--tokens", "3000000", "--seed", "1",
            *more]


def _shards(out: Path) -> tuple[dict[str, str], list[dict]]:
    """Checksums of the shards on disk, and the manifest's shard list."""
    on_disk = {p.name: file_checksum(p) for p in sorted(out.glob("part-*.parquet"))}
    return on_disk, json.loads((out / "_manifest.json").read_text())["shards"]


@pytest.fixture(scope="module")
def applied(shared_data, weights_file):
    folder = weights_file.parent
    outputs = [_run(*_apply(shared_data, folder / name, weights_file)) for name in ("a", "b")]
    return folder, outputs


@pytest.fixture(scope="module")
def reference(shared_data, weights_file) -> tuple[dict[str, str], list[dict]]:
    """One uninterrupted run in 9 units (--max-rows-per-shard 10000): what every other way of running gives."""
    out = weights_file.parent / "reference"
    summary = _run(*_apply(shared_data, out, weights_file, "--max-rows-per-shard", "10000"))
    assert summary["complete"] and summary["units"] == 9
    return _shards(out)


def test_apply_realises_token_shares_within_0_0032(applied):
    folder, (summary, _) = applied
    table = _read(folder / "a")
    tokens = table.group_by("mix_domain").agg((pl.col("text").str.len_bytes() + 3) // 4)  # ceil(bytes/4)
    tokens = dict(zip(tokens["mix_domain"], [int(sum(t)) for t in tokens["text"]], strict=True))
    total = sum(tokens.values())
    assert abs(total - 3_000_000) / 3_000_000 < 0.01
    for domain, weight in WEIGHTS.items():
        assert abs(tokens.get(domain, 0) / total - weight) <= 0.0032, domain
        assert summary["domains"][domain]["target"] == pytest.approx(weight)
        assert summary["domains"][domain]["tokens"] == tokens.get(domain, 0)
    assert summary["max_abs_share_error"] <= 0.0032
    assert summary["tokens_written"] == total and summary["tokens_target"] == 3_000_000
    assert "nltk-abc" not in tokens
    assert {"id", "text", "mix_domain"} <= set(table.columns)


def test_apply_is_deterministic_and_repeats_small_domains(applied, shared_data, weights_file):
    folder, (first, second) = applied
    assert _shards(folder / "a") == _shards(folder / "b")
    assert first["domains"] == second["domains"]
    # one shard per input unit (the English set, web pages, UDHR paragraphs: in path order)
    assert list(_shards(folder / "a")[0]) == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    # allenai-cc-fixture: 2% of 3M tokens = 60k of its 75k tokens; the wikitext share is under one epoch
    assert 0.7 < first["domains"]["allenai-cc-fixture"]["epochs"] < 0.9
    ids = _read(folder / "a").filter(pl.col("mix_domain") == "udhr")["id"]
    assert ids.n_unique() == len(ids)  # under one epoch: no document twice
    other = _run(*_apply(shared_data, folder / "seed-2", weights_file)[:-1], "2")  # --seed 2
    chosen = set(_read(folder / "seed-2").filter(pl.col("mix_domain") == "udhr")["id"])
    assert other["max_abs_share_error"] <= 0.0032 and chosen != set(ids)


def test_apply_output_does_not_depend_on_workers(shared_data, weights_file, reference, tmp_path):
    _run(*_apply(shared_data, tmp_path / "two", weights_file, "--max-rows-per-shard", "10000", "--workers", "2"))
    assert _shards(tmp_path / "two") == reference


def test_apply_as_4_array_tasks_in_shuffled_order_matches_one_run(shared_data, weights_file, reference, tmp_path):
    """Each task counts its units, the last one computes the quotas; run again, each task samples its units."""
    out = tmp_path / "tasks"
    args = _apply(shared_data, out, weights_file, "--max-rows-per-shard", "10000", "--num-shards", "4")
    for order in ([2, 0, 3, 1], [1, 3, 0, 2]):
        summaries = [_run(*args, "--shard-index", str(task)) for task in order]
    assert [s["complete"] for s in summaries] == [False, False, False, True]
    assert summaries[-1]["max_abs_share_error"] <= 0.0032
    assert _shards(out) == reference


@pytest.mark.usefixtures("ray_session")
def test_apply_with_the_ray_executor_matches_the_local_run(shared_data, weights_file, reference, tmp_path):
    _run(*_apply(shared_data, tmp_path / "ray", weights_file, "--max-rows-per-shard", "10000", "--executor", "ray",
                 "--workers", "2"))
    assert _shards(tmp_path / "ray") == reference


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("killed_in", ["stats", "apply"])
def test_apply_killed_with_sigkill_then_rerun_matches_an_uninterrupted_run(shared_data, weights_file, reference,
                                                                          tmp_path, killed_in):
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "curate", "mix", *_apply(shared_data, out, weights_file,
                                                              "--max-rows-per-shard", "10000", "-q")]
    status, orphans = kill_after_units(command, tmp_path, 3 if killed_in == "stats" else 9 + 3)
    assert status == -signal.SIGKILL and not orphans
    assert not (out / "_manifest.json").exists()
    counted, sampled = (len(progress_records(folder)) for folder in (tmp_path / "killed.mix-work" / "stats", out))
    assert (3 <= counted < 9 and sampled == 0) if killed_in == "stats" else (counted == 9 and 3 <= sampled < 9)
    rerun = _run(*command[4:])  # the same command, in this process
    assert rerun["complete"] and rerun["units_already_done"] == (0 if killed_in == "stats" else sampled)
    assert _shards(out) == reference


def test_apply_refuses_more_than_max_epochs(shared_data, tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"allenai-cc-fixture": 0.5, "web": 0.5}))
    result = CliRunner().invoke(app, ["mix", "apply", *_inputs(shared_data), "-o", str(tmp_path / "out"),
                                      "--weights", str(tmp_path / "w.yaml"), "--tokens", "3000000"])
    assert result.exit_code == 2
    assert "allenai-cc-fixture would need" in result.output and "epochs" in result.output
    assert not (tmp_path / "out" / "_manifest.json").exists()
    # the counted statistics stay: a lower budget into the same output needs no --overwrite
    lower = _run("apply", *_inputs(shared_data), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "w.yaml"),
                 "--tokens", "100000")
    assert lower["complete"] and lower["stats"]["units_already_done"] == 3
    assert lower["domains"]["allenai-cc-fixture"]["epochs"] < 1


def _tiny(tmp_path: Path, texts: dict[str, list[str]], ids: bool = True) -> Path:
    rows = [(domain, text) for domain, values in texts.items() for text in values]
    columns = {"source": [d for d, _ in rows], "text": [t for _, t in rows]}
    if ids:
        columns["id"] = [f"doc-{i}" for i in range(len(rows))]
    path = tmp_path / "tiny.parquet"
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(("weights", "message"), [
    ({"a": 0.5, "nowhere": 0.5}, "domain(s) nowhere not in the inputs (a, empty)"),
    ({"a": 0.5, "empty": 0.5}, "domain empty has no tokens but a weight > 0"),
])
def test_apply_refuses_weights_the_data_cannot_give(tmp_path, weights, message):
    data = _tiny(tmp_path, {"a": ["some text here"] * 50, "empty": [""] * 5})
    (tmp_path / "w.yaml").write_text(yaml.safe_dump(weights))
    result = CliRunner().invoke(app, ["mix", "apply", str(data), "--domain-column", "source", "-o",
                                      str(tmp_path / "out"), "--weights", str(tmp_path / "w.yaml"), "--tokens", "100"])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_apply_without_ids_draws_by_place(tmp_path):
    data = _tiny(tmp_path, {"a": [f"text number {i}" for i in range(200)], "b": ["b text"] * 200}, ids=False)
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"a": 0.5, "b": 0.5}))
    args = [str(data), "--domain-column", "source", "--weights", str(tmp_path / "w.yaml"), "--tokens", "400"]
    first = _run("apply", *args, "-o", str(tmp_path / "x"))
    _run("apply", *args, "-o", str(tmp_path / "y"))
    assert _shards(tmp_path / "x") == _shards(tmp_path / "y")
    assert first["max_abs_share_error"] < 0.01 and 0 < first["domains"]["a"]["docs"] < 200


def test_token_counts_use_the_tokenizer_when_given(shared_data):
    import pyarrow as pa
    from tokenizers import Tokenizer

    from curate.stages.mix.domains import TokenCounter

    path = shared_data / "tokenizers" / "gpt2.json"
    texts = pa.array(["Hello world, this is curate.", "Grüße aus Köln", ""])
    expected = [len(e.ids) for e in Tokenizer.from_file(str(path)).encode_batch(texts.to_pylist())]
    assert TokenCounter(str(path)).count(texts).tolist() == expected
    assert TokenCounter().count(texts).tolist() == [7, 5, 0]  # ceil(bytes / 4); "Grüße aus Köln" is 17 bytes
