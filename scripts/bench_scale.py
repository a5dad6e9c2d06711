"""MinHash dedup at scale: the cluster and filter passes on generated signature stores of 1M-100M documents.

Writes a signatures store in the format of `curate dedup minhash signatures` (docs/dedup-format.md: 12 × 9
band keys of the default 0.8/112 parameters, shingle sets for --verify, and the `_plan.json` whose units the
cluster pass records for the filter) with planted duplicate clusters, plus matching document shards (ids
whose hashes are the store's id_hi/id_lo, a short text), part by part (never the whole store in memory).
Cluster sizes are Zipf-like (P(size = k) ∝ k^-a, a = 3 by default: about 61% of documents are singletons,
27% of documents are duplicates, the largest clusters hold thousands). The first document of a cluster has
all its cluster's band keys; every other member shares each band key with probability 1/2 (at least one), so
members are joined only through unions across bands (and across array tasks, which take every N-th band).
Decoy pairs of singletons share one band key but have disjoint shingle sets: verification must keep them apart.

Then runs the real `curate dedup minhash cluster` (with 1 task and with N array tasks run one after another,
`--num-shards N --shard-index i`) and `curate dedup minhash filter`, each pass and each task in its own process,
and prints wall seconds, CPU seconds (user + sys of the process and its workers), peak RSS (largest process)
and disk use. Checks that the clusters table is exactly the planted clusters (members, sizes, cluster ids,
the kept document; no decoy) and that the filter keeps one document per cluster.

    .venv/bin/python scripts/bench_scale.py --data /work/scale-data synthetic --docs 10000000 --tasks 1,4
    .venv/bin/python scripts/bench_scale.py --data /tmp/scale synthetic --docs 1000000 --tasks 1,3  # a quick check

Generated data stays under --data/N (reused by a later run with the same sizes) unless --clean.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bench_common import SHARED, child_env, curate_command, json_summary, run_measured

from curate.params import fingerprint
from curate.stages.dedup import store
from curate.stages.dedup.minhash import LshParams
from curate.stages.dedup.minhash_dedup import band_column
from curate.stages.dedup.params import SignatureParams

MIX = 0x9E3779B97F4A7C15


def fmix64(x: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection): distinct inputs, distinct well-spread keys."""
    x = x.astype(np.uint64, copy=True)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xFF51AFD7ED558CCD)
    x ^= x >> np.uint64(33)
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    x ^= x >> np.uint64(33)
    return x


@nb.njit(cache=True)
def _first_positions(labels, clusters):
    first = np.full(clusters, -1, np.int64)
    for i in range(len(labels)):
        if first[labels[i]] < 0:
            first[labels[i]] = i
    return first


class Plan:
    """Which planted cluster every document belongs to (a label per document, clusters shuffled across the
    corpus), each cluster's size and first document."""

    def __init__(self, docs: int, zipf: float, max_size: int, seed: int):
        rng = np.random.default_rng(seed)
        sizes = []
        total = 0
        while total < docs:
            draw = rng.zipf(zipf, 1 << 20)
            draw = draw[draw <= max_size]
            sizes.append(draw)
            total += int(draw.sum())
        size = np.concatenate(sizes)
        cut = int(np.searchsorted(np.cumsum(size), docs))
        size = size[: cut + 1]
        size[-1] -= int(size.sum()) - docs
        self.sizes = size.astype(np.int64)
        self.labels = np.repeat(np.arange(len(size), dtype=np.int32), size)
        rng.shuffle(self.labels)
        self.first = _first_positions(self.labels, len(size))
        singleton = self.sizes == 1
        pair = np.arange(len(size)) ^ 1
        # decoys: 1 in 100 pairs of neighbouring singleton labels share one band key, not their shingles
        self.decoy = singleton & singleton[np.minimum(pair, len(size) - 1)] & ((np.arange(len(size)) >> 1) % 100 == 0)

    def expected(self) -> dict:
        multi = self.sizes > 1
        return {"documents_in_clusters": int(self.sizes[multi].sum()), "clusters": int(np.count_nonzero(multi)),
                "duplicates_removed": int((self.sizes[multi] - 1).sum())}


def ids(start: int, stop: int) -> pa.Array:
    return pa.array([f"doc-{i:012d}" for i in range(start, stop)], pa.string())


