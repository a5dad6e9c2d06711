"""Benchmark `curate quality` against datatrove's Gopher/C4/FineWeb filters on the same documents.

Usage:
    .venv/bin/python scripts/bench_quality.py [--data ../shared/data] [--misc-docs 2000] [--json]

Documents: the trafilatura web pages plus a sample of english/misc.parquet (every source). Both tools run
the four filters at their default (published) thresholds with English settings on every document (the
`lang` column is dropped: datatrove's filters take one language per instance). datatrove runs in a
subprocess with .venv-bench's python (it is a benchmark-only dependency), one document at a time
through GopherQuality -> GopherRepetition -> C4Quality -> FineWebQuality, each filter on the original text,
as its pipeline does (its spaCy word split is cached across the filters of one document). curate runs one
QualityStage in annotate mode over Arrow batches, pinned to one core (POLARS_MAX_THREADS=1,
NUMBA_NUM_THREADS=1) for the per-core ratio, then with all cores. Prints docs/s, the ratio, per-filter
decision agreement and the most frequent disagreements.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILTERS = ["gopher-quality", "gopher-repetition", "c4", "fineweb"]


def load_documents(data: Path, misc_docs: int, path: Path) -> int:
    """Write the benchmark documents (id, text) to ``path``; returns their count."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    web = pq.read_table(data / "web" / "trafilatura_pages.parquet", columns=["id", "text"])
    misc = pq.read_table(data / "english" / "misc.parquet", columns=["id", "text", "source"])
    misc = misc.filter(pc.greater(pc.utf8_length(misc["text"]), 0))
    step = max(1, misc.num_rows // misc_docs)
    misc = misc.take(pa.array(range(0, misc.num_rows, step))[:misc_docs]).select(["id", "text"])
    table = pa.concat_tables([web, misc.cast(web.schema)])
    pq.write_table(table, path)
    return table.num_rows


# -- datatrove side (runs under .venv-bench) -------------------------------------------------------------
def datatrove_worker(docs_path: str, out_path: str) -> None:
    import pyarrow.parquet as pq
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    filters = {
        "gopher-quality": GopherQualityFilter(),
        "gopher-repetition": GopherRepetitionFilter(),
        "c4": C4QualityFilter(),
        "fineweb": FineWebQualityFilter(),
    }
    table = pq.read_table(docs_path)
    ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
    # warm-up: spaCy's tokenizer and nltk load lazily
    for f in filters.values():
        f.filter(Document(text="Warm up the tokenizer. " * 20, id="w"))
    decisions: dict[str, list] = {name: [] for name in filters}
    started = time.perf_counter()
    for doc_id, text in zip(ids, texts, strict=False):
        for name, f in filters.items():
            result = f.filter(Document(text=text, id=doc_id))
            ok = result if isinstance(result, bool) else result[0]
            decisions[name].append(None if ok else (result[1] if isinstance(result, tuple) else "removed"))
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(
        json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "decisions": decisions})
    )


