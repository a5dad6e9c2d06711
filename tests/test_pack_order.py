"""`curate pack --order related` (In-Context Pretraining) on real English text: related documents end up next to
each other (same source file far more often than in a random order), every document appears exactly once, and
the order depends on the seed only: not on --workers, array tasks or resuming pass by pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from test_pack_cli import output_of
from typer.testing import CliRunner

from curate.cli.main import app
from curate.stages.pack import related

UNIT_ROWS = 300


def source_file(ids: list[str]) -> np.ndarray:
    """The file a misc.parquet document comes from (a webtext file, a movie-review class, a speech corpus)."""
    names = [i.split("#")[0] for i in ids]
    return np.array([n.rsplit("/", 1)[0] if n.startswith(("nltk/movie", "nltk/inaugural", "nltk/state_union"))
                     else n for n in names])


@pytest.fixture(scope="module")
def mixed(shared_data: Path, tmp_path_factory) -> Path:
    """1,000 documents of six source files of english/misc, shuffled (so the input order groups nothing), in
    four units."""
    table = pq.read_table(shared_data / "english" / "misc.parquet", columns=["id", "text", "source"])
    ids = pc.utf8_slice_codeunits(table.column("id"), 0, 24)
    parts = [table.filter(pc.starts_with(ids, prefix)).slice(0, n) for prefix, n in (
        ("nltk/webtext/firefox", 250), ("nltk/webtext/wine", 200), ("nltk/webtext/pirates", 150),
        ("nltk/movie_reviews/pos", 150), ("nltk/movie_reviews/neg", 150), ("nltk/state_union", 65),
        ("nltk/inaugural", 35))]
    mixed = pa.concat_tables(parts)
    mixed = mixed.take(np.random.default_rng(0).permutation(mixed.num_rows))
    path = tmp_path_factory.mktemp("related") / "mixed.parquet"
    pq.write_table(mixed, path, row_group_size=200)
    return path


@pytest.fixture(scope="module")
def tokenizer_path(shared_data: Path) -> Path:
    return shared_data / "tokenizers" / "gpt2.json"


def run(*args: str) -> dict:
    result = CliRunner().invoke(app, [*map(str, args), "--json", "-q"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout.strip().splitlines()[-1])


def pack_args(mixed: Path, out: Path, tokenizer_path: Path, *more: str) -> list[str]:
    return ["pack", str(mixed), "-o", str(out), "--tokenizer", str(tokenizer_path), "--order", "related",
            "--max-rows-per-shard", str(UNIT_ROWS), "--cluster-docs", "250", "--seed", "3", *more]


def ordered_ids(out: Path) -> list[str]:
    work = out.parent / f"{out.name}.pack-work" / "ordered"
    return pq.read_table(sorted(work.glob("part-*.parquet")), columns=["id"]).column("id").to_pylist()


def same_neighbour_share(labels: np.ndarray) -> float:
    return float(np.mean(labels[1:] == labels[:-1]))


@pytest.fixture(scope="module")
def concat_run(mixed, tokenizer_path, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("concat") / "out"
    summary = run(*pack_args(mixed, out, tokenizer_path, "--strategy", "concat", "--seq-len", "512"))
    return {"out": out, "summary": summary, "output": output_of(out), "ids": ordered_ids(out)}


def test_related_order_puts_same_source_documents_together(mixed, concat_run):
    ids = concat_run["ids"]
    originals = pq.read_table(mixed, columns=["id"]).column("id").to_pylist()
    assert sorted(ids) == sorted(originals) and len(set(ids)) == len(ids)  # every document exactly once
    related_share = same_neighbour_share(source_file(ids))
    random_share = same_neighbour_share(source_file(originals))  # the input is in random order
    assert random_share < 0.25
    assert related_share > 0.6 and related_share > 2.5 * random_share, (related_share, random_share)
    summary = concat_run["summary"]
    assert summary["order"]["documents"] == 1000 and summary["centroids"]["clusters"] == 4
    assert summary["documents"]["in"] == 1000 and summary["strategy"] == "concat"
    assert summary["order"]["mean_adjacent_similarity"] > 0.2


def test_workers_and_array_tasks_pass_by_pass_give_the_same_output(mixed, tokenizer_path, tmp_path, concat_run):
    args = pack_args(mixed, tmp_path / "w2", tokenizer_path, "--strategy", "concat", "--seq-len", "512")
    run(*args, "--workers", "2")
    assert output_of(tmp_path / "w2") == concat_run["output"]
    args = pack_args(mixed, tmp_path / "tasks", tokenizer_path, "--strategy", "concat", "--seq-len", "512")
    for name in ("embed", "centroids", "assign", "order", "pack"):
        tasks = [1, 0] if name != "centroids" else [0]
        for task in tasks:
            summary = run(*args, "--pass", name, "--shard-index", task, "--num-shards", len(tasks))
        assert summary["complete"]
    assert ordered_ids(tmp_path / "tasks") == concat_run["ids"]
    assert output_of(tmp_path / "tasks") == concat_run["output"]
    resumed = run(*args)  # every pass finished: nothing is redone
    assert resumed["units_processed"] == 0 and resumed["order"]["units_processed"] == 0


def test_decompose_keeps_related_documents_in_neighbouring_sequences(mixed, tokenizer_path, tmp_path):
    out = tmp_path / "dd"
    summary = run(*pack_args(mixed, out, tokenizer_path, "--min-log2", "5", "--max-log2", "9",
                             "--keep-columns", "source"))
    assert summary["strategy"] == "decompose" and summary["documents"]["in"] == 1000
    originals = pq.read_table(mixed, columns=["id"]).column("id").to_pylist()
    bucket = pq.read_table(sorted((out / "bucket_00032").glob("part-*.parquet")), columns=["doc_id"])
    ids = bucket.column("doc_id").to_pylist()
    assert set(ids) <= set(originals)
    pieces = source_file(ids)
    related_share = same_neighbour_share(pieces)
    shuffled = same_neighbour_share(pieces[np.random.default_rng(0).permutation(len(pieces))])
    # the bucket is mostly forum lines: compare how often neighbouring pieces come from different files
    assert 1 - related_share < 0.3 * (1 - shuffled), (related_share, shuffled)


def test_hnsw_neighbours_match_exact_ones_and_traversal_visits_each_document_once(mixed):
    texts = pq.read_table(mixed, columns=["text"]).column("text")
    vectors = related.embed(texts, seed=1)
    vectors = related.normalise(vectors - vectors.mean(axis=0))
    exact = related.exact_neighbours(vectors, 9)
    approximate = related.hnsw_neighbours(vectors, 9, seed=1)
    recall = np.mean([len(set(a) & set(e)) / 9 for a, e in zip(approximate, exact, strict=True)])
    assert recall > 0.9
    assert np.array_equal(approximate, related.hnsw_neighbours(vectors, 9, seed=1))  # one thread: deterministic
    path, paths = related.greedy_path(exact, seed=1)
    assert np.array_equal(path, related.greedy_path(exact, seed=1)[0])
    assert not np.array_equal(path, related.greedy_path(exact, seed=2)[0])  # the seed picks where paths start
    assert np.array_equal(np.sort(path), np.arange(len(vectors))) and 1 <= paths < len(vectors) // 2
    sims = related.adjacent_similarity(vectors, path)
    random_sims = related.adjacent_similarity(vectors, np.random.default_rng(1).permutation(len(vectors)))
    assert sims.mean() > random_sims.mean() + 0.2
    # a document is followed by its most similar unvisited neighbour whenever one is left
    position = np.empty_like(path)
    position[path] = np.arange(len(path))
    followed = 0
    for step in range(len(path) - 1):
        unvisited = [n for n in exact[path[step]] if position[n] > step]
        if unvisited:
            assert path[step + 1] == unvisited[0], step
            followed += 1
    assert followed == len(path) - paths  # every other step is a jump, one per path


def test_order_related_refuses_stdin_and_a_pass_before_the_one_it_reads(mixed, tokenizer_path, tmp_path):
    result = CliRunner().invoke(app, ["pack", "-", "-o", "out", "--tokenizer", str(tokenizer_path), "--order",
                                      "related"])
    assert result.exit_code == 2 and "stdin" in result.stderr
    result = CliRunner().invoke(app, pack_args(mixed, tmp_path / "early", tokenizer_path, "--pass", "order"))
    assert result.exit_code == 2 and "the `centroids` pass of --order related has not finished" in result.stderr
