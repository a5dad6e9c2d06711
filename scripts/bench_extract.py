"""Benchmark `curate extract` against the raw extractor calls and datatrove's WarcReader + Trafilatura.

Usage:
    .venv/bin/python scripts/bench_extract.py [--data ../shared/data] [--copies 4] [--skip-datatrove]

On ``web/pages.warc.gz`` (1,032 HTML pages among 2,083 WARC records), in one run on the same machine:

- the raw library: resiliparse's and trafilatura's own calls, with curate's settings, in a loop over the
  pages already decoded in memory (no reading, no writing: an upper bound for any wrapper);
- the raw library reading the WARC itself: FastWARC (resiliparse's own WARC reader, C++) and resiliparse's
  encoding detection, then the same call: the least a hand-written pipeline does;
- ``curate extract`` from the command line (one process), reading the WARC file and writing Parquet, for
  both extractors; with resiliparse on ``--copies`` copies of the file (a Common Crawl WARC file holds
  ~30,000 pages, so a run's start-up, ~2 s of imports, weighs as little as it does there), the raw loop
  then going over the pages as many times;
- datatrove's ``WarcReader`` → ``Trafilatura()`` → ``JsonlWriter`` (FineWeb's extraction), one task, in
  .venv-bench's python.

Prints HTML pages/s, the ratios (curate / raw library, curate / datatrove), peak RSS, and the share of the
gold main-content and boilerplate snippets (``web/trafilatura_pages.parquet``) each extractor's text keeps.
The gold helpers are shared with tests/test_extract.py.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import bench_common
import pyarrow.compute as pc
import pyarrow.parquet as pq

REPO = bench_common.REPO
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
WARC = "web/pages.warc.gz"


# -- gold snippets ----------------------------------------------------------------------------------------
def page_ids(warc: Path) -> dict[str, str]:
    """WARC-Record-ID → X-Page-Id (the id in trafilatura_pages.parquet) of every response."""
    with gzip.open(warc) as stream:
        found = re.findall(rb"WARC-Record-ID: (<[^>]+>)\r\nX-Page-Id: ([^\r]+)", stream.read())
    return {record.decode(): page.decode() for record, page in found}


def gold(data: Path) -> dict[str, dict]:
    """Gold snippets per WARC-Record-ID: {"with": [...], "without": [...]}."""
    pages = {r["id"]: r for r in pq.read_table(data / "web" / "trafilatura_pages.parquet").to_pylist()}
    return {record: {"with": pages[page]["with_snippets"] or [], "without": pages[page]["without_snippets"] or []}
            for record, page in page_ids(data / WARC).items() if page in pages}


def snippet_scores(ids: list[str], texts: list[str | None], snippets: dict[str, dict],
                   pages: list[str] | None = None) -> tuple[float, float]:
    """(share of main-content snippets found, share of boilerplate snippets found) over ``pages`` (default:
    every gold page); a page missing from ``ids`` (not extracted) keeps nothing. Whitespace is normalised."""
    by_id = {i: " ".join((t or "").split()) for i, t in zip(ids, texts, strict=True)}
    kept = kept_total = boiler = boiler_total = 0
    for page in pages if pages is not None else list(snippets):
        text = by_id.get(page, "")
        kept += sum(" ".join(s.split()) in text for s in snippets[page]["with"])
        kept_total += len(snippets[page]["with"])
        boiler += sum(" ".join(s.split()) in text for s in snippets[page]["without"])
        boiler_total += len(snippets[page]["without"])
    return kept / kept_total, boiler / boiler_total


def html_pages(warc: Path) -> tuple[list[str], list[str]]:
    """(record ids, decoded HTML) of the HTTP 200 HTML responses, as curate's WARC reader decodes them."""
    from curate.io.warc import warc_batches

    ids, html = [], []
    with open(warc, "rb") as raw:
        for batch, _ in warc_batches(str(warc), raw, True, 1000, 1 << 30, print):
            for row in batch.to_pylist():
                if row["status"] == 200 and row["content_type"] == "text/html":
                    ids.append(row["id"])
                    html.append(row["html"])
    return ids, html


# -- datatrove side (runs under .venv-bench) -------------------------------------------------------------
def datatrove_worker(folder: str, out: str) -> None:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.extractors import Trafilatura
    from datatrove.pipeline.readers import WarcReader
    from datatrove.pipeline.writers import JsonlWriter

    start = time.perf_counter()
    pipeline = [WarcReader(folder, glob_pattern="*.warc.gz"), Trafilatura(favour_precision=True),
                JsonlWriter(out, compression=None)]
    LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(Path(out) / "logs")).run()
    print(json.dumps({"seconds": time.perf_counter() - start}))


# -- curate side --------------------------------------------------------------------------------------------
def raw_library(html: list[str], extractor: str) -> tuple[float, float, list[str | None]]:
    """Wall and CPU seconds, and texts, of the library's own call over the pages (resiliparse: parse +
    extract)."""
    from curate.stages.extract import RESILIPARSE_SETTINGS, TRAFILATURA_SETTINGS

    if extractor == "resiliparse":
        from resiliparse.extract.html2text import extract_plain_text
        from resiliparse.parse.html import HTMLTree

        start, cpu = time.perf_counter(), time.process_time()
        texts = [extract_plain_text(HTMLTree.parse(page), **RESILIPARSE_SETTINGS) for page in html]
    else:
        from trafilatura import extract

        start, cpu = time.perf_counter(), time.process_time()
        texts = [extract(page, **TRAFILATURA_SETTINGS) for page in html]
    return time.perf_counter() - start, time.process_time() - cpu, texts


