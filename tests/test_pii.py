"""`curate pii`: the same spans replaced as datatrove's PIIFormatter (FineWeb's PII step), byte for byte, on
real e-mails and web pages and on hand-written edge cases; a decoy rotation that does not depend on how the
input is split; the CLI's modes, counters and errors."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.inputs import Columns
from curate.stages.pii import (
    _SENTINELS,
    EMAIL_PATTERN,
    EMAIL_REPLACEMENTS,
    IP_REPLACEMENTS,
    PiiParams,
    PiiStage,
)

_spec = importlib.util.spec_from_file_location("bench_pii", REPO / "scripts" / "bench_pii.py")
bench_pii = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_pii)
normalise = bench_pii.normalise_decoys


def scrub(texts: list[str], ids: list[str] | None = None, **params) -> list[str]:
    columns = {"text": texts} if ids is None else {"id": ids, "text": texts}
    batch = pa.record_batch(columns)
    return PiiStage(PiiParams(**params)).process(batch, Columns()).kept.column("text").to_pylist()


def decoy_indices(text: str, decoys: tuple[str, ...]) -> list[int]:
    """Which decoy replaced each match, in order."""
    return [decoys.index(found) for found in re.findall("|".join(map(re.escape, decoys)), text)]


def is_rotation(ours: list[int], theirs: list[int], n: int) -> bool:
    """The same sequence, up to where the rotation starts."""
    return len(ours) == len(theirs) and len({(a - b) % n for a, b in zip(ours, theirs, strict=True)}) <= 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # private, loopback, link-local, shared (100.64/10), documentation and broadcast addresses stay;
        # multicast counts as global for Python's ipaddress, so datatrove replaces it
        (
            "10.0.0.1 192.168.1.1 127.0.0.1 169.254.1.1 100.64.0.1 192.0.2.1 0.0.0.0 255.255.255.255",
            "10.0.0.1 192.168.1.1 127.0.0.1 169.254.1.1 100.64.0.1 192.0.2.1 0.0.0.0 255.255.255.255",
        ),
        ("224.0.0.1 and 8.8.8.8", "<IP> and <IP>"),
        # no word boundaries in the IP regex: 999.1.1.1 is not an address, but 99.1.1.1 inside it is
        ("999.1.1.1", "9<IP>"),
        ("1.2.3.4.5", "<IP>.5"),
        ("1.1.1.11.1.1.1", "<IP>.1.1.1"),
        ("192.168.001.1 01.1.1.1", "192.168.001.1 01.1.1.1"),  # leading zeros: not an address, kept
        ("see http://user@example.com/path", "see http://<EMAIL>/path"),
        ("https://10.0.0.1:8080/ and http://8.8.8.8/x", "https://10.0.0.1:8080/ and http://<IP>/x"),
        ("mailto:john@x.com?subject=1", "mailto:<EMAIL>?subject=1"),
        ("a@b.com,c@d.org", "<EMAIL>,<EMAIL>"),  # adjacent matches
        ("8.8.8.8 8.8.4.4", "<IP> <IP>"),
        ("root@[192.168.1.1] x@[8.8.8.8]", "<EMAIL> <EMAIL>"),  # address literals are e-mails first
        ("x@y.c0m 1.2.3.4@host.org", "<EMAIL> <EMAIL>"),
        ("john@x.com.", "<EMAIL>."),
        ("john@localhost foo.@bar.com", "john@localhost foo.@bar.com"),
        ("éjohn@x.com", "éjohn@x.com"),  # no word boundary between é and j
        ("!john@x.com a!john@x.com", "!<EMAIL> <EMAIL>"),  # \b before a symbol needs a word character
        # a non-ASCII character right before: Unicode word boundaries, as Python's
        ("联系abc@qq.com", "联系abc@qq.com"),
        ("Kontakt：info@x.de", "Kontakt：<EMAIL>"),
        ("für-info@x.de ü!x@y.com ü_x@y.com", "für<EMAIL> ü<EMAIL> ü_x@y.com"),
        # where Python's \b and polars' (Rust's) disagree, Python's decides, as in datatrove
        ("e\u0301john@x.com", "e\u0301<EMAIL>"),  # a combining mark is no word character for Python
        ("x\u203fjohn@x.com", "x\u203f<EMAIL>"),  # nor is the connector punctuation ‿
        ("²john@x.com", "²john@x.com"),  # a superscript digit is one
    ],
)
def test_edge_cases(text, expected):
    assert normalise(scrub([text], ["doc"])[0]) == expected


def test_the_boundary_cases_need_more_than_a_fast_regex():
    """The non-ASCII edge cases above are not decided by polars' ASCII \\b, nor the last three by its
    Unicode \\b (so they test the slower exact paths)."""
    texts = [
        "联系abc@qq.com",
        "für-info@x.de",
        "ü!x@y.com",
        "e\u0301john@x.com",
        "x\u203fjohn@x.com",
        "²john@x.com",
    ]
    by_python = [re.search(EMAIL_PATTERN, t).group() if re.search(EMAIL_PATTERN, t) else None for t in texts]
    assert by_python == [None, "-info@x.de", "!x@y.com", "john@x.com", "john@x.com", None]
    by_ascii = pl.Series(texts).str.extract(f"((?-u:\\b){EMAIL_PATTERN[2:]})").to_list()
    assert by_ascii[:3] == ["abc@qq.com", "r-info@x.de", "x@y.com"]
    assert pl.Series(texts[3:]).str.contains(EMAIL_PATTERN).to_list() == [False, False, True]


def test_all_ips_replaces_private_ones_but_not_leading_zeros():
    out = scrub(["10.0.0.1 01.1.1.1 a@b.com"], ["d"], public_ips_only=False, emails=False)[0]
    assert normalise(out) == "<IP> 01.1.1.1 a@b.com"


def test_rotation_steps_per_replaced_match_and_starts_at_the_id():
    text = "8.8.8.8 10.0.0.1 " + " ".join(f"8.8.4.{i}" for i in range(1, 8)) + " a@b.com c@d.com e@f.com"
    ids = [f"doc-{i}" for i in range(40)]
    outputs = scrub([text] * 40, ids)
    starts = set()
    for out in outputs:
        ips, emails = decoy_indices(out, IP_REPLACEMENTS), decoy_indices(out, EMAIL_REPLACEMENTS)
        assert len(ips) == 8 and "10.0.0.1" in out  # the private address neither replaced nor counted
        assert ips == [(ips[0] + k) % 6 for k in range(8)] and emails == [
            (emails[0] + k) % 2 for k in range(3)
        ]
        starts.add(ips[0])
    assert len(starts) > 1  # the start depends on the id
    # the same document gives the same output wherever it is, in whatever batch, with or without neighbours
    assert scrub([text], ["doc-7"]) == [outputs[7]]
    assert scrub(["no pii", text], ["x", "doc-7"])[1] == outputs[7]
    # without ids the text decides; ids of other types count as their text form
    assert scrub([text]) == scrub(["other", text])[1:]
    as_int = pa.record_batch({"id": pa.array([7], pa.int64()), "text": [text]})
    assert PiiStage(PiiParams()).process(as_int, Columns()).kept["text"].to_pylist() == scrub([text], ["7"])


def test_text_type_and_other_columns_are_kept():
    batch = pa.record_batch(
        {
            "id": pa.array(["a"], pa.large_string()),
            "text": pa.array(["x 8.8.8.8"], pa.large_string()),
            "n": pa.array([3], pa.int64()),
        }
    )
    out = PiiStage(PiiParams(mode="both")).process(batch, Columns()).kept
    assert out.schema.field("text").type == pa.large_string() and out.column("n").to_pylist() == [3]
    assert out.column("pii_ips").type == pa.int32() and out.column("pii_ips").to_pylist() == [1]
    again = PiiStage(PiiParams(mode="both")).process(out, Columns()).kept  # decoys are public IPs, too
    assert again.schema.names == out.schema.names


def test_a_batch_containing_every_sentinel_is_matched_exactly():
    noise = "".join(_SENTINELS)
    assert (
        normalise(scrub([noise + " a@b.com 8.8.8.8 10.0.0.1"], ["d"])[0]) == noise + " <EMAIL> <IP> 10.0.0.1"
    )


@pytest.fixture(scope="module")
def real_documents(shared_data) -> pa.Table:
    """A third of the SpamAssassin e-mails (headers full of addresses and IPs) and of the web pages."""
    table = bench_pii.load_documents(shared_data, 1)
    return table.take(pa.array(np.arange(0, table.num_rows, 3)))


def test_same_spans_as_datatrove_on_real_text(real_documents):
    """Every document byte-identical to datatrove's PIIFormatter output once decoys are one token each,
    the same counts, and within each document the same decoy sequence up to its starting point."""
    if not bench_pii.BENCH_PYTHON.exists():
        pytest.skip(f"datatrove's environment {bench_pii.BENCH_PYTHON} is not installed")
    texts = real_documents.column("text").to_pylist()
    theirs = bench_pii.run_datatrove(texts)
    output = PiiStage(PiiParams(mode="both")).process(real_documents.to_batches()[0], Columns())
    ours = output.kept.column("text").to_pylist()
    assert sum(theirs["emails"]) > 10_000 and sum(theirs["ips"]) > 1_000
    mismatches = [
        i for i, (a, b) in enumerate(zip(ours, theirs["texts"], strict=True)) if normalise(a) != normalise(b)
    ]
    assert mismatches == [], texts[mismatches[0]][:2000]
    assert output.kept.column("pii_emails").to_pylist() == theirs["emails"]
    assert output.kept.column("pii_ips").to_pylist() == theirs["ips"]
    for a, b in zip(ours, theirs["texts"], strict=True):
        for decoys in (EMAIL_REPLACEMENTS, IP_REPLACEMENTS):
            assert is_rotation(decoy_indices(a, decoys), decoy_indices(b, decoys), len(decoys))
    assert output.counters["emails_replaced"] == sum(theirs["emails"])
    assert output.counters["ips_replaced"] == sum(theirs["ips"])
    assert output.counters["docs_touched"] == sum(a != b for a, b in zip(texts, ours, strict=True))


def test_same_spans_as_datatrove_on_random_strings():
    """20,000 short strings built from the pieces the regexes and word boundaries care about."""
    if not bench_pii.BENCH_PYTHON.exists():
        pytest.skip(f"datatrove's environment {bench_pii.BENCH_PYTHON} is not installed")
    pieces = [*"ab1290.@-_!#%+[]: ", "é", "\u0301", "²", "‿", "联", "：", "ü", "\u200d", "Ⓐ", "½"]
    pieces += ["25", "255.", "1.", "8.8.", "10.", "x@y.com", "@[1.2.3.4]"]
    rng = np.random.default_rng(5)
    texts = ["".join(rng.choice(pieces, size=rng.integers(1, 60))) for _ in range(20_000)]
    theirs = bench_pii.run_datatrove(texts)
    assert sum(theirs["emails"]) > 5_000 and sum(theirs["ips"]) > 5_000
    output = PiiStage(PiiParams(mode="both")).process(
        pa.record_batch({"id": [str(i) for i in range(len(texts))], "text": texts}), Columns()
    )
    ours = output.kept.column("text").to_pylist()
    assert [normalise(t) for t in ours] == [normalise(t) for t in theirs["texts"]]
    assert output.kept.column("pii_emails").to_pylist() == theirs["emails"]
    assert output.kept.column("pii_ips").to_pylist() == theirs["ips"]


# -- the command ---------------------------------------------------------------------------------------
def run(*args) -> None:
    result = CliRunner().invoke(app, ["pii", *[str(a) for a in args]])
    assert result.exit_code == 0, result.output


def read(directory: Path) -> pl.DataFrame:
    return pl.read_parquet(sorted(directory.glob("part-*.parquet"))).sort("id")


@pytest.fixture
def corpus(tmp_path) -> Path:
    texts = ["write to a@b.com from 8.8.8.8", "nothing here", "lan 10.0.0.1 only", "c@d.org, e@f.net 1.1.1.1"]
    directory = tmp_path / "in"
    for f in range(2):
        write_parquet(
            directory / f"{f}.parquet",
            pa.table({"id": [f"{f}-{i}" for i in range(40)], "text": [texts[i % 4] for i in range(40)]}),
        )
    return directory


def test_command_replaces_counts_and_does_not_depend_on_the_split(corpus, tmp_path):
    run(corpus, "-o", tmp_path / "one", "-q")
    replaced = read(tmp_path / "one")
    assert replaced["text"].str.contains("@b.com|8.8.8.8|@d.org|1.1.1.1").sum() == 0
    assert replaced["text"].str.contains("10.0.0.1").sum() == 20
    stats = json.loads((tmp_path / "one" / "_stats.json").read_text())
    assert (stats["emails_replaced"], stats["ips_replaced"], stats["docs_touched"]) == (60, 40, 40)

    for task in range(3):  # three array tasks over 2-row units, and two workers
        run(corpus, "-o", tmp_path / "split", "-q", "--max-rows-per-shard", 2, "--shard-index", task,
            "--num-shards", 3)  # fmt: skip
    run(
        corpus, "-o", tmp_path / "workers", "-q", "--max-rows-per-shard", 7, "--workers", 2, "--batch-size", 3
    )
    assert read(tmp_path / "split").equals(replaced) and read(tmp_path / "workers").equals(replaced)
    assert json.loads((tmp_path / "split" / "_stats.json").read_text())["ips_replaced"] == 40


def test_annotate_mode_keeps_the_text_and_adds_counts(corpus, tmp_path):
    run(corpus, "-o", tmp_path / "out", "-q", "--mode", "annotate", "--no-ips")
    out = read(tmp_path / "out")
    source = pl.read_parquet(sorted(corpus.glob("*.parquet"))).sort("id")
    assert out["text"].equals(source["text"]) and "pii_ips" not in out.columns
    assert out["pii_emails"].to_list() == [[1, 0, 0, 2][int(i.split("-")[1]) % 4] for i in out["id"]]
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert (stats["emails_found"], stats["docs_with_pii"]) == (60, 40) and "ips_found" not in stats


def test_custom_decoys(corpus, tmp_path):
    run(
        corpus,
        "-o",
        tmp_path / "out",
        "-q",
        "--ip-replacements",
        "192.0.2.1",
        "--email-replacements",
        "x@y.z",
    )
    texts = read(tmp_path / "out")["text"].to_list()
    assert "write to x@y.z from 192.0.2.1" in texts and "x@y.z, x@y.z 192.0.2.1" in texts


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--no-emails", "--no-ips"], "nothing to do"),
        (["--ip-replacements", ""], "--ip-replacements needs at least one"),
        (["--mode", "redact"], "redact"),
    ],
)
def test_usage_errors(corpus, tmp_path, args, message):
    result = CliRunner().invoke(app, ["pii", str(corpus), "-o", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("part-*"))


def test_output_to_stdout(corpus):
    result = CliRunner().invoke(app, ["pii", str(corpus / "0.parquet"), "-o", "-", "-q"])
    assert result.exit_code == 0
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 40 and not any("a@b.com" in row["text"] for row in rows)
    assert pq.read_table(corpus / "0.parquet").num_rows == 40
