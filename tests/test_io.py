"""The shared I/O layer: shards, manifests, resume, determinism, array tasks, and bad input."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import zstandard
from conftest import write_parquet

from curate.io.errors import InputError, OutputError
from curate.io.inputs import Columns
from curate.io.options import IOOptions
from curate.io.output import file_checksum
from curate.params import option
from curate.runner import run_map_stage
from curate.stages.base import MapStage, StageOutput


@dataclass
class LengthParams:
    min_chars: int = option(60, "Documents shorter than this are removed.")


class LengthStage(MapStage):
    """A small real stage: adds n_chars and removes short documents."""

    name = "length"
    fail_after_batches: int | None = None  # simulate a crash in the middle of a run
    seen = 0

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        LengthStage.seen += 1
        if self.fail_after_batches is not None and LengthStage.seen > self.fail_after_batches:
            raise RuntimeError("simulated crash")
        n = pc.utf8_length(batch.column(columns.text))
        out = batch.append_column("n_chars", n)
        keep = pc.greater_equal(n, self.params.min_chars)
        removed = pc.sum(pc.invert(keep)).as_py() or 0
        return StageOutput(out.filter(keep), out.filter(pc.invert(keep)), {"removed": {"too_short": removed}})


def run(inputs, out, **kwargs) -> dict:
    params = LengthParams(**{k: kwargs.pop(k) for k in ("min_chars",) if k in kwargs})
    stage = kwargs.pop("stage", None) or LengthStage(params)
    rejected = kwargs.pop("rejected_dir", None)
    io = IOOptions(inputs=[str(p) for p in inputs], output=str(out), quiet=True, **kwargs)
    return run_map_stage(stage, io, rejected_dir=rejected)


def shard_checksums(out: Path) -> dict[str, str]:
    return {p.name: file_checksum(p) for p in sorted(out.glob("part-*.parquet"))}


def test_shards_manifest_stats_and_passthrough(small_corpus, tmp_path):
    summary = run(
        [small_corpus], tmp_path / "out", max_rows_per_shard=250, rejected_dir=str(tmp_path / "rej")
    )
    out = tmp_path / "out"
    # 3 files × 400 rows, cut at 250 rows → 6 units, one shard each
    assert sorted(shard_checksums(out)) == [f"part-{i:05d}.parquet" for i in range(6)]
    manifest = json.loads((out / "_manifest.json").read_text())
    stats = json.loads((out / "_stats.json").read_text())
    assert summary["complete"] and summary["docs_in"] == 1200 == stats["docs_in"]
    assert stats["docs_out"] + stats["removed"]["too_short"] == 1200
    assert manifest["rows"] == stats["docs_out"] and len(manifest["inputs"]) == 3
    for shard in manifest["shards"]:
        assert file_checksum(out / shard["name"]) == shard["checksum"]
        assert pq.ParquetFile(out / shard["name"]).metadata.row_group(0).column(0).compression == "ZSTD"
    table = pq.read_table(out)
    source = pq.read_table(small_corpus)
    assert table.schema.field("weight").type == pa.float64() and table.schema.field("url").type == pa.string()
    assert set(table.column_names) == set(source.column_names) | {"n_chars"}
    # order is preserved and pass-through values untouched
    expected = source.filter(pc.greater_equal(pc.utf8_length(source["text"]), 60))
    assert table["id"].to_pylist() == expected["id"].to_pylist()
    assert table["weight"].to_pylist() == expected["weight"].to_pylist()
    rejected = pq.read_table(tmp_path / "rej")
    assert rejected.num_rows == stats["removed"]["too_short"]


def test_output_is_deterministic_across_workers_and_batch_sizes(small_corpus, tmp_path):
    run([small_corpus], tmp_path / "a", max_rows_per_shard=250)
    run([small_corpus], tmp_path / "b", max_rows_per_shard=250, workers=2, batch_size=37)
    reference = shard_checksums(tmp_path / "a")
    assert reference == shard_checksums(tmp_path / "b")
    assert len(reference) == 6


def test_array_tasks_union_equals_single_run(small_corpus, tmp_path):
    run([small_corpus], tmp_path / "single", max_rows_per_shard=250)
    summaries = [
        run([small_corpus], tmp_path / "tasks", max_rows_per_shard=250, shard_index=i, num_shards=4)
        for i in (2, 0, 3, 1)
    ]
    assert [s["complete"] for s in summaries] == [False, False, False, True]
    assert sum(s["units_processed"] for s in summaries) == 6
    assert shard_checksums(tmp_path / "tasks") == shard_checksums(tmp_path / "single")
    assert (tmp_path / "tasks" / "_manifest.json").exists()


def test_slurm_environment_sets_the_task(small_corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "11")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "10")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    summary = run([small_corpus], tmp_path / "out", max_rows_per_shard=250)
    assert summary["units_this_task"] == 2  # units 1 and 4 of 6
    assert sorted(p.name for p in (tmp_path / "out").glob("part-*")) == [
        "part-00001.parquet",
        "part-00004.parquet",
    ]


def test_resume_after_crash_matches_uninterrupted_run(small_corpus, tmp_path):
    run([small_corpus], tmp_path / "reference", max_rows_per_shard=250)
    crashing = LengthStage(LengthParams())
    crashing.fail_after_batches = 7
    LengthStage.seen = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([small_corpus], tmp_path / "out", max_rows_per_shard=250, batch_size=100, stage=crashing)
    out = tmp_path / "out"
    finished = sorted(p.name for p in out.glob("part-*"))
    assert finished == ["part-00000.parquet", "part-00001.parquet"]  # the unit in flight left nothing behind
    assert not list((out / ".tmp").iterdir()) and not (out / "_manifest.json").exists()
    summary = run([small_corpus], out, max_rows_per_shard=250, batch_size=100)
    assert summary["units_already_done"] == 2 and summary["units_processed"] == 4
    assert shard_checksums(out) == shard_checksums(tmp_path / "reference")
    assert summary["docs_in"] == 1200


def test_rerun_of_finished_output_skips_everything(small_corpus, tmp_path):
    run([small_corpus], tmp_path / "out")
    before = shard_checksums(tmp_path / "out")
    summary = run([small_corpus], tmp_path / "out")
    assert summary["units_processed"] == 0 and summary["complete"]
    assert shard_checksums(tmp_path / "out") == before


def test_other_parameters_are_refused_unless_overwrite(small_corpus, tmp_path):
    run([small_corpus], tmp_path / "out")
    with pytest.raises(OutputError, match=r"min_chars=60 there, 10 now.*--overwrite"):
        run([small_corpus], tmp_path / "out", min_chars=10)
    summary = run([small_corpus], tmp_path / "out", min_chars=10, overwrite=True)
    assert summary["removed"]["too_short"] < 100


def test_foreign_directory_is_refused(small_corpus, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        run([small_corpus], tmp_path / "out")


def _jsonl_lines(n: int) -> list[bytes]:
    return [
        json.dumps({"id": f"d{i}", "text": "word " * (5 + i % 30), "meta": i}).encode() + b"\n"
        for i in range(n)
    ]


@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz"])
def test_jsonl_inputs_and_overflow_shards(tmp_path, suffix):
    data = b"".join(_jsonl_lines(250))
    path = tmp_path / f"in{suffix}"
    if suffix.endswith(".gz"):
        data = gzip.compress(data)
    elif suffix.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    summary = run([path], tmp_path / "out", min_chars=0, max_rows_per_shard=100, batch_size=64)
    names = sorted(p.name for p in (tmp_path / "out").glob("part-*"))
    assert names == ["part-00000.parquet", "part-00000_0001.parquet", "part-00000_0002.parquet"]
    table = pq.read_table(tmp_path / "out")
    assert summary["docs_out"] == table.num_rows == 250
    assert table["meta"].to_pylist() == list(range(250)) and table["meta"].type == pa.int64()


def _bad_input(kind: str, tmp: Path) -> tuple[Path, str]:
    good = pa.table({"id": ["a", "b", "c"], "text": ["one doc here", "two docs", "three"]})
    if kind == "truncated":
        write_parquet(tmp / "t.parquet", good)
        raw = (tmp / "t.parquet").read_bytes()
        (tmp / "t.parquet").write_bytes(raw[: len(raw) // 2])
        return tmp / "t.parquet", r"t\.parquet: not a readable Parquet file"
    if kind == "not-parquet":
        (tmp / "x.parquet").write_text("id,text\n1,hello\n")
        return tmp / "x.parquet", r"x\.parquet: not a readable Parquet file"
    if kind == "missing-column":
        return write_parquet(
            tmp / "m.parquet", good.rename_columns(["id", "body"])
        ), "missing text column 'text'"
    if kind == "null-text":
        table = pa.table({"id": ["a", "b", "c"], "text": ["fine", None, "also fine"]})
        return write_parquet(tmp / "n.parquet", table), r"n\.parquet, row 1, column 'text': expected a string"
    if kind == "non-string-text":
        table = pa.table({"id": ["a"], "text": pa.array([3], pa.int64())})
        return write_parquet(tmp / "i.parquet", table), r"column 'text': expected strings, found int64"
    if kind == "invalid-utf8":
        (tmp / "u.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "bad \xff byte"}\n')
        return tmp / "u.jsonl", r"u\.jsonl, line 2: invalid UTF-8"
    if kind == "invalid-json":
        (tmp / "j.jsonl").write_bytes(b'{"text": "ok"}\n{"text": "ok"}\n{"text": "no end}\n')
        return tmp / "j.jsonl", r"j\.jsonl, line 3: invalid JSON"
    if kind == "empty":
        (tmp / "e.jsonl").write_bytes(b"")
        return tmp / "e.jsonl", "input is empty"
    raise AssertionError(kind)


BAD_KINDS = [
    "truncated",
    "not-parquet",
    "missing-column",
    "null-text",
    "non-string-text",
    "invalid-utf8",
    "invalid-json",
    "empty",
]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_gives_clear_error_and_no_finished_shard(tmp_path, kind):
    path, message = _bad_input(kind, tmp_path)
    with pytest.raises(InputError, match=message) as info:
        run([path], tmp_path / "out", min_chars=0)
    assert info.value.exit_code == 3
    assert not list((tmp_path / "out").glob("part-*")) if (tmp_path / "out").exists() else True
    assert not (tmp_path / "out" / "_manifest.json").exists()


def test_skip_records_bad_rows_and_files(tmp_path):
    write_parquet(tmp_path / "in" / "a.parquet", pa.table({"id": ["a", "b"], "text": ["fine text", None]}))
    (tmp_path / "in" / "b.jsonl").write_bytes(b'{"id": "c", "text": "ok"}\n{"id": "d", "text": "x\xff"}\n')
    (tmp_path / "in" / "c.parquet").write_text("garbage")
    summary = run([tmp_path / "in"], tmp_path / "out", min_chars=0, on_error="skip")
    assert summary["docs_out"] == 2 and summary["errors_skipped"] == 3
    errors = [json.loads(line) for line in (tmp_path / "out" / "_errors.jsonl").read_text().splitlines()]
    assert {(Path(e["path"]).name, e["row"]) for e in errors} == {
        ("c.parquet", None),
        ("a.parquet", 1),
        ("b.jsonl", 2),
    }


def test_unwritable_output(small_corpus, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="cannot create output directory") as info:
        run([small_corpus], tmp_path / "file" / "out")
    assert info.value.exit_code == 4


def test_inputs_are_sorted_whatever_the_listing_order(small_corpus, tmp_path):
    files = sorted(small_corpus.glob("*.parquet"))
    run(files, tmp_path / "a")
    run(list(reversed(files)), tmp_path / "b")
    assert shard_checksums(tmp_path / "a") == shard_checksums(tmp_path / "b")
    plan = json.loads((tmp_path / "a" / "_plan.json").read_text())
    assert [Path(u["path"]).name for u in plan["units"]] == [
        "shard-0.parquet",
        "shard-1.parquet",
        "shard-2.parquet",
    ]
