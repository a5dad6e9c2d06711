"""Benchmark MinHash dedup against datasketch and datatrove in one run, on the same documents and shingles.

1. Signature throughput on N real documents (../shared/data/english/misc.parquet), word 5-grams after curate's
   normalisation, 112 permutations:
     curate         normalise + shingle + signatures + band keys (numba, all cores)
     datasketch     curate's normalisation, then MinHash(num_perm=112, scheme="affine64", hashfunc=xxh64)
                    .update_batch(the 5-gram strings of the same words)        target: curate ≥ 5x
     kernel only    both fed the same precomputed uint64 shingle hashes
     datatrove      MinhashDedupSignature (its own normalisation/tokenizer, 14x8 = 112 hashes), run by
                    ../.venv-bench's python as a subprocess on the same documents  target: curate ≥ 20x
2. End to end: `curate dedup minhash` on 100k real documents (english/misc + udhr + spamassassin + web pages,
   topped up with perturbed copies): docs/s and peak RSS (/usr/bin/time).
3. Scale: `curate dedup minhash` on synthetic documents (default 1M): time and peak RSS.
4. Exact dedup (--exact N): `curate dedup exact` on N real documents (the corpus of 2, whose unperturbed
   copies are exact duplicates) split into 4 input units and 4 hash partitions, --workers 1 vs --workers 2:
   seconds per pass, the ratio, peak RSS, and whether the outputs are byte-identical.

Usage: .venv/bin/python scripts/bench_dedup.py [--docs 3000] [--e2e 100000] [--scale 1000000] [--exact 0]
       [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash

from curate.io.output import file_checksum
from curate.stages.dedup.minhash_dedup import SignatureComputer
from curate.stages.dedup.params import SignatureParams
from curate.stages.dedup.shingles import normalize, shingle_hashes

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"
NUM_PERM = 112

DATATROVE_SCRIPT = r"""
import json, sys, time
from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupSignature
texts = [json.loads(line)["text"] for line in open(sys.argv[1])]
docs = lambda: iter([Document(text=t, id=str(i)) for i, t in enumerate(texts)])
warm = MinhashDedupSignature(output_folder=sys.argv[2] + "/warm", config=MinhashConfig())
warm.run(iter([Document(text=t, id=str(i)) for i, t in enumerate(texts[:20])]), rank=0, world_size=1)
step = MinhashDedupSignature(output_folder=sys.argv[2] + "/run", config=MinhashConfig())
started = time.perf_counter()
step.run(docs(), rank=0, world_size=1)
print(json.dumps({"seconds": time.perf_counter() - started, "docs": len(texts)}))
"""


def load_uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def real_texts(limit: int) -> list[str]:
    frame = pl.read_parquet(DATA / "english" / "misc.parquet").filter(pl.col("text").str.len_chars() > 200)
    return frame["text"].head(limit).to_list()


def bench_signatures(texts: list[str]) -> dict:
    params = SignatureParams(num_perm=NUM_PERM, verify=False)
    computer = SignatureComputer(params)
    array = pa.array(texts)
    computer.band_keys(array[:50])  # JIT warm-up (numba cache)
    started = time.perf_counter()
    computer.band_keys(array)
    curate_s = time.perf_counter() - started

    started = time.perf_counter()
    normalized = normalize(array, params.normalization())
    normalize_s = time.perf_counter() - started  # charged to datasketch too: it gets the same normalised words
    hashes, offsets = shingle_hashes(normalized, "words", 5)
    started = time.perf_counter()
    from curate.stages.dedup.minhash import signatures

    signatures(hashes, offsets, computer.a, computer.b)
    kernel_s = time.perf_counter() - started

    started = time.perf_counter()
    for text in normalized.to_pylist():
        words = text.split()
        grams = [" ".join(words[i : i + 5]).encode() for i in range(max(len(words) - 4, 1))] if words else []
        m = MinHash(num_perm=NUM_PERM, scheme="affine64", hashfunc=xxhash.xxh64_intdigest)
        m.update_batch(grams)
    datasketch_s = time.perf_counter() - started + normalize_s

    started = time.perf_counter()
    for d in range(len(texts)):
        m = MinHash(num_perm=NUM_PERM, scheme="affine64", hashfunc=int)
        m.update_batch(hashes[offsets[d] : offsets[d + 1]].tolist())
    datasketch_kernel_s = time.perf_counter() - started
    n = len(texts)
    return {
        "docs": n, "shingles": len(hashes),
        "curate_docs_per_s": round(n / curate_s, 1),
        "datasketch_docs_per_s": round(n / datasketch_s, 1),
        "speedup_vs_datasketch": round(datasketch_s / curate_s, 1),
        "kernel_curate_docs_per_s": round(n / kernel_s, 1),
        "kernel_datasketch_docs_per_s": round(n / datasketch_kernel_s, 1),
        "kernel_speedup_vs_datasketch": round(datasketch_kernel_s / kernel_s, 1),
        "curate_seconds": round(curate_s, 3),
    }


def bench_datatrove(texts: list[str], work: Path, curate_docs_per_s: float) -> dict:
    if not BENCH_PYTHON.exists():
        return {"skipped": f"{BENCH_PYTHON} not found"}
    docs = work / "datatrove-docs.jsonl"
    with open(docs, "w") as fh:
        for text in texts:
            fh.write(json.dumps({"text": text}) + "\n")
    result = subprocess.run([str(BENCH_PYTHON), "-c", DATATROVE_SCRIPT, str(docs), str(work / "datatrove")],
                            capture_output=True, text=True, check=True)
    timing = json.loads(result.stdout.strip().splitlines()[-1])
    rate = timing["docs"] / timing["seconds"]
    return {"datatrove_docs_per_s": round(rate, 1), "speedup_vs_datatrove": round(curate_docs_per_s / rate, 1)}


def perturbed(text: str, rng: np.random.Generator, rate: float) -> str:
    words = text.split()
    for i in np.nonzero(rng.random(len(words)) < rate)[0]:
        words[i] = words[rng.integers(len(words))]
    return " ".join(words)


def e2e_corpus(path: Path, total: int) -> Path:
    texts: list[str] = []
    for name in ("english/misc.parquet", "udhr/paragraphs.parquet", "spamassassin/emails.parquet",
                 "web/trafilatura_pages.parquet"):
        texts += pl.read_parquet(DATA / name)["text"].to_list()
    texts = texts[:total]
    rng = np.random.default_rng(0)
    while len(texts) < total:
        texts.append(perturbed(texts[rng.integers(len(texts))], rng, rng.choice([0.0, 0.02, 0.1])))
    pq.write_table(pa.table({"id": [f"doc-{i:08d}" for i in range(total)], "text": texts}), path)
    return path


def synthetic_corpus(directory: Path, total: int, per_file: int = 100_000) -> Path:
    """Zipf-distributed words from a 50k vocabulary, 50-400 words per document, 5% near-duplicate copies."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    vocabulary = np.array(["".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(2, 10)))
                           for _ in range(50_000)])
    for start in range(0, total, per_file):
        n = min(per_file, total - start)
        lengths = rng.integers(50, 400, n)
        words = vocabulary[np.minimum(rng.zipf(1.2, lengths.sum()) - 1, len(vocabulary) - 1)]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        texts = [" ".join(words[bounds[i] : bounds[i + 1]]) for i in range(n)]
        for i in np.nonzero(rng.random(n) < 0.05)[0]:
            texts[i] = perturbed(texts[rng.integers(n)], rng, 0.02)
        ids = [f"syn-{start + i:09d}" for i in range(n)]
        pq.write_table(pa.table({"id": ids, "text": texts}), directory / f"part-{start // per_file:04d}.parquet")
    return directory