# -- curate side ------------------------------------------------------------------------------------------
def run_curate(docs_path: Path, threads: int | None, out_path: Path) -> None:
    """Time curate in a fresh process so that the thread settings apply from the start."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if threads:
        env.update(POLARS_MAX_THREADS=str(threads), NUMBA_NUM_THREADS=str(threads))
    subprocess.run(
        [sys.executable, __file__, "--curate-worker", str(docs_path), str(out_path)], check=True, env=env
    )


def curate_worker(docs_path: str, out_path: str) -> None:
    import pyarrow.parquet as pq

    from curate.io.inputs import Columns
    from curate.stages.quality import QualityParams, QualityStage

    table = pq.read_table(docs_path)
    stage = QualityStage(QualityParams(mode="annotate", c4_remove_lines=False))  # each filter on the original text
    stage.process(table.slice(0, 20).to_batches()[0], Columns())  # warm-up: numba compilation / cache load
    started = time.perf_counter()
    reasons = []
    for batch in table.to_batches(max_chunksize=2000):
        reasons += stage.process(batch, Columns()).kept.column("quality_reasons").to_pylist()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sections = {"gopher-quality": "gopher_quality", "gopher-repetition": "gopher_repetition", "c4": "c4",
                "fineweb": "fineweb"}  # fmt: skip
    decisions = {
        name: [[r for r in doc if r.startswith(section + ":")] or None for doc in reasons]
        for name, section in sections.items()
    }
    Path(out_path).write_text(
        json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "decisions": decisions})
    )


def compare(ours: dict, theirs: dict, ids: list[str]) -> dict:
    report = {}
    all_ours, all_theirs = None, None
    for name in FILTERS:
        a = [d is None for d in ours["decisions"][name]]
        b = [d is None for d in theirs["decisions"][name]]
        all_ours = a if all_ours is None else [x and y for x, y in zip(all_ours, a, strict=False)]
        all_theirs = b if all_theirs is None else [x and y for x, y in zip(all_theirs, b, strict=False)]
        disagreements = {}
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            if x != y:
                key = f"curate {'keeps' if x else 'drops ' + ','.join(ours['decisions'][name][i])}" \
                      f" / datatrove {'keeps' if y else 'drops ' + theirs['decisions'][name][i]}"  # fmt: skip
                disagreements.setdefault(key, []).append(ids[i])
        report[name] = {
            "agreement": sum(x == y for x, y in zip(a, b, strict=False)) / len(a),
            "kept_curate": sum(a),
            "kept_datatrove": sum(b),
            "disagreements": {k: {"count": len(v), "examples": v[:3]} for k, v in disagreements.items()},
        }
    report["all four"] = {
        "agreement": sum(x == y for x, y in zip(all_ours, all_theirs, strict=False)) / len(all_ours),
        "kept_curate": sum(all_ours),
        "kept_datatrove": sum(all_theirs),
    }
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--misc-docs", type=int, default=2000)
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument(
        "--datatrove-result",
        type=Path,
        help="reuse datatrove's decisions and timing from this file if it exists, else save them there",
    )
    args = parser.parse_args()

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.parquet"
        n_docs = load_documents(args.data, args.misc_docs, docs)
        table = pq.read_table(docs)
        chars = sum(len(t) for t in table["text"].to_pylist())
        ids = table["id"].to_pylist()
        print(
            f"{n_docs} documents, {chars / n_docs:,.0f} chars on average; load: {os.getloadavg()}",
            file=sys.stderr,
        )
        runs = {}
        for label, threads in (("curate (1 thread)", 1), (f"curate ({os.cpu_count()} threads)", None)):
            run_curate(docs, threads, Path(tmp) / "curate.json")
            runs[label] = json.loads((Path(tmp) / "curate.json").read_text())
        result = args.datatrove_result or Path(tmp) / "dt.json"
        if not result.exists():
            subprocess.run(
                [args.bench_python, __file__, "--datatrove-worker", str(docs), str(result)], check=True
            )
        theirs = json.loads(result.read_text())

    dt_rate = n_docs / theirs["seconds"]
    print(f"\n{'tool':<24}{'docs/s':>10}{'seconds':>10}{'peak RSS MB':>14}{'vs datatrove':>14}")
    print(
        f"{'datatrove (1 process)':<24}{dt_rate:>10.1f}{theirs['seconds']:>10.2f}{theirs['peak_rss_mb']:>14.0f}{1:>14.1f}"
    )
    for label, run in runs.items():
        rate = n_docs / run["seconds"]
        print(
            f"{label:<24}{rate:>10.1f}{run['seconds']:>10.2f}{run['peak_rss_mb']:>14.0f}{rate / dt_rate:>14.1f}"
        )
    report = compare(runs["curate (1 thread)"], theirs, ids)
    print("\ndecision agreement (same keep/drop decision):")
    for name, row in report.items():
        print(f"  {name:<18} {100 * row['agreement']:6.2f}%   kept: curate {row['kept_curate']}, "
              f"datatrove {row['kept_datatrove']}")  # fmt: skip
        for key, value in sorted(row.get("disagreements", {}).items(), key=lambda kv: -kv[1]["count"])[:6]:
            print(f"      {value['count']:4d}  {key}  e.g. {value['examples'][:2]}")
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    if args.json:
        print(json.dumps({"docs": n_docs, "datatrove_docs_per_s": dt_rate,
                          "curate": {k: n_docs / v["seconds"] for k, v in runs.items()}, "agreement": report}))  # fmt: skip


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--datatrove-worker":
        datatrove_worker(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 4 and sys.argv[1] == "--curate-worker":
        curate_worker(sys.argv[2], sys.argv[3])
    else:
        main()
