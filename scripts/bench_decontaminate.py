"""Benchmark `curate decontaminate` against a plain Python set of n-gram strings making the same decisions.

Usage:
    .venv/bin/python scripts/bench_decontaminate.py [--data ../shared/data] [--copies 4] [--all-threads]

Corpus: the SpamAssassin e-mails and the trafilatura web pages, ``--copies`` times, with the English
paragraphs of the Universal Declaration of Human Rights planted into some documents; the benchmark is those
paragraphs. Both sides use the same words (curate's code-point tables: lowercase, punctuation and symbols
removed, split at whitespace) and the same decisions (NeMo Curator's cut, as docs/decontaminate.md
describes it):

- the baseline (:class:`Reference`) joins words into n-gram strings and looks them up in a Python dict, one
  document at a time, and cuts with Python string positions;
- curate's ``DecontaminateStage.process`` runs over Arrow batches of 10,000 rows with its memory-mapped index,
  pinned to one thread (numba) unless --all-threads.

The script asserts that both find the same n-grams and sources in every document and cut every document to
the same text, then runs the command as users do for its peak RSS. tests/test_decontaminate.py uses
:class:`Reference` and :func:`plant` too.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import bench_common  # noqa: F401 - puts this checkout first on the path
import numpy as np
from bench_common import SHARED, curate_command, run_measured

STOPS = ".!?"


@cache
def _normalisation() -> tuple[dict[int, int | None], re.Pattern]:
    """str.translate table (lowercase, drop punctuation and symbols) and the pattern of a whitespace-free run,
    from the tables curate's kernels use."""
    from curate.text.codepoints import SEPARATOR, SPACE, codepoint_tables

    lower, _, classes = codepoint_tables()
    table: dict[int, int | None] = {int(cp): None for cp in np.flatnonzero(classes == SEPARATOR)}
    changed = np.flatnonzero(lower != np.arange(len(lower)))
    table.update({int(cp): int(lower[cp]) for cp in changed if int(cp) not in table})
    spaces = "".join(re.escape(chr(cp)) for cp in np.flatnonzero(classes == SPACE))
    return table, re.compile(f"[^{spaces}]+")


def words_of(text: str) -> list[tuple[str, int, int]]:
    """(normalised word, start, end) of every word, positions in characters of ``text``."""
    table, run = _normalisation()
    found = ((m.group().translate(table), m.start(), m.end()) for m in run.finditer(text))
    return [w for w in found if w[0]]


class Reference:
    """The plain-Python decontamination: a dict from n-gram string to the benchmarks that hold it."""

    def __init__(self, benchmarks: dict[str, list[str]], ngram: int = 13, min_ngram: int = 8):
        self.ngram = ngram
        self.ngrams: dict[str, set[str]] = {}
        lengths = set()
        for name, texts in benchmarks.items():
            for text in texts:
                words = [w for w, _, _ in words_of(text)]
                if len(words) < min_ngram:
                    continue
                width = min(len(words), ngram)
                lengths.add(width)
                for i in range(len(words) - width + 1):
                    self.ngrams.setdefault(" ".join(words[i : i + width]), set()).add(name)
        self.lengths = sorted(lengths)

    def check(self, text: str) -> tuple[int, set[str]]:
        """Positions where a benchmark n-gram starts (every length), and the benchmarks they belong to."""
        words = [w for w, _, _ in words_of(text)]
        count, sources = 0, set()
        for i in range(len(words)):
            for length in self.lengths:
                if i + length <= len(words) and (found := self.ngrams.get(" ".join(words[i : i + length]))):
                    count += 1
                    sources |= found
        return count, sources

    def first_match(self, words: list[tuple[str, int, int]]) -> tuple[int, int] | None:
        """By position; at one position the --ngram-gram, then shorter lengths ascending."""
        plain = [w for w, _, _ in words]
        order = [self.ngram] + [length for length in self.lengths if length != self.ngram]
        for i in range(len(plain)):
            for length in order:
                if i + length <= len(plain) and " ".join(plain[i : i + length]) in self.ngrams:
                    return i, length
        return None

    def cut(self, text: str, remove: int = 200, min_chars: int = 200) -> list[str]:
        """NeMo Curator's ``_remove_ngrams``: the pieces left of ``text`` (matches at original positions)."""
        queue, free = [text], []
        while queue:
            piece = queue.pop(0)
            words = words_of(piece)
            match = self.first_match(words)
            if match is None:
                free.append(piece)
                continue
            i, length = match
            start, end = words[i][1], words[i + length - 1][2]
            pos, first = start - remove, ""
            while pos > 0 and piece[pos] not in STOPS:
                pos -= 1
            if pos > 0:
                first = piece[: pos + 1]
            pos, second = end + remove, ""
            while pos < len(piece) and piece[pos] not in STOPS:
                pos += 1
            if pos + 1 < len(piece):
                second = piece[pos + 1 :]
            if len(first) > min_chars:
                free.append(first)
            if len(second) > min_chars:
                queue.append(second)
        return free


def plant(texts: list[str], paragraphs: list[str], seed: int = 0) -> tuple[list[str], dict[int, int]]:
    """``texts`` with each paragraph inserted (between blank lines, at a line or word boundary) into its own
    randomly chosen text; returns the new texts and {text index: paragraph index}."""
    rng = np.random.default_rng(seed)
    texts = list(texts)
    chosen = rng.choice(len(texts), size=len(paragraphs), replace=False)
    for k, j in enumerate(chosen):
        text = texts[j]
        at = int(rng.integers(len(text) + 1))
        at = max(text.rfind("\n", 0, at), text.rfind(" ", 0, at)) + 1
        texts[j] = f"{text[:at]}\n\n{paragraphs[k]}\n\n{text[at:]}"
    return texts, {int(j): k for k, j in enumerate(chosen)}