def timed_dedup(kind: str, args: list[str]) -> tuple[dict, float]:
    """`curate dedup KIND ARGS --json`: its summary and peak RSS in MB (largest process, /usr/bin/time)."""
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "curate", "dedup", kind, *args, "--json", "-q"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode:
        raise RuntimeError(result.stderr[-2000:])
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return json.loads(result.stdout.strip().splitlines()[-1]), round(rss_kb / 1024, 1)


def run_curate(args: list[str]) -> dict:
    summary, rss_mb = timed_dedup("minhash", args)
    return {"command": "curate dedup minhash " + " ".join(args), "docs_in": summary["docs_in"],
            "docs_out": summary["docs_out"], "seconds": summary["wall_seconds"],
            "docs_per_s": round(summary["docs_in"] / summary["wall_seconds"], 1),
            "peak_rss_mb": rss_mb,
            "signatures_s": summary["signatures"]["wall_seconds"], "cluster_s": summary["cluster"]["wall_seconds"],
            "clusters": summary["cluster"]["clusters"]}


def shard_checksums(out: Path) -> dict[str, str]:
    return {p.name: file_checksum(p) for p in sorted(out.glob("part-*.parquet"))}


def bench_exact(corpus: Path, documents: int, work: Path) -> dict:
    """`curate dedup exact` with 1 and 2 workers: 4 units in every pass (a pool of 2 has work to share)."""
    split = ["--max-rows-per-shard", str(-(-documents // 4)), "--partition-rows", str(-(-documents // 4))]
    report: dict = {"command": f"curate dedup exact {corpus.name} -o OUT " + " ".join(split) + " --workers W"}
    for workers in (1, 2):
        out = work / f"exact-{workers}"
        summary, rss_mb = timed_dedup("exact", [str(corpus), "-o", str(out), *split, "--workers", str(workers),
                                                "--overwrite"])
        report[f"workers_{workers}"] = {
            "seconds": summary["wall_seconds"], "docs_per_s": round(summary["docs_in"] / summary["wall_seconds"], 1),
            "keys_s": summary["keys"]["wall_seconds"], "groups_s": summary["groups"]["wall_seconds"],
            "filter_s": round(summary["wall_seconds"] - summary["keys"]["wall_seconds"]
                              - summary["groups"]["wall_seconds"], 3),
            "partitions": summary["groups"]["units"], "docs_in": summary["docs_in"], "docs_out": summary["docs_out"],
            "peak_rss_mb": rss_mb,
        }
    report["speedup_2_vs_1"] = round(report["workers_1"]["seconds"] / report["workers_2"]["seconds"], 2)
    report["identical_output"] = shard_checksums(work / "exact-1") == shard_checksums(work / "exact-2")
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=3000, help="documents for the signature comparison (0: skip)")
    parser.add_argument("--e2e", type=int, default=100_000, help="documents for the end-to-end run (0: skip)")
    parser.add_argument("--scale", type=int, default=1_000_000, help="synthetic documents for the scale run (0: skip)")
    parser.add_argument("--exact", type=int, default=0,
                        help="documents for exact dedup, --workers 1 vs 2 (0: skip)")
    parser.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-dedup-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": f"{os.cpu_count()} cores", "load_before": load_uptime()}

    if args.docs:
        texts = real_texts(args.docs)
        report["signatures"] = bench_signatures(texts)
        report["signatures"].update(bench_datatrove(texts, work, report["signatures"]["curate_docs_per_s"]))
        print(json.dumps({"signatures": report["signatures"]}, indent=2), flush=True)

    if args.e2e:
        corpus = e2e_corpus(work / "e2e.parquet", args.e2e)
        report["end_to_end"] = run_curate([str(corpus), "-o", str(work / "e2e-out"), "--overwrite"])
        print(json.dumps({"end_to_end": report["end_to_end"]}, indent=2), flush=True)
    if args.scale:
        corpus = synthetic_corpus(work / "synthetic", args.scale)
        report["scale"] = run_curate([str(corpus), "-o", str(work / "scale-out"), "--overwrite"])
        report["scale_no_verify"] = run_curate([str(corpus), "-o", str(work / "scale-out-nv"), "--overwrite",
                                                "--no-verify"])
        print(json.dumps({"scale": report["scale"], "scale_no_verify": report["scale_no_verify"]}, indent=2),
              flush=True)
    if args.exact:
        corpus = e2e_corpus(work / "exact.parquet", args.exact)
        report["exact"] = bench_exact(corpus, args.exact, work)
        print(json.dumps({"exact": report["exact"]}, indent=2), flush=True)
    report["load_after"] = load_uptime()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
