"""curate extract on real crawled pages: WARC reading, record filtering, gold snippets, faults, the recipe."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
import time
import zlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.inputs import Columns
from curate.io.warc import decode_html, warc_records
from curate.stages.extract import ExtractParams, ExtractStage

_spec = importlib.util.spec_from_file_location("bench_extract", REPO / "scripts" / "bench_extract.py")
bench_extract = importlib.util.module_from_spec(_spec)
sys.path.insert(0, str(REPO / "scripts"))  # bench_extract imports bench_common
_spec.loader.exec_module(bench_extract)  # type: ignore[union-attr]

EXPECTED_REMOVED = {"not_response": 1033, "status_not_200": 12, "not_html": 6}  # warcinfo + requests; 404/301; PDFs


@pytest.fixture(scope="module")
def warc(shared_data) -> Path:
    return shared_data / "web" / "pages.warc.gz"


@pytest.fixture(scope="module")
def snippets(shared_data) -> dict:
    return bench_extract.gold(shared_data)


@pytest.fixture(scope="module")
def fineweb_warc(warc, tmp_path_factory) -> tuple[Path, list[dict]]:
    """recipes/fineweb-warc.yaml run through curate.recipes on the whole WARC file: (work dir, summaries).

    The recipe extracts with FineWeb's trafilatura; here its extract step uses curate's default, resiliparse,
    twenty times faster (trafilatura is checked on a sample of pages below)."""
    from curate.recipes import load_recipe, run_recipe

    work = tmp_path_factory.mktemp("fineweb-warc") / "work"
    recipe = load_recipe(REPO / "recipes" / "fineweb-warc.yaml", work_dir=str(work), inputs=[str(warc)],
                         io_overrides={"quiet": True})
    assert [s.name for s in recipe.stages] == ["extract", "urlfilter", "langid", "quality", "dedup-minhash", "pii"]
    extract = recipe.stages[0].params
    assert extract.extractor == "trafilatura"
    extract.extractor = "resiliparse"
    return work, run_recipe(recipe)


def members(warc: Path, count: int) -> list[bytes]:
    """The WARC file's first ``count`` gzip members (one per record), compressed, in order."""
    data, found, start = memoryview(warc.read_bytes()), [], 0
    while len(found) < count:
        member, end = zlib.decompressobj(31), start
        while not member.eof:
            piece = data[end : end + (1 << 16)]
            member.decompress(piece)
            end += len(piece)
        end -= len(member.unused_data)
        found.append(bytes(data[start:end]))
        start = end
    return found


def test_reader_gives_every_record_of_the_crawl(warc):
    kinds: dict = {}
    with open(warc, "rb") as raw:
        for _, row in warc_records(str(warc), raw, True, 1 << 21, pytest.fail):
            key = (row["warc_type"], row["status"], row["content_type"])
            kinds[key] = kinds.get(key, 0) + 1
            assert row["id"].startswith("<urn:uuid:")
    assert kinds == {("warcinfo", None, None): 1, ("request", None, None): 1032,
                     ("response", 200, "text/html"): 1032, ("response", 200, "application/pdf"): 6,
                     ("response", 404, "text/html"): 6, ("response", 301, "text/html"): 6}


def test_extract_counts_every_record_and_keeps_gold_snippets(fineweb_warc, snippets):
    """The recipe's first step: curate extract with its default extractor on the whole crawl."""
    work, summaries = fineweb_warc
    out, summary = work / "01-extract", summaries[0]
    assert summary["docs_in"] == 2083
    removed = summary["removed"]
    assert {k: removed[k] for k in EXPECTED_REMOVED} == EXPECTED_REMOVED
    assert summary["docs_out"] == 1032 - removed.get("no_text", 0)
    assert json.loads((out / "_stats.json").read_text())["removed"] == removed
    table = pq.read_table(out)
    assert table.column_names == ["id", "url", "date", "text", "title", "status", "content_type", "source"]
    assert set(table["status"].to_pylist()) == {200} and set(table["content_type"].to_pylist()) == {"text/html"}
    assert {Path(s).name for s in table["source"].to_pylist()} == {"pages.warc.gz"}
    kept, boilerplate = bench_extract.snippet_scores(table["id"].to_pylist(), table["text"].to_pylist(), snippets)
    print(f"resiliparse: gold kept {kept:.3f}, boilerplate kept {boilerplate:.3f}")
    assert kept >= 0.90 and boilerplate <= 0.25
    titles = dict(zip(table["url"].to_pylist(), table["title"].to_pylist(), strict=True))
    assert titles["https://www.adac.de/rund-ums-fahrzeug/tests/kindersicherheit/kindersitztest-2018/"] == (
        "ADAC Kindersitz-Test 2018 | ADAC")


