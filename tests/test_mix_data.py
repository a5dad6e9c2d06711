"""Mixture search on real multi-domain text: English sources by `source`, web pages, UDHR paragraphs."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml
from scipy.stats import spearmanr
from typer.testing import CliRunner

from curate.cli.main import app

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
def applied(shared_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("apply")
    (folder / "weights.yaml").write_text(yaml.safe_dump({"weights": WEIGHTS}))
    outputs = []
    for name in ("a", "b"):
        summary = _run("apply", *_inputs(shared_data), "-o", str(folder / name), "--weights",
                       str(folder / "weights.yaml"), "--tokens", "3000000", "--seed", "1")
        outputs.append(summary)
    return folder, outputs


def test_apply_realises_token_shares_within_one_percent(applied):
    folder, (summary, _) = applied
    table = _read(folder / "a")
    tokens = table.group_by("mix_domain").agg((pl.col("text").str.len_bytes() + 3) // 4)  # ceil(bytes/4)
    tokens = dict(zip(tokens["mix_domain"], [int(sum(t)) for t in tokens["text"]], strict=True))
    total = sum(tokens.values())
    assert abs(total - 3_000_000) / 3_000_000 < 0.01
    for domain, weight in WEIGHTS.items():
        assert abs(tokens.get(domain, 0) / total - weight) <= 0.01, domain
        assert summary["domains"][domain]["target"] == pytest.approx(weight)
    assert summary["max_abs_share_error"] <= 0.01
    assert "nltk-abc" not in tokens
    assert {"id", "text", "mix_domain"} <= set(table.columns)


def test_apply_is_deterministic_and_repeats_small_domains(applied, shared_data):
    folder, (first, second) = applied
    manifests = [json.loads((folder / n / "_manifest.json").read_text()) for n in ("a", "b")]
    assert [s["checksum"] for s in manifests[0]["shards"]] == [s["checksum"] for s in manifests[1]["shards"]]
    assert first["domains"] == second["domains"]
    # allenai-cc-fixture: 2% of 3M tokens = 60k of its 75k tokens; the wikitext share is under one epoch
    assert 0.7 < first["domains"]["allenai-cc-fixture"]["epochs"] < 0.9
    ids = _read(folder / "a").filter(pl.col("mix_domain") == "udhr")["id"]
    assert ids.n_unique() == len(ids)  # under one epoch: no document twice


def test_apply_refuses_more_than_max_epochs(shared_data, tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"allenai-cc-fixture": 0.5, "web": 0.5}))
    result = CliRunner().invoke(app, ["mix", "apply", *_inputs(shared_data), "-o", str(tmp_path / "out"),
                                      "--weights", str(tmp_path / "w.yaml"), "--tokens", "3000000"])
    assert result.exit_code == 2
    assert "allenai-cc-fixture would need" in result.output and "epochs" in result.output
    np.testing.assert_equal((tmp_path / "out" / "_manifest.json").exists(), False)


def test_token_counts_use_the_tokenizer_when_given(shared_data):
    import pyarrow as pa
    from tokenizers import Tokenizer

    from curate.stages.mix.domains import TokenCounter

    path = shared_data / "tokenizers" / "gpt2.json"
    texts = pa.array(["Hello world, this is curate.", "Grüße aus Köln", ""])
    expected = [len(e.ids) for e in Tokenizer.from_file(str(path)).encode_batch(texts.to_pylist())]
    assert TokenCounter(str(path)).count(texts).tolist() == expected
    assert TokenCounter().count(texts).tolist() == [7, 5, 0]  # ceil(bytes / 4); "Grüße aus Köln" is 17 bytes
