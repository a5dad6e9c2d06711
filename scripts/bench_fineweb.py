"""Side by side: `recipes/fineweb-en.yaml` against datatrove's FineWeb filter chain on the same documents.

Usage:
    .venv/bin/python scripts/bench_fineweb.py [--data ../shared/data] [--docs 5000] [--json]

Documents: every trafilatura web page, plus samples of the SpamAssassin e-mails, english/misc.parquet
(every source: forums, reviews, wikitext, Common Crawl, speeches) and the UDHR translations (other
languages, which language ID must drop), ``--docs`` in all.

datatrove runs in a subprocess under .venv-bench's python (a benchmark-only dependency), one document at a
time through FineWeb's chain as `examples/fineweb.py` builds it: LanguageFilter(en, 0.65) ->
GopherRepetitionFilter -> GopherQualityFilter -> C4QualityFilter(filter_no_terminal_punct=False) ->
FineWebQualityFilter, every filter on the text the previous one left. Its language model is curate's
bundled lid.176.ftz (datatrove would download lid.176.bin; there is no network here), so both use the
same model. curate runs the recipe's langid and quality steps (`curate run ... --stage N`) in fresh
processes, one worker, one thread (POLARS_MAX_THREADS=1, NUMBA_NUM_THREADS=1) for the per-core ratio.

`--write-golden tests/data/fineweb_chain.json` records datatrove's verdicts on a fixed set of English
documents for tests/test_fineweb_fidelity.py, which then checks curate against them without datatrove.

Prints: kept-set agreement, byte equality of the texts both keep, removals per filter side by side, the
documents they disagree on, and docs/s of both with the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "fineweb-en.yaml"
CHAIN = ["langid", "gopher-repetition", "gopher-quality", "c4", "fineweb"]


def load_documents(data: Path, total: int, path: Path) -> int:
    """Write the benchmark documents (id, text) to ``path``; returns their count."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    def sample(table: pa.Table, n: int, prefix: str) -> pa.Table:
        table = table.filter(pc.greater(pc.utf8_length(table["text"]), 0))
        step = max(1, table.num_rows // max(n, 1))
        table = table.take(pa.array(range(0, table.num_rows, step))[:n])
        ids = pc.binary_join_element_wise(prefix, pc.cast(table["id"], pa.string()), "")
        return pa.table({"id": ids, "text": pc.cast(table["text"], pa.string())})

    web = pq.read_table(data / "web" / "trafilatura_pages.parquet", columns=["id", "text"])
    rest = max(total - web.num_rows, 0)
    parts = [
        sample(web, web.num_rows, "web/"),
        sample(pq.read_table(data / "spamassassin" / "emails.parquet", columns=["id", "text"]), rest * 4 // 10, "mail/"),
        sample(pq.read_table(data / "english" / "misc.parquet", columns=["id", "text"]), rest * 5 // 10, "misc/"),
        sample(pq.read_table(data / "udhr" / "documents.parquet", columns=["id", "text"]), rest // 10, "udhr/"),
    ]
    table = pa.concat_tables(parts)
    pq.write_table(table, path)
    return table.num_rows


# -- datatrove side (runs under .venv-bench) -------------------------------------------------------------
def datatrove_worker(docs_path: str, out_path: str, model: str | None) -> None:
    import datatrove.utils.lid as lid
    import pyarrow.parquet as pq
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
        LanguageFilter,
    )

    lid.cached_asset_path_or_download = lambda *args, **kwargs: model  # the same model, offline
    chain = {
        **({"langid": LanguageFilter(languages=["en"], language_threshold=0.65)} if model else {}),
        "gopher-repetition": GopherRepetitionFilter(),
        "gopher-quality": GopherQualityFilter(),
        "c4": C4QualityFilter(filter_no_terminal_punct=False),
        "fineweb": FineWebQualityFilter(),
    }
    table = pq.read_table(docs_path)
    ids, texts = table["id"].to_pylist(), table["text"].to_pylist()
    for f in chain.values():  # warm-up: the model, spaCy and nltk load lazily
        f.filter(Document(text="Warm up the tokenizer. " * 20, id="w"))
    results = {}
    started = time.perf_counter()
    for doc_id, text in zip(ids, texts, strict=True):
        doc = Document(text=text, id=doc_id)
        verdict = None
        for name, f in chain.items():
            result = f.filter(doc)
            if not (result if isinstance(result, bool) else result[0]):
                verdict = [name, result[1] if isinstance(result, tuple) else ""]
                break
        results[doc_id] = {"removed": verdict, "text": None if verdict else doc.text}
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    Path(out_path).write_text(json.dumps({"seconds": seconds, "peak_rss_mb": peak_mb, "docs": results}))


# -- curate side ------------------------------------------------------------------------------------------
def run_curate(docs: Path, work: Path) -> dict:
    """The recipe's langid and quality steps, each in a fresh process on one core; kept texts and stats."""
    import pyarrow.parquet as pq

    env = dict(os.environ, PYTHONPATH=str(REPO), POLARS_MAX_THREADS="1", NUMBA_NUM_THREADS="1")
    seconds, stats = 0.0, {}
    for step in ("1", "2"):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "curate", "run", str(RECIPE), "--input", str(docs), "--work-dir", str(work),
             "--stage", step, "--workers", "1", "-q"],
            check=True, env=env,
        )  # fmt: skip
        seconds += time.perf_counter() - started
    dirs = sorted(p for p in work.iterdir() if p.is_dir() and p.name[:2].isdigit())
    for stage_dir in dirs[:2]:
        stats[stage_dir.name] = json.loads((stage_dir / "_stats.json").read_text())
    kept = pq.read_table(dirs[1], columns=["id", "text"]).to_pydict()
    in_stage = sum(s.get("seconds", 0.0) for s in stats.values())
    return {"seconds": seconds, "stage_seconds": in_stage, "stats": stats,
            "kept": dict(zip(kept["id"], kept["text"], strict=True))}  # fmt: skip


def compare(ours: dict, theirs: dict) -> dict:
    ids = list(theirs["docs"])
    their_kept = {i for i in ids if theirs["docs"][i]["removed"] is None}
    our_kept = set(ours["kept"])
    both = our_kept & their_kept
    same_text = [i for i in both if ours["kept"][i] == theirs["docs"][i]["text"]]
    removed_theirs: dict[str, int] = {}
    for doc in theirs["docs"].values():
        if doc["removed"]:
            removed_theirs[doc["removed"][0]] = removed_theirs.get(doc["removed"][0], 0) + 1
    langid_stats, quality_stats = list(ours["stats"].values())
    removed_ours = {"langid": langid_stats["docs_in"] - langid_stats["docs_out"],
                    **quality_stats.get("removed_in_order", {})}  # fmt: skip
    return {
        "docs": len(ids),
        "agreement": sum((i in our_kept) == (i in their_kept) for i in ids) / len(ids),
        "kept_curate": len(our_kept),
        "kept_datatrove": len(their_kept),
        "kept_both": len(both),
        "identical_text": len(same_text) / max(len(both), 1),
        "removed": {name: [removed_ours.get(name, 0), removed_theirs.get(name, 0)] for name in CHAIN},
        "only_curate_keeps": sorted(our_kept - their_kept),
        "only_datatrove_keeps": {i: theirs["docs"][i]["removed"] for i in sorted(their_kept - our_kept)},
        "text_differs": sorted(set(both) - set(same_text)),
    }


def golden_documents(data: Path):
    """The fixed real documents of tests/data/fineweb_chain.json (English web pages, e-mails, misc)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    parts = []
    for name, step in (("web/trafilatura_pages", 3), ("spamassassin/emails", 20), ("english/misc", 60)):
        table = pq.read_table(data / f"{name}.parquet", columns=["id", "text"])
        table = table.take(pa.array(range(0, table.num_rows, step)))
        ids = pc.binary_join_element_wise(name.split("/")[0] + "/", pc.cast(table["id"], pa.string()), "")
        parts.append(pa.table({"id": ids, "text": pc.cast(table["text"], pa.string())}))
    return pa.concat_tables(parts)


def write_golden(data: Path, bench_python: str, target: Path) -> None:
    """datatrove's verdict (first failing filter) and xxh64 of the kept text for the golden documents."""
    import pyarrow.parquet as pq
    import xxhash

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.parquet"
        pq.write_table(golden_documents(data), docs)
        subprocess.run([bench_python, __file__, "--datatrove-worker", str(docs), str(Path(tmp) / "dt.json"), ""],
                       check=True)  # fmt: skip
        result = json.loads((Path(tmp) / "dt.json").read_text())["docs"]
    golden = {
        doc_id: {"removed": r["removed"][0] if r["removed"] else None,
                 "text_xxh64": None if r["removed"] else xxhash.xxh64_hexdigest(r["text"].encode())}
        for doc_id, r in result.items()
    }  # fmt: skip
    target.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"{target}: {len(golden)} documents, {sum(g['removed'] is None for g in golden.values())} kept")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--json", action="store_true", help="print the full report as JSON")
    parser.add_argument("--write-golden", type=Path, metavar="JSON",
                        help="write datatrove's verdicts on the test documents (tests/data/fineweb_chain.json)")
    parser.add_argument("--datatrove-result", type=Path,
                        help="reuse datatrove's result from this file if it exists, else save it there")  # fmt: skip
    args = parser.parse_args()
    if args.write_golden:
        write_golden(args.data, args.bench_python, args.write_golden)
        return

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs.parquet"
        n_docs = load_documents(args.data, args.docs, docs)
        print(f"{n_docs} documents; load: {os.getloadavg()}", file=sys.stderr)
        ours = run_curate(docs, Path(tmp) / "work")
        result = args.datatrove_result or Path(tmp) / "dt.json"
        if not result.exists():
            model = REPO / "curate" / "models" / "lid.176.ftz"
            subprocess.run([args.bench_python, __file__, "--datatrove-worker", str(docs), str(result), str(model)],
                           check=True)  # fmt: skip
        theirs = json.loads(result.read_text())
        shutil.rmtree(Path(tmp) / "work", ignore_errors=True)

    report = compare(ours, theirs)
    dt_rate = n_docs / theirs["seconds"]
    print(f"\n{'tool':<34}{'docs/s':>10}{'seconds':>10}{'vs datatrove':>14}")
    print(f"{'datatrove chain (1 process)':<34}{dt_rate:>10.1f}{theirs['seconds']:>10.2f}{1:>14.1f}")
    for label, seconds in (("curate, 1 core, wall (2 processes)", ours["seconds"]),
                           ("curate, 1 core, in-stage", ours["stage_seconds"])):  # fmt: skip
        rate = n_docs / seconds
        print(f"{label:<34}{rate:>10.1f}{seconds:>10.2f}{rate / dt_rate:>14.1f}")
    for name, stats in ours["stats"].items():
        print(f"  curate {name}: {stats.get('seconds', 0):.2f} s in the stage ({stats['docs_in']} docs in)")
    print(f"\nkeep/drop agreement: {100 * report['agreement']:.2f}% of {report['docs']} documents; kept: curate "
          f"{report['kept_curate']}, datatrove {report['kept_datatrove']}, both {report['kept_both']}")
    print(f"kept texts byte-identical: {100 * report['identical_text']:.2f}% of the {report['kept_both']} both keep")
    print(f"\n{'removed by':<20}{'curate':>8}{'datatrove':>11}")
    for name, (a, b) in report["removed"].items():
        print(f"{name:<20}{a:>8}{b:>11}")
    for key in ("only_curate_keeps", "only_datatrove_keeps", "text_differs"):
        if report[key]:
            print(f"\n{key}: {len(report[key])}, e.g. {list(report[key].items() if isinstance(report[key], dict) else report[key])[:8]}")
    print(f"load after: {os.getloadavg()}", file=sys.stderr)
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--datatrove-worker":
        datatrove_worker(sys.argv[2], sys.argv[3], sys.argv[4] or None)
    else:
        main()