def test_trafilatura_on_a_fixed_subset_from_an_html_column(warc, snippets, tmp_path):
    """FineWeb's extractor, on every 24th page (trafilatura is slow), read from a Parquet html column."""
    ids, html = bench_extract.html_pages(warc)
    chosen = [i for i in range(0, len(ids), 24) if ids[i] in snippets]
    table = pa.table({"id": [ids[i] for i in chosen], "body": [html[i] for i in chosen]})
    source = write_parquet(tmp_path / "pages.parquet", table)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(source), "-o", str(out), "--extractor", "trafilatura",
                                      "--html-column", "body", "--quiet"])
    assert result.exit_code == 0, result.output
    written = pq.read_table(out)
    assert "body" not in written.column_names and "title" in written.column_names
    kept, boilerplate = bench_extract.snippet_scores(
        written["id"].to_pylist(), written["text"].to_pylist(), snippets, pages=[ids[i] for i in chosen])
    print(f"trafilatura on {len(chosen)} pages: gold kept {kept:.3f}, boilerplate kept {boilerplate:.3f}")
    assert kept >= 0.90 and boilerplate <= 0.25


def _record(body: bytes, content_type: str = "text/html", status: str = "200 OK") -> bytes:
    http = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\r\n".encode() + body
    head = ("WARC/1.0\r\nWARC-Type: response\r\nWARC-Record-ID: <urn:uuid:test>\r\n"
            "WARC-Target-URI: http://example.com/\r\nWARC-Date: 2024-01-01T00:00:00Z\r\n"
            f"Content-Length: {len(http)}\r\n\r\n").encode()
    return gzip.compress(head + http + b"\r\n\r\n")


def _adac(warc: Path) -> str:
    _ids, html = bench_extract.html_pages(warc)
    return html[0]  # ADAC's child seat test, in German