def signature_part(plan: Plan, start: int, stop: int, bands: int, set_size: int, seed: int) -> pa.Table:
    """Rows start..stop of the signatures store (columns as written by the signatures pass)."""
    position = np.arange(start, stop, dtype=np.int64)
    label = plan.labels[start:stop].astype(np.int64)
    size = plan.sizes[label]
    root = plan.first[label] == position
    rng = np.random.default_rng([seed, start])
    forced = rng.integers(0, bands, len(label))
    id_hi, id_lo = store.hash128(ids(start, stop))
    columns = {"id_hi": id_hi, "id_lo": id_lo, "keep_value": np.zeros(len(label))}
    decoy = plan.decoy[label]
    decoy_band = (label >> 1) % bands
    for band in range(bands):
        salt = np.uint64((band + 1) * MIX % (1 << 64))
        shared = fmix64(fmix64(label.astype(np.uint64) * np.uint64(2)) ^ salt)
        private = fmix64(fmix64(position.astype(np.uint64) * np.uint64(2) + np.uint64(1)) ^ salt)
        shares = (size > 1) & (root | (forced == band) | (rng.random(len(label)) < 0.5))
        key = np.where(shares, shared, private)
        pairs = decoy & (decoy_band == band)
        key[pairs] = fmix64(fmix64((label[pairs] >> 1).astype(np.uint64) * np.uint64(2) + np.uint64(1 << 62)) ^ salt)
        key[key == 0] = 1  # 0 is "no shingles"
        columns[band_column(band)] = key
    # a cluster's members share one shingle set (Jaccard 1); other documents' sets are disjoint from theirs
    k = np.arange(set_size, dtype=np.uint64)
    values = fmix64(label.astype(np.uint64)[:, None] * np.uint64(set_size) + k[None, :] + np.uint64(seed << 40))
    values = np.sort(((values >> np.uint64(32)) & ~np.uint64(set_size - 1) | k).astype(np.uint32), axis=1)
    offsets = np.arange(len(label) + 1, dtype=np.int64) * set_size * 4
    table = pa.table(columns)
    return table.append_column("shingles", pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(label), [None, pa.py_buffer(offsets), pa.py_buffer(values.tobytes())]))


def generate(plan: Plan, root: Path, docs: int, part_rows: int, set_size: int, seed: int) -> None:
    params = SignatureParams()
    lsh = LshParams.choose(params.threshold, params.num_perm, params.false_positive_weight,
                           params.false_negative_weight, params.bands, params.rows)
    sigs, documents = root / "signatures", root / "documents"
    sigs.mkdir(parents=True, exist_ok=True)
    documents.mkdir(parents=True, exist_ok=True)
    for part, start in enumerate(range(0, docs, part_rows)):
        stop = min(docs, start + part_rows)
        pq.write_table(signature_part(plan, start, stop, lsh.bands, set_size, seed), sigs / f"part-{part:05d}.parquet")
        names = ids(start, stop)
        text = pa.array(np.char.add("synthetic document ", np.arange(start, stop).astype(str)))
        pq.write_table(pa.table({"id": names, "text": text}), documents / f"part-{part:05d}.parquet")
    header = {"kind": "signatures", "signature_parameters": fingerprint(params), "bands": lsh.bands,
              "rows": lsh.rows, "normalization": params.normalization().describe(), "documents": docs}
    store.write_header(sigs, header, {"generated": "scripts/bench_scale.py", "documents": docs, "seed": seed})


def write_plan(root: Path, docs: int, part_rows: int) -> None:
    """The signatures store's `_plan.json` as the signatures pass writes it for the document shards (one unit
    per shard): the cluster pass records these units so that each filter task loads only its own rows."""
    units, inputs = [], []
    for part, start in enumerate(range(0, docs, part_rows)):
        path = os.path.realpath(root / "documents" / f"part-{part:05d}.parquet")
        inputs.append({"path": path, "size": os.path.getsize(path)})
        units.append({"index": part, "path": path, "row_start": 0, "row_stop": min(docs, start + part_rows) - start})
    plan = {"stage": "dedup signatures", "generated": "scripts/bench_scale.py", "inputs": inputs, "units": units}
    (root / "signatures" / "_plan.json").write_text(json.dumps(plan))


def disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def check_clusters(plan: Plan, clusters: Path, docs: int, part_rows: int) -> str:
    """The clusters table must be exactly the planted clusters: compared as an order-free checksum of
    (id hash, cluster id, size, keep) rows, and by the header's counts."""
    header = json.loads((clusters / "_dedup.json").read_text())
    expected = plan.expected()
    got = {k: header[k] for k in expected}
    assert got == expected, f"clusters header {got} != planted {expected}"

    def digest(hi, lo, cluster, size, keep):
        row = fmix64(hi ^ fmix64(lo) ^ fmix64(cluster.view(np.uint64) + np.uint64(MIX)) ^ fmix64(size.astype(np.uint64) * np.uint64(MIX)))
        return int(fmix64(row ^ keep.astype(np.uint64)).sum(dtype=np.uint64)), len(hi)

    want, rows = 0, 0
    for start in range(0, docs, part_rows):
        stop = min(docs, start + part_rows)
        label = plan.labels[start:stop].astype(np.int64)
        member = plan.sizes[label] > 1
        hi, lo = store.hash128(ids(start, stop))
        first = plan.first[label[member]]
        first_hi, _ = store.hash128(pa.array([f"doc-{i:012d}" for i in first], pa.string()))
        s, n = digest(hi[member], lo[member], first_hi.view(np.int64), plan.sizes[label[member]],
                      first == np.arange(start, stop)[member])
        want, rows = (want + s) % (1 << 64), rows + n
    have, have_rows = 0, 0
    for part in store.part_files(clusters):
        for batch in pq.ParquetFile(part).iter_batches(1 << 20):
            col = {name: batch.column(name).to_numpy(zero_copy_only=False) for name in batch.schema.names}
            s, n = digest(col["id_hi"], col["id_lo"], col["cluster_id"], col["cluster_size"], col["keep"])
            have, have_rows = (have + s) % (1 << 64), have_rows + n
    assert (have, have_rows) == (want, rows), f"clusters table differs from the planted clusters ({have_rows} rows)"
    return f"clusters recovered exactly: {expected['clusters']:,} clusters, {rows:,} documents in them"


def measured(command: list[str], env: dict[str, str]) -> dict:
    done = run_measured(command, env=env)
    return {"wall_s": round(done.seconds, 2), "cpu_s": round(done.cpu, 2), "peak_rss_mb": round(done.peak_rss_kb / 1024),
            "load": round(done.load[0], 2), "summary": json_summary(done.stdout)}


def run_tasks(args: list[str], tasks: int, env: dict[str, str]) -> list[dict]:
    """The pass as `tasks` array tasks run one after another (the last one finishes the pass)."""
    runs = []
    for index in range(tasks):
        extra = ["--num-shards", str(tasks), "--shard-index", str(index)] if tasks > 1 else []
        runs.append(measured(curate_command(*args, "--json", "-q", *extra), env))
    return runs