def english_udhr(data: Path) -> list[str]:
    import polars as pl

    frame = pl.read_parquet(data / "udhr" / "paragraphs.parquet").filter(pl.col("iso6393") == "eng")
    return frame["text"].to_list()


def corpus(data: Path, copies: int) -> tuple[list[str], dict[int, int]]:
    """E-mails and web pages ``copies`` times, every English UDHR paragraph planted once per copy."""
    import polars as pl

    base = (pl.read_parquet(data / "spamassassin" / "emails.parquet")["text"].to_list()
            + pl.read_parquet(data / "web" / "trafilatura_pages.parquet")["text"].to_list())
    paragraphs = english_udhr(data)
    texts, planted = [], {}
    for copy in range(copies):
        planted_texts, where = plant(base, paragraphs, seed=copy)
        planted.update({len(texts) + j: k for j, k in where.items()})
        texts += planted_texts
    return texts, planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--copies", type=int, default=4)
    parser.add_argument("--all-threads", action="store_true")
    args = parser.parse_args()

    import numba
    import pyarrow as pa
    import pyarrow.parquet as pq

    from curate.io.inputs import Columns
    from curate.io.options import IOOptions
    from curate.stages.decontaminate import DecontaminateParams, decontaminate_passes

    if not args.all_threads:
        numba.set_num_threads(1)
    texts, planted = corpus(args.data, args.copies)
    paragraphs = english_udhr(args.data)
    chars = sum(map(len, texts))
    print(f"corpus: {len(texts):,} documents, {chars / 1e6:.1f} M characters, {len(planted):,} planted paragraphs; "
          f"benchmark: {len(paragraphs)} English UDHR paragraphs; numba threads {numba.get_num_threads()}")

    with tempfile.TemporaryDirectory(prefix="bench-decon-") as tmp:
        work = Path(tmp)
        pq.write_table(pa.table({"text": paragraphs}), work / "udhr_en.parquet")
        pq.write_table(pa.table({"id": [str(i) for i in range(len(texts))], "text": texts}), work / "corpus.parquet",
                       row_group_size=10_000)
        params = DecontaminateParams(benchmarks=[str(work / "udhr_en.parquet")])
        io = IOOptions(inputs=[str(work / "corpus.parquet")], output=str(work / "warm"), quiet=True)
        index_pass, _ = decontaminate_passes(params, io)
        index_pass.run(io)  # builds the index (and compiles the kernels) outside the timing
        from curate.stages.decontaminate import DecontaminateStage

        stage = DecontaminateStage(params, index_pass.output)
        stage.setup()
        table = pa.table({"text": texts})
        stage.process(table.slice(0, 100).to_batches()[0], Columns())  # warm the kernels
        started = time.perf_counter()
        outputs = [stage.process(batch, Columns()) for batch in table.to_batches(max_chunksize=10_000)]
        curate_seconds = time.perf_counter() - started

        started = time.perf_counter()
        reference = Reference({"udhr_en": paragraphs})
        checks = [reference.check(text) for text in texts]
        cuts = {i: reference.cut(texts[i]) for i, (count, _) in enumerate(checks) if count}
        reference_seconds = time.perf_counter() - started

        # agreement: n-grams and sources of every document, and the text of every cut document
        annotate = [stage.__class__(DecontaminateParams(benchmarks=params.benchmarks, mode="annotate"),
                                    index_pass.output)]
        annotate[0].setup()
        ngrams, sources = [], []
        for batch in table.to_batches(max_chunksize=10_000):
            kept = annotate[0].process(batch, Columns()).kept
            ngrams += kept.column("contamination_ngrams").to_pylist()
            sources += kept.column("contamination_sources").to_pylist()
        assert ngrams == [c for c, _ in checks], "n-gram counts differ"
        assert [set(s) for s in sources] == [s for _, s in checks], "sources differ"
        kept_texts = [t for o in outputs for t in o.kept.column("text").to_pylist()]
        expected = [("\n\n".join(cuts[i]) if i in cuts else t) for i, t in enumerate(texts)
                    if i not in cuts or 1 <= len(cuts[i]) <= params.max_splits]
        assert kept_texts == expected, "cut texts differ"
        found = {i for i, (count, _) in enumerate(checks) if count}
        long_enough = {i for i, k in planted.items() if len(words_of(paragraphs[k])) >= params.min_ngram}
        assert found == long_enough, "not every planted paragraph found, or a false hit"
        print(f"agreement: n-gram counts and sources of all {len(texts):,} documents, cut text of "
              f"{len(cuts):,} contaminated documents ({len(texts) - len(kept_texts):,} removed) — identical")

        print("\n| implementation | seconds | docs/s | ratio |\n|---|---:|---:|---:|")
        for name, seconds in (("Python set of n-gram strings", reference_seconds),
                              ("curate DecontaminateStage.process", curate_seconds)):
            print(f"| {name} | {seconds:.2f} | {len(texts) / seconds:,.0f} | {reference_seconds / seconds:.1f}× |")

        command = curate_command("decontaminate", str(work / "corpus.parquet"), "-o", str(work / "out"),
                                 "--benchmarks", str(work / "udhr_en.parquet"), "--quiet")
        measured = run_measured(command)
        print(f"\ncommand (index + check, a fresh process): {measured.seconds:.2f} s, "
              f"{len(texts) / measured.seconds:,.0f} docs/s, peak RSS {measured.peak_rss_kb / 1024:.0f} MB, "
              f"load before {measured.load[0]:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