def raw_from_warc(paths: list[Path]) -> tuple[float, float, int]:
    """Wall and CPU seconds, and pages, of FastWARC + resiliparse over the WARC files (HTTP 200 HTML only)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from resiliparse.parse.html import HTMLTree

    from curate.stages.extract import RESILIPARSE_SETTINGS

    start, cpu, pages = time.perf_counter(), time.process_time(), 0
    for path in paths:
        with open(path, "rb") as stream:
            for record in ArchiveIterator(stream, record_types=WarcRecordType.response, parse_http=True):
                kind = (record.http_content_type or "").lower()
                if record.http_headers.status_code != 200 or kind not in ("text/html", "application/xhtml+xml"):
                    continue
                payload = record.reader.read()
                extract_plain_text(HTMLTree.parse(bytes_to_str(payload, detect_encoding(payload))), **RESILIPARSE_SETTINGS)
                pages += 1
    return time.perf_counter() - start, time.process_time() - cpu, pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=bench_common.SHARED)
    parser.add_argument("--copies", type=int, default=4, help="Copies of the WARC file for the resiliparse runs.")
    parser.add_argument("--skip-datatrove", action="store_true")
    parser.add_argument("--skip-trafilatura", action="store_true")
    parser.add_argument("--datatrove-worker", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.datatrove_worker:
        datatrove_worker(*args.datatrove_worker)
        return
    warc = args.data / WARC
    snippets = gold(args.data)
    ids, html = html_pages(warc)
    print(f"{warc}: {len(html):,} HTML pages; machine shared (load {os.getloadavg()[0]:.1f})")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        copies = Path(tmp) / "copies"
        copies.mkdir()
        for copy in range(args.copies):
            shutil.copyfile(warc, copies / f"pages-{copy}.warc.gz")
        runs = [("resiliparse", copies, args.copies)] + ([] if args.skip_trafilatura else [("trafilatura", warc, 1)])
        for extractor, inputs, times in runs:
            raw_seconds, raw_cpu, raw_texts = raw_library(html * times, extractor)
            raw_texts = raw_texts[: len(html)]
            out = Path(tmp) / extractor
            run = bench_common.run_measured(bench_common.curate_command(
                "extract", str(inputs), "-o", str(out), "--extractor", extractor, "--quiet"))
            table = pq.read_table(out, columns=["id", "text", "source"])
            first = table.filter(pc.equal(table["source"], table["source"][0]))  # one copy's pages
            pages = len(html) * times
            scores = snippet_scores(first["id"].to_pylist(), first["text"].to_pylist(), snippets)
            raw_scores = snippet_scores(ids, raw_texts, snippets)
            rows.append((extractor, pages / raw_seconds, pages / run.seconds, run.peak_rss_kb, scores, raw_scores))
            print(f"{extractor:12s} {pages:,} pages: raw {pages / raw_seconds:7.1f} pages/s | curate extract "
                  f"{pages / run.seconds:7.1f} pages/s ({raw_seconds / run.seconds:.2f}× raw; per CPU second "
                  f"{raw_cpu / run.cpu:.2f}× raw), "
                  f"peak RSS {run.peak_rss_kb / 1024:.0f} MiB | gold kept {scores[0]:.3f} (raw {raw_scores[0]:.3f}), "
                  f"boilerplate kept {scores[1]:.3f} (raw {raw_scores[1]:.3f})")
            if extractor == "resiliparse":
                warc_seconds, warc_cpu, warc_pages = raw_from_warc(sorted(copies.iterdir()))
                print(f"{'':12s} FastWARC + resiliparse from the WARC files: {warc_pages / warc_seconds:7.1f} pages/s; "
                      f"curate extract {warc_seconds / run.seconds:.2f}× of it (per CPU second {warc_cpu / run.cpu:.2f}×)")
        if not args.skip_datatrove:
            folder = Path(tmp) / "warc"
            folder.mkdir()
            (folder / "pages.warc.gz").symlink_to(warc.resolve())
            command = [str(BENCH_PYTHON), str(Path(__file__).resolve()), "--datatrove-worker", str(folder),
                       str(Path(tmp) / "datatrove")]
            run = bench_common.run_measured(command, env=bench_common.child_env())
            written = [json.loads(line) for path in sorted((Path(tmp) / "datatrove").glob("*.jsonl"))
                       for line in path.read_text().splitlines()]
            dt_scores = snippet_scores([d["id"] for d in written], [d["text"] for d in written], snippets)
            dt_rate = len(html) / run.seconds
            print(f"datatrove WarcReader+Trafilatura {dt_rate:7.1f} pages/s, peak RSS {run.peak_rss_kb / 1024:.0f} MiB, "
                  f"{len(written):,} documents | gold kept {dt_scores[0]:.3f}, boilerplate kept {dt_scores[1]:.3f}")
            for extractor, _raw, rate, _rss, _scores, _ in rows:
                print(f"curate extract --extractor {extractor} / datatrove: {rate / dt_rate:.2f}×")


if __name__ == "__main__":
    sys.exit(main())