def synthetic(args: argparse.Namespace) -> None:
    root = args.data / str(args.docs)
    tmp = args.data / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env = child_env({"TMPDIR": str(tmp)})  # the cluster pass's band partitions go to disk here
    started = time.perf_counter()
    plan = Plan(args.docs, args.zipf, args.max_cluster, args.seed)
    expected = plan.expected()
    print(f"{args.docs:,} documents: {len(plan.sizes):,} planted clusters (largest {plan.sizes.max():,}), "
          f"{expected['documents_in_clusters']:,} documents in clusters of ≥ 2, {expected['duplicates_removed']:,} "
          f"duplicates, {int(plan.decoy.sum()):,} decoy singletons; load {os.getloadavg()[0]:.1f}", flush=True)
    if not (root / "signatures" / "_dedup.json").exists():
        cpu = time.process_time()
        generate(plan, root, args.docs, args.part_rows, args.set_size, args.seed)
        print(f"generated in {time.perf_counter() - started:.0f} s ({time.process_time() - cpu:.0f} CPU s): "
              f"signatures {disk(root / 'signatures') / 1e9:.2f} GB, documents {disk(root / 'documents') / 1e9:.2f} GB",
              flush=True)
    if not (root / "signatures" / "_plan.json").exists():
        write_plan(root, args.docs, args.part_rows)
    results = []

    def record(name: str, tasks: int, runs: list[dict], out: Path) -> None:
        row = {"docs": args.docs, "pass": name, "tasks": tasks, "runs": runs, "disk_gb": round(disk(out) / 1e9, 3)}
        results.append(row)
        per_task = " ".join(f"[{r['wall_s']:.1f} s, {r['cpu_s']:.1f} CPU s, {r['peak_rss_mb']} MB]" for r in runs)
        print(f"  {name:<8} {tasks} task(s): wall {sum(r['wall_s'] for r in runs):8.1f} s  CPU "
              f"{sum(r['cpu_s'] for r in runs):8.1f} s  peak RSS {max(r['peak_rss_mb'] for r in runs):6,} MB  "
              f"output {row['disk_gb']:.2f} GB  per task {per_task}", flush=True)
        if args.results:
            with args.results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")

    clusters_for_filter = None
    for tasks in (int(t) for t in args.tasks.split(",")):
        out = root / f"clusters-{tasks}"
        shutil.rmtree(out, ignore_errors=True)
        runs = run_tasks(["dedup", "minhash", "cluster", str(root / "signatures"), "-o", str(out)], tasks, env)
        record("cluster", tasks, runs, out)
        print("   ", check_clusters(plan, out, args.docs, args.part_rows), flush=True)
        clusters_for_filter = out
    assert clusters_for_filter is not None
    for tasks in (int(t) for t in args.filter_tasks.split(",")):
        out = root / f"filtered-{tasks}"
        shutil.rmtree(out, ignore_errors=True)
        runs = run_tasks(["dedup", "minhash", "filter", str(root / "documents"), "-o", str(out), "--clusters",
                          str(clusters_for_filter), "--max-rows-per-shard", str(args.part_rows)], tasks, env)
        record("filter", tasks, runs, out)
        stats = json.loads((out / "_stats.json").read_text())
        kept = sum(pq.ParquetFile(p).metadata.num_rows for p in out.glob("part-*.parquet"))
        assert kept == args.docs - expected["duplicates_removed"], f"filter kept {kept:,}"
        print(f"    filter kept {kept:,} documents = documents − planted duplicates; stats {stats.get('removed')}",
              flush=True)
        shutil.rmtree(out)
    print(f"done in {time.perf_counter() - started:.0f} s; data {disk(root) / 1e9:.2f} GB under {root}")
    if args.clean:
        shutil.rmtree(root)


COST_STAGES = {  # pass → (corpus: full or small, its command's arguments from corpus, output, work dir)
    "langid": ("full", lambda c, o, w: ["langid", str(c), "-o", str(o)]),
    "quality": ("small", lambda c, o, w: ["quality", str(c), "-o", str(o)]),
    "signatures": ("full", lambda c, o, w: ["dedup", "minhash", "signatures", str(c), "-o", str(w / "signatures")]),
    "cluster": ("full", lambda c, o, w: ["dedup", "minhash", "cluster", str(w / "signatures"), "-o",
                                         str(w / "clusters")]),
    "filter": ("full", lambda c, o, w: ["dedup", "minhash", "filter", str(c), "-o", str(o), "--clusters",
                                        str(w / "clusters")]),
    "pack": ("small", lambda c, o, w: ["pack", str(c), "-o", str(o), "--tokenizer",
                                       str(SHARED / "tokenizers" / "gpt2.json")]),
}


def costs(args: argparse.Namespace) -> None:
    """CPU seconds per document and per MB of text of each pass on real text, one worker, one process each."""
    from bench_workers import SOURCES, base_corpus, write_corpus

    base = base_corpus(list(SOURCES))
    root = args.data / "costs"
    shutil.rmtree(root, ignore_errors=True)
    corpora = {}
    for name, docs in (("full", args.docs or base.num_rows), ("small", args.small_docs)):
        rows = write_corpus(base, docs, 8, root / name)
        text = sum(pc.sum(pc.binary_length(pq.read_table(p, columns=["text"]).column(0))).as_py()
                   for p in (root / name).glob("*.parquet"))
        corpora[name] = (docs, rows, int(text))
    print(f"real text (../shared/data, shuffled, repeated with new ids): full {corpora['full'][0]:,} docs "
          f"{corpora['full'][2] / 1e6:.1f} MB, small {corpora['small'][0]:,} docs {corpora['small'][2] / 1e6:.1f} MB")
    print(f"  {'pass':<11} {'docs':>8} {'MB':>6} {'cmd s':>7} {'stage s':>7} {'CPU s':>7} {'stage CPU s':>11} "
          f"{'CPU ms/doc':>10} {'CPU s/MB':>8} {'RSS MB':>6} {'load':>5}")
    results = []
    for name, (corpus, command) in COST_STAGES.items():
        docs, rows, text = corpora[corpus]
        out = root / f"out-{name}"
        done = run_measured(curate_command(*command(root / corpus, out, root), "--workers", "1",
                                           "--max-rows-per-shard", str(rows), "--json", "-q"))
        summary = json_summary(done.stdout)
        summary = summary[0] if isinstance(summary, list) else summary
        stage_cpu = done.cpu * summary["wall_seconds"] / done.seconds  # start-up (imports) left out
        row = {"pass": name, "docs": docs, "text_bytes": text, "seconds": round(done.seconds, 2),
               "stage_seconds": summary["wall_seconds"], "cpu_s": round(done.cpu, 2), "stage_cpu_s": round(stage_cpu, 2),
               "peak_rss_mb": round(done.peak_rss_kb / 1024), "load": done.load[0]}
        results.append(row)
        print(f"  {name:<11} {docs:>8,} {text / 1e6:6.1f} {done.seconds:7.2f} {summary['wall_seconds']:7.2f} "
              f"{done.cpu:7.2f} {stage_cpu:11.2f} {1000 * stage_cpu / docs:10.3f} {stage_cpu / (text / 1e6):8.3f} "
              f"{done.peak_rss_kb / 1024:6.0f} {done.load[0]:5.2f}", flush=True)
    results += extract_costs(args.extract_pages)
    if args.results:
        with args.results.open("a") as fh:
            fh.write(json.dumps({"costs": results}) + "\n")
    shutil.rmtree(root)