@pytest.mark.parametrize(("encoding", "label"), [("cp1252", "utf-8"), ("cp1252", None), ("utf-8", "iso-8859-1")])
def test_non_utf8_and_mislabelled_pages_are_decoded(warc, tmp_path, encoding, label):
    """A German page as cp1252 labelled UTF-8 or unlabelled, and as UTF-8 labelled Latin-1."""
    page = _adac(warc).replace('<meta charset="utf-8">', "").encode("cp1252", "ignore").decode("cp1252")
    kind = f"text/html; charset={label}" if label else "text/html"
    (tmp_path / "one.warc.gz").write_bytes(_record(page.encode(encoding), kind))
    (tmp_path / "utf8.warc.gz").write_bytes(_record(page.encode("utf-8")))
    texts = []
    for name in ("one", "utf8"):
        out = tmp_path / f"out-{name}"
        result = CliRunner().invoke(app, ["extract", str(tmp_path / f"{name}.warc.gz"), "-o", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        texts.append(pq.read_table(out)["text"][0].as_py())
    assert texts[0] == texts[1] and "nützliche Tipps zum Einkauf" in texts[0]


@pytest.mark.parametrize(("label", "raw", "text"), [
    ("iso-8859-1", "Preis \x97 3 \x80".encode("latin-1"), "Preis — 3 €"),  # windows-1252's bytes, as browsers read them
    ("gb2312", "数据 \U00020000".encode("gb18030"), "数据 \U00020000"),  # a character only GB18030 has
])
def test_declared_charsets_are_read_as_browsers_read_them(label, raw, text):
    assert decode_html(b"<p>" + raw + b"</p>", label) == f"<p>{text}</p>"


def test_truncated_and_corrupt_warc_are_reported_and_skipped(warc, tmp_path):
    parts = members(warc, 401)
    flipped = bytearray(parts[4])  # the second page's response (warcinfo, request, response, request, …)
    flipped[len(flipped) // 2: len(flipped) // 2 + 8] = bytes(b ^ 0xFF for b in flipped[len(flipped) // 2:][:8])
    broken = tmp_path / "broken.warc.gz"
    body = b"".join(parts[:4]) + bytes(flipped) + b"".join(parts[5:400])
    broken.write_bytes(body + parts[400][: len(parts[400]) // 2])  # cut inside record 400

    failed = CliRunner().invoke(app, ["extract", str(broken), "-o", str(tmp_path / "fail"), "--quiet"])
    assert failed.exit_code == 3
    assert f"{broken}, record 4: corrupt gzip member" in failed.output

    out = tmp_path / "skip"
    result = CliRunner().invoke(app, ["extract", str(broken), "-o", str(out), "--on-error", "skip", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    errors = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    assert [(e["row"], e["error"].split(" (")[0]) for e in errors] == [
        (4, f"corrupt gzip member at byte {len(b''.join(parts[:4]))}"),
        (400, "truncated WARC: gzip member at byte " f"{len(body)} is cut short"),
    ]
    summary = json.loads(result.stdout)
    assert summary["docs_in"] == 399 and summary["errors_skipped"] == 2  # records 0-399, less the corrupt one


def test_bad_header_skips_one_record(warc, tmp_path):
    parts = members(warc, 9)
    bad = gzip.decompress(parts[3]).replace(b"Content-Length: ", b"Content-Length: x", 1)
    path = tmp_path / "bad.warc"  # uncompressed: reading resumes at the next WARC/1.0 line
    path.write_bytes(b"".join(gzip.decompress(p) for p in parts[:3]) + bad
                     + b"".join(gzip.decompress(p) for p in parts[4:9]))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(path), "-o", str(out), "--on-error", "skip", "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["docs_in"] == 8
    (error,) = [json.loads(line) for line in (out / "_errors.jsonl").read_text().splitlines()]
    assert error["row"] == 3 and "Content-Length" in error["error"]


def test_huge_page_is_capped(warc, tmp_path):
    page = _adac(warc)
    huge = page.replace("</body>", "<p>" + "filler words here " * 400_000 + "</p></body>")  # ~7 MB
    path = tmp_path / "huge.warc.gz"
    path.write_bytes(_record(huge.encode()))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["extract", str(path), "-o", str(out), "--max-html-bytes", "100000",
                                      "--json", "--quiet"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["html_truncated"] == 1
    assert "nützliche Tipps zum Einkauf" in pq.read_table(out)["text"][0].as_py()


def test_a_hanging_page_is_stopped_by_the_timeout(warc):
    stage = ExtractStage(ExtractParams(timeout=0.2))
    stage.setup()
    real = stage.extract
    assert real is not None

    def slow(html: str) -> tuple[str | None, str | None]:
        if "hang" in html:
            time.sleep(30)
        return real(html)

    stage.extract = slow
    page = _adac(warc)
    batch = pa.record_batch({"id": ["a", "b"], "html": [page, page + "<!-- hang -->"]})
    started = time.perf_counter()
    result = stage.process(batch, Columns("html", "id"))
    assert time.perf_counter() - started < 5
    assert result.kept["id"].to_pylist() == ["a"] and result.counters["removed"] == {"timeout": 1}


def test_fineweb_warc_recipe_runs_on_the_crawl(fineweb_warc):
    work, summaries = fineweb_warc
    assert summaries[0]["docs_out"] > 900 and summaries[2]["docs_out"] < summaries[1]["docs_out"]
    urls = summaries[1]  # every extracted page has its URL; the example word lists are about adult sites
    assert urls["docs_in"] == summaries[0]["docs_out"] and "no_url" not in urls.get("removed", {})
    assert urls["docs_out"] >= urls["docs_in"] - 5
    final = pq.read_table(work / "06-pii")
    assert 0 < final.num_rows < summaries[2]["docs_out"] and set(final["lang"].to_pylist()) == {"en"}
    assert {"id", "url", "text", "title", "source"} <= set(final.column_names)


def test_workers_and_array_tasks_give_the_single_run_output(warc, tmp_path):
    """Two WARC files (the crawl's first 240 records, split): --workers 2, and two array tasks run one after
    the other, write the same shards as one process."""
    parts = members(warc, 240)
    crawl = tmp_path / "crawl"
    crawl.mkdir()
    (crawl / "a.warc.gz").write_bytes(b"".join(parts[:120]))
    (crawl / "b.warc.gz").write_bytes(b"".join(parts[120:]))

    def shards(out: Path) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in sorted(out.glob("part-*.parquet"))}

    runs = {}
    for name, flags in (("one", []), ("workers", ["--workers", "2"])):
        result = CliRunner().invoke(app, ["extract", str(crawl), "-o", str(tmp_path / name), "--quiet", *flags])
        assert result.exit_code == 0, result.output
        runs[name] = shards(tmp_path / name)
    for index in (1, 0):
        result = CliRunner().invoke(app, ["extract", str(crawl), "-o", str(tmp_path / "tasks"), "--quiet",
                                          "--shard-index", str(index), "--num-shards", "2"])
        assert result.exit_code == 0, result.output
    runs["tasks"] = shards(tmp_path / "tasks")
    assert len(runs["one"]) == 2 and runs["one"] == runs["workers"] == runs["tasks"]
    assert (tmp_path / "tasks" / "_manifest.json").exists()
    assert pq.read_table(tmp_path / "one").num_rows > 100


def test_every_removal_has_its_reason_on_an_html_column(warc):
    """Parquet-style rows (status, content_type columns): each reason counted once, an empty batch is fine."""
    page = _adac(warc)
    batch = pa.record_batch({
        "id": ["ok", "404", "pdf", "empty", "short"],
        "html": [page, page, page, "<html><body></body></html>", "<html><body><p>Zum Inhalt</p></body></html>"],
        "status": pa.array([200, 404, 200, 200, 200], pa.int32()),
        "content_type": ["text/html", "text/html", "application/pdf", "TEXT/HTML", "application/xhtml+xml"],
    })
    stage = ExtractStage(ExtractParams(min_chars=20))
    result = stage.process(batch, Columns("html", "id"))
    assert result.kept["id"].to_pylist() == ["ok"]
    assert result.counters["removed"] == {"status_not_200": 1, "not_html": 1, "no_text": 1, "too_short": 1}
    assert stage.process(batch.slice(0, 0), Columns("html", "id")).kept.num_rows == 0
