"""Benchmark `curate pii` against datatrove's PIIFormatter (FineWeb's PII step) on the same documents.

Usage:
    .venv/bin/python scripts/bench_pii.py [--data ../shared/data] [--copies 1] [--all-threads]

Documents: the SpamAssassin e-mails (headers full of addresses and IPs) and the trafilatura web pages. Both
tools run at their defaults, in memory (no reading or writing): datatrove's ``PIIFormatter.format`` one
document at a time in a subprocess with .venv-bench's python (a benchmark-only dependency);
curate's ``PiiStage.process`` over Arrow batches of 10,000 rows, pinned to one thread (POLARS_MAX_THREADS=1)
unless --all-threads. Prints docs/s, the ratio, and agreement: documents whose text is byte-identical
once every decoy is mapped to one token (the decoy choice is the one documented difference), and documents
whose e-mail and IP counts are identical.

``--datatrove-worker DOCS.json OUT.json`` is the reference run itself (also used by tests/test_pii.py): it
reads a JSON list of texts and writes datatrove's output texts, per-document replacement counts and timing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_PYTHON = REPO / ".venv-bench" / "bin" / "python"


# -- datatrove side (runs under .venv-bench) -------------------------------------------------------------
def datatrove_worker(docs_path: str, out_path: str) -> None:
    from datatrove.pipeline.formatters import PIIFormatter

    texts = json.loads(Path(docs_path).read_text(encoding="utf-8"))
    formatter = PIIFormatter()
    start = time.perf_counter()
    outputs = [formatter.format(text) for text in texts]
    seconds = time.perf_counter() - start

    counted = PIIFormatter()
    tally = {"emails": 0, "ips": 0}

    class Counting(tuple):
        """The decoy tuple, counting each decoy handed out (one per replaced match)."""

        kind = ""

        def __getitem__(self, index):
            tally[self.kind] += 1
            return tuple.__getitem__(self, index)

    for kind, replacer in (("emails", counted.emails_replacer), ("ips", counted.ip_replacer)):
        replacer.replacements = type(f"Counting_{kind}", (Counting,), {"kind": kind})(replacer.replacements)
    emails, ips = [], []
    for text in texts:
        before = dict(tally)
        counted.format(text)
        emails.append(tally["emails"] - before["emails"])
        ips.append(tally["ips"] - before["ips"])
    result = {"texts": outputs, "emails": emails, "ips": ips, "seconds": seconds}
    Path(out_path).write_text(json.dumps(result), encoding="utf-8")


def run_datatrove(texts: list[str], python: Path = BENCH_PYTHON) -> dict:
    """datatrove's PIIFormatter over ``texts`` in order, in a subprocess under ``python``."""
    with tempfile.TemporaryDirectory() as tmp:
        docs, out = Path(tmp) / "docs.json", Path(tmp) / "out.json"
        docs.write_text(json.dumps(texts), encoding="utf-8")
        subprocess.run([str(python), __file__, "--datatrove-worker", str(docs), str(out)], check=True)
        return json.loads(out.read_text(encoding="utf-8"))


def normalise_decoys(text: str) -> str:
    """Every decoy e-mail and IP mapped to one token each: the text as it is before the decoy choice."""
    from curate.stages.pii import EMAIL_REPLACEMENTS, IP_REPLACEMENTS

    for decoy in EMAIL_REPLACEMENTS:
        text = text.replace(decoy, "<EMAIL>")
    for decoy in IP_REPLACEMENTS:
        text = text.replace(decoy, "<IP>")
    return text


# -- curate side ----------------------------------------------------------------------------------------
def load_documents(data: Path, copies: int):
    import pyarrow as pa
    import pyarrow.parquet as pq

    emails = pq.read_table(data / "spamassassin" / "emails.parquet", columns=["id", "text"])
    web = pq.read_table(data / "web" / "trafilatura_pages.parquet", columns=["id", "text"])
    table = pa.concat_tables([emails, web.cast(emails.schema)])
    return pa.concat_tables([table] * copies).combine_chunks()


def run_curate(table, batch_size: int = 10_000) -> dict:
    import numpy as np

    from curate.io.inputs import Columns
    from curate.stages.pii import PiiParams, PiiStage

    stage = PiiStage(PiiParams(mode="both"))
    stage.setup()
    columns = Columns()
    start = time.perf_counter()
    outputs = [stage.process(batch, columns).kept for batch in table.to_batches(batch_size)]
    seconds = time.perf_counter() - start
    texts = [t for out in outputs for t in out.column("text").to_pylist()]
    emails = np.concatenate([out.column("pii_emails").to_numpy() for out in outputs]).tolist()
    ips = np.concatenate([out.column("pii_ips").to_numpy() for out in outputs]).tolist()
    return {"texts": texts, "emails": emails, "ips": ips, "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--copies", type=int, default=1, help="repeat the documents this many times")
    parser.add_argument("--bench-python", type=Path, default=BENCH_PYTHON)
    parser.add_argument("--all-threads", action="store_true", help="let polars use every core")
    args = parser.parse_args()
    if not args.all_threads:
        os.environ["POLARS_MAX_THREADS"] = "1"  # before polars is imported

    table = load_documents(args.data, args.copies)
    originals = table.column("text").to_pylist()
    megabytes = sum(len(t.encode()) for t in originals) / 1e6
    print(f"{table.num_rows} documents, {megabytes:.1f} MB; load: {os.getloadavg()}", file=sys.stderr)
    ours = run_curate(table)
    theirs = run_datatrove(originals, args.bench_python)

    n = table.num_rows
    same_text = sum(
        normalise_decoys(a) == normalise_decoys(b)
        for a, b in zip(ours["texts"], theirs["texts"], strict=True)
    )
    same_counts = sum(
        (a, b) == (c, d)
        for a, b, c, d in zip(ours["emails"], ours["ips"], theirs["emails"], theirs["ips"], strict=True)
    )
    threads = "all threads" if args.all_threads else "1 thread"
    print(f"\n{'tool':<28}{'docs/s':>10}{'MB/s':>8}{'seconds':>9}{'vs datatrove':>14}")
    for label, run in (("datatrove PIIFormatter", theirs), (f"curate pii ({threads})", ours)):
        print(
            f"{label:<28}{n / run['seconds']:>10.0f}{megabytes / run['seconds']:>8.1f}{run['seconds']:>9.2f}"
            f"{theirs['seconds'] / run['seconds']:>14.1f}"
        )
    print(
        f"\nreplaced: curate {sum(ours['emails'])} e-mails, {sum(ours['ips'])} IPs; "
        f"datatrove {sum(theirs['emails'])} e-mails, {sum(theirs['ips'])} IPs"
    )
    print(f"identical text up to the decoy choice: {same_text}/{n}; identical counts: {same_counts}/{n}")
    print(f"documents changed: {sum(a != b for a, b in zip(originals, ours['texts'], strict=True))}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--datatrove-worker":
        datatrove_worker(sys.argv[2], sys.argv[3])
    else:
        main()