def extract_costs(trafilatura_pages: int) -> list[dict]:
    """CPU seconds per page of the raw extractors on the HTML responses of ../shared/data/web/pages.warc.gz."""
    import trafilatura
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding

    with open(SHARED / "web" / "pages.warc.gz", "rb") as fh:
        pages = [record.reader.read() for record in ArchiveIterator(fh, WarcRecordType.response)]
    html = [bytes_to_str(page, detect_encoding(page)) for page in pages]
    html = [h[h.find("<"):] if "<" in h else h for h in html]  # HTTP headers off
    results = []
    for name, call, count in (
        ("extract: resiliparse", lambda h: extract_plain_text(h, main_content=True), len(html)),
        ("extract: trafilatura", lambda h: trafilatura.extract(h, favor_precision=True), min(len(html), trafilatura_pages)),
    ):
        started, cpu = time.perf_counter(), time.process_time()
        text = sum(len(call(h) or "") for h in html[:count])
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        html_mb = sum(len(p) for p in pages[:count]) / 1e6
        results.append({"pass": name, "docs": count, "html_bytes": int(html_mb * 1e6), "text_chars": text,
                        "seconds": round(seconds, 2), "stage_cpu_s": round(cpu, 2)})
        print(f"  {name:<21} {count:,} pages, {html_mb:.1f} MB of HTTP responses: {seconds:.2f} s, {cpu:.2f} CPU s, "
              f"{1000 * cpu / count:.2f} CPU ms/page, {cpu / html_mb:.3f} CPU s/MB of HTML, {text / 1e6:.2f} M chars "
              "out (in this process: one core)", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("/tmp/curate-scale"))
    parser.add_argument("--results", type=Path, help="Append each run's figures here (JSON lines).")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("synthetic", help="Cluster and filter passes on a generated signatures store.")
    gen.add_argument("--docs", type=int, default=10_000_000)
    gen.add_argument("--tasks", default="1,4", help="Array sizes to run the cluster pass with.")
    gen.add_argument("--filter-tasks", default="1", help="Array sizes to run the filter pass with.")
    gen.add_argument("--part-rows", type=int, default=1_000_000, help="Documents per signatures part.")
    gen.add_argument("--set-size", type=int, default=32, help="Shingles per stored set (a power of two ≤ 64).")
    gen.add_argument("--zipf", type=float, default=3.0, help="Exponent of the cluster-size distribution.")
    gen.add_argument("--max-cluster", type=int, default=100_000)
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--clean", action="store_true", help="Delete the generated data at the end.")
    cost = sub.add_parser("costs", help="CPU seconds per document of every pass on real text.")
    cost.add_argument("--docs", type=int, default=0, help="Documents for langid, signatures, cluster, filter "
                      "(default: the shared corpus once, 82,570).")
    cost.add_argument("--small-docs", type=int, default=20_000, help="Documents for quality and pack.")
    cost.add_argument("--extract-pages", type=int, default=300, help="Pages for trafilatura (resiliparse: all).")
    args = parser.parse_args()
    synthetic(args) if args.command == "synthetic" else costs(args)


if __name__ == "__main__":
    main()
