"""Benchmark `curate pack --order related` (In-Context Pretraining) against the input order and a random order.

On english/misc (mixed sources, `source` column) and the web pages, as users run it (a fresh process each):

1. throughput: `curate pack --strategy concat` with `--order related` and with `--order input`, docs/s and
   peak RSS, and their ratio (what ordering costs on top of packing);
2. relatedness of neighbours: mean cosine similarity of adjacent documents (curate's own document vectors,
   centred) and, on misc, how often adjacent documents come from the same source / the same source file, in
   the related order, a random order and the input order;
3. the approximations: on a seeded sample of misc, the greedy order over *exact* k-NN in one cluster against
   curate's order (HNSW neighbours; one cluster, then several k-means clusters);
4. the neighbour search: recall@k against exact k-NN and seconds, hnswlib (curate's choice) against faiss HNSW
   and pynndescent where those are installed;
5. a proxy LM: the byte n-gram proxy of `curate mix proxy` cannot see across documents (it separates them by
   order-1 zero bytes) and its counts do not depend on order, so training it on a related or a random order
   gives the same model by construction. The cheapest model that can use the preceding documents of a
   context is a cache LM: a bigram model (trained on 90 % of misc; order-invariant) interpolated with a
   unigram cache of the tokens before in the same --seq-len context. The held-out 10 % is ordered by curate
   (related) or shuffled (random), packed into contexts, and scored in bits per token; a cache reset at each
   document start is the control where no context crosses documents.

    .venv/bin/python scripts/bench_order.py [--seq-len 2048] [--sample 5000] [--neighbors 9]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numba as nb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from bench_common import SHARED, curate_command, json_summary, run_measured
from tokenizers import Tokenizer

from curate.stages.pack import related

MISC = SHARED / "english" / "misc.parquet"
WEB = SHARED / "web" / "trafilatura_pages.parquet"
TOKENIZER = SHARED / "tokenizers" / "gpt2.json"
EOS = 50256


def pack(source: Path, out: Path, order: str, args: argparse.Namespace, *more: str):
    command = curate_command("pack", str(source), "-o", str(out), "--tokenizer", str(TOKENIZER), "--strategy",
                             "concat", "--seq-len", str(args.seq_len), "--order", order, "--neighbors",
                             str(args.neighbors), "--json", "-q", *more)
    measured = run_measured(command)
    return measured, json_summary(measured.stdout)


def ordered_ids(out: Path) -> list:
    parts = sorted((out.parent / f"{out.name}.pack-work" / "ordered").glob("part-*.parquet"))
    return pq.read_table(parts, columns=["id"]).column("id").to_pylist()


def vectors_of(table: pa.Table) -> np.ndarray:
    vectors = related.embed(table.column("text"))
    return related.normalise(vectors - vectors.mean(axis=0))


def source_file(ids: list[str]) -> np.ndarray:
    """misc's finer label: the file (or movie-review class) a document comes from."""
    return np.array([i.split("#")[0].rsplit("/", 1)[0] if i.startswith("nltk/movie") else i.split("#")[0]
                     for i in ids])


def same_share(labels: np.ndarray, order: np.ndarray) -> float:
    ordered = labels[order]
    return float(np.mean(ordered[1:] == ordered[:-1]))


def table_row(cells: list) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def throughput_and_neighbours(name: str, path: Path, args: argparse.Namespace, work: Path) -> None:
    table = pq.read_table(path, columns=["id", "text", *(["source"] if name == "misc" else [])])
    measured = {}
    for order in ("input", "related"):
        run, summary = pack(path, work / f"{name}-{order}", order, args)
        measured[order] = (run, summary)
    base, icp = measured["input"][0], measured["related"][0]
    docs = table.num_rows
    print(f"\n### {name}: {docs:,} documents, concat --seq-len {args.seq_len}")
    print(table_row(["--order", "seconds", "docs/s", "peak RSS MB", "× input-order time"]))
    print(table_row(["---"] * 5))
    for order, (run, _) in measured.items():
        print(table_row([order, f"{run.seconds:.2f}", f"{docs / run.seconds:,.0f}", run.peak_rss_kb // 1024,
                         f"{run.seconds / base.seconds:.2f}×"]))
    summary = measured["related"][1]
    passes = {p: summary[p]["wall_seconds"] for p in ("embed", "centroids", "assign", "order")}
    print(f"related passes (s): {passes}, pack {summary['wall_seconds'] - sum(passes.values()):.2f}; "
          f"clusters {summary['centroids']['clusters']}, paths {summary['order']['paths']}; load before: "
          f"{icp.load[0]:.1f}")
    index = {doc: i for i, doc in enumerate(table.column("id").to_pylist())}
    icp_order = np.array([index[doc] for doc in ordered_ids(work / f"{name}-related")])
    assert np.array_equal(np.sort(icp_order), np.arange(docs)), "every document exactly once"
    random_order = np.random.default_rng(0).permutation(docs)
    input_order = np.arange(docs)
    vectors = vectors_of(table)
    orders = {"related": icp_order, "random": random_order, "input": input_order}
    header = ["order", "mean adjacent cosine"]
    labels = {}
    if name == "misc":
        labels = {"same source": np.array(table.column("source").to_pylist()),
                  "same source file": source_file(table.column("id").to_pylist())}
        header += list(labels)
    print(table_row(header))
    print(table_row(["---"] * len(header)))
    for label, order in orders.items():
        cells = [label, f"{related.adjacent_similarity(vectors, order).mean():.4f}"]
        cells += [f"{same_share(values, order):.3f}" for values in labels.values()]
        print(table_row(cells))


def approximations(args: argparse.Namespace, work: Path) -> None:
    table = pq.read_table(MISC, columns=["id", "text", "source"])
    pick = np.sort(np.random.default_rng(1).choice(table.num_rows, args.sample, replace=False))
    sample = table.take(pa.array(pick))
    path = work / "sample.parquet"
    pq.write_table(sample, path)
    vectors = vectors_of(sample)
    labels = source_file(sample.column("id").to_pylist())
    started = time.perf_counter()
    exact_path, _ = related.greedy_path(related.exact_neighbours(vectors, args.neighbors), 0)
    exact_seconds = time.perf_counter() - started
    rows = [("greedy over exact k-NN, one cluster (in-process)", exact_path, f"{exact_seconds:.2f}")]
    index = {doc: i for i, doc in enumerate(sample.column("id").to_pylist())}
    for clusters, cluster_docs in ((1, args.sample), (5, args.sample // 5)):
        run, _ = pack(path, work / f"sample-{clusters}", "related", args, "--cluster-docs", str(cluster_docs))
        order = np.array([index[d] for d in ordered_ids(work / f"sample-{clusters}")])
        rows.append((f"curate, HNSW, --cluster-docs {cluster_docs} ({clusters} cluster(s))", order,
                     f"{run.seconds:.2f} (whole command)"))
    rows.append(("random", np.random.default_rng(0).permutation(len(vectors)), ""))
    print(f"\n### exact vs approximate, {args.sample:,} documents of misc sampled with seed 1")
    print(table_row(["order", "mean adjacent cosine", "same source file", "seconds"]))
    print(table_row(["---"] * 4))
    for label, order, seconds in rows:
        print(table_row([label, f"{related.adjacent_similarity(vectors, order).mean():.4f}",
                         f"{same_share(labels, order):.3f}", seconds]))


def neighbour_search(args: argparse.Namespace) -> None:
    vectors = vectors_of(pq.read_table(MISC, columns=["text"]))
    k = args.neighbors
    started = time.perf_counter()
    exact = related.exact_neighbours(vectors, k)
    exact_seconds = time.perf_counter() - started

    def recall(found: np.ndarray) -> float:
        hits = (found[:, :, None] == exact[:, None, :]).any(axis=2).sum()
        return hits / exact.size

    def without_self(labels: np.ndarray) -> np.ndarray:
        keep = labels != np.arange(len(labels))[:, None]
        return np.array([row[mask][:k] for row, mask in zip(labels, keep, strict=True)])

    rows = [("exact (numpy matrix products)", 1.0, exact_seconds)]
    for ef in (50, 100):
        started = time.perf_counter()
        found = related.hnsw_neighbours(vectors, k, 0, ef=ef)
        rows.append((f"hnswlib M=16 ef={ef}, 1 thread", recall(found), time.perf_counter() - started))
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        for ef in (50, 100):
            started = time.perf_counter()
            index = faiss.IndexHNSWFlat(vectors.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = ef
            index.add(vectors)
            index.hnsw.efSearch = ef
            _, labels = index.search(vectors, k + 1)
            rows.append((f"faiss IndexHNSWFlat M=16 ef={ef}, 1 thread", recall(without_self(labels)),
                         time.perf_counter() - started))
    except ImportError:
        print("faiss not installed: left out")
    try:
        import pynndescent

        for attempt in ("first call, compiles", "second call"):
            started = time.perf_counter()
            graph = pynndescent.NNDescent(vectors, metric="cosine", n_neighbors=k + 1, random_state=0, n_jobs=1)
            labels, _ = graph.neighbor_graph
            rows.append((f"pynndescent cosine, 1 job ({attempt})", recall(without_self(labels)),
                         time.perf_counter() - started))
    except ImportError:
        print("pynndescent not installed: left out")
    print(f"\n### neighbour search on misc ({len(vectors):,} vectors of {vectors.shape[1]} dims, k={k})")
    print(table_row(["method", f"recall@{k}", "seconds", "× exact time"]))
    print(table_row(["---"] * 4))
    for label, found_recall, seconds in rows:
        print(table_row([label, f"{found_recall:.4f}", f"{seconds:.2f}", f"{seconds / exact_seconds:.2f}×"]))


@nb.njit(cache=True)
def _cache_probabilities(tokens, doc_starts, width, vocab, reset_at_documents):
    """P_cache of each token: its share of the tokens before it in its context row (or, with
    ``reset_at_documents``, in its document within the row); NaN where nothing precedes."""
    counts = np.zeros(vocab, np.int32)
    out = np.full(len(tokens), np.nan)
    for row in range(len(tokens) // width):
        seen = 0
        start = row * width
        for i in range(start, start + width):
            if reset_at_documents and doc_starts[i]:
                for j in range(i - seen, i):
                    counts[tokens[j]] = 0
                seen = 0
            if seen:
                out[i] = counts[tokens[i]] / seen
            counts[tokens[i]] += 1
            seen += 1
        for j in range(start + width - seen, start + width):
            counts[tokens[j]] = 0
    return out


def cache_lm(args: argparse.Namespace, work: Path) -> None:
    table = pq.read_table(MISC, columns=["id", "text", "source"])
    held = np.random.default_rng(2).random(table.num_rows) < 0.1
    train, valid = table.filter(pa.array(~held)), table.filter(pa.array(held))
    path = work / "held-out.parquet"
    pq.write_table(valid, path)
    pack(path, work / "held-out", "related", args)
    tokenizer = Tokenizer.from_file(str(TOKENIZER))
    vocab = tokenizer.get_vocab_size()

    def encode(texts: list[str]) -> list[np.ndarray]:
        return [np.array([*e.ids, EOS], np.int64) for e in tokenizer.encode_batch(texts)]

    stream = np.concatenate(encode(train.column("text").to_pylist()))
    unigram = (np.bincount(stream, minlength=vocab) + 1.0) / (len(stream) + vocab)
    pairs, pair_counts = np.unique(stream[:-1] * vocab + stream[1:], return_counts=True)
    context_counts = np.bincount(stream[:-1], minlength=vocab)
    alpha = 10.0
    docs = encode(valid.column("text").to_pylist())
    index = {doc: i for i, doc in enumerate(valid.column("id").to_pylist())}
    orders = {"related": np.array([index[d] for d in ordered_ids(work / "held-out")]),
              "random": np.random.default_rng(0).permutation(len(docs))}
    width = args.seq_len + 1
    results = {}
    for label, order in orders.items():
        tokens = np.concatenate([docs[i] for i in order])
        starts = np.zeros(len(tokens), np.bool_)
        starts[np.cumsum([0, *[len(docs[i]) for i in order[:-1]]])] = True
        rows = len(tokens) // width
        tokens, starts = tokens[: rows * width], starts[: rows * width]
        previous = np.roll(tokens, 1)
        found = np.searchsorted(pairs, previous * vocab + tokens)
        found = np.minimum(found, len(pairs) - 1)
        bigram = np.where(pairs[found] == previous * vocab + tokens, pair_counts[found], 0)
        p_global = (bigram + alpha * unigram[tokens]) / (context_counts[previous] + alpha)
        p_global[::width] = unigram[tokens[::width]]  # a row's first token has no context
        scored = {"bigram, no cache": p_global}
        for name, reset in (("cache within the document", True), ("cache over the whole context", False)):
            cache = _cache_probabilities(tokens, starts, width, vocab, reset)
            scored[name] = np.where(np.isnan(cache), p_global, (1 - args.cache_weight) * p_global
                                    + args.cache_weight * np.nan_to_num(cache))
        results[label] = {name: float(-np.log2(p).mean()) for name, p in scored.items()}
        results[label]["tokens"] = len(tokens)
    print(f"\n### cache LM, held-out 10 % of misc ({len(docs):,} documents, {results['related']['tokens']:,} "
          f"tokens in {args.seq_len + 1}-token contexts), bits per token; cache weight {args.cache_weight}")
    print(table_row(["model", "related order", "random order", "related − random"]))
    print(table_row(["---"] * 4))
    for name in ("bigram, no cache", "cache within the document", "cache over the whole context"):
        a, b = results["related"][name], results["random"][name]
        print(table_row([name, f"{a:.4f}", f"{b:.4f}", f"{a - b:+.4f}"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--sample", type=int, default=5000)
    parser.add_argument("--neighbors", type=int, default=9)
    parser.add_argument("--cache-weight", type=float, default=0.1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-order-") as tmp:
        work = Path(tmp)
        throughput_and_neighbours("misc", MISC, args, work)
        throughput_and_neighbours("web", WEB, args, work)
        approximations(args, work)
        neighbour_search(args)
        cache_lm(args, work)


if __name__ == "__main__":
    main()
