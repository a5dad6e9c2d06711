"""`curate filter --expr` against the same filter written by hand in polars, on annotated documents.

Usage:
    .venv/bin/python scripts/bench_filter.py [--docs 200000] [--sample 2000]

Input: ``--sample`` documents of english/misc.parquet (every source) through langid and ``quality --mode
annotate`` (the stage classes, in this process), repeated with fresh ids (and the id before each text,
so that no text repeats) up to ``--docs`` rows, in one Parquet file. Both sides run in fresh processes on one thread (POLARS_MAX_THREADS=1) and write zstd
Parquet: curate the whole command (plan, read, evaluate, per-clause counts, write, manifest), polars
``read_parquet → filter → write_parquet``. Prints docs/s of both, the ratio, peak RSS, and checks that both
keep the same documents.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench_common import SHARED, child_env, curate_command, json_summary, run_measured

EXPR = ('lang == "en" and lang_score >= 0.7 and q_word_count >= 50 and q_mean_word_length < 10 and '
        'not quality_reasons.list.contains("c4:curly_bracket")')
POLARS = """
import sys, polars as pl
frame = pl.read_parquet(sys.argv[1])
kept = frame.filter(pl.col("lang") == "en", pl.col("lang_score") >= 0.7, pl.col("q_word_count") >= 50,
                    pl.col("q_mean_word_length") < 10,
                    ~pl.col("quality_reasons").list.contains("c4:curly_bracket"))
kept.write_parquet(sys.argv[2], compression="zstd")
print(kept.height)
"""


def annotated_input(data: Path, sample: int, total: int, path: Path) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from curate.io.inputs import Columns
    from curate.stages.langid import LangidParams, LangidStage
    from curate.stages.quality import QualityParams, QualityStage

    misc = pq.read_table(data / "english" / "misc.parquet", columns=["text"])
    misc = misc.take(np.arange(0, misc.num_rows, max(1, misc.num_rows // sample))[:sample])
    batch = pa.table({"id": [f"d{i}" for i in range(misc.num_rows)], "text": misc["text"]}).to_batches()[0]
    batch = LangidStage(LangidParams()).process(batch, Columns()).kept
    batch = QualityStage(QualityParams(mode="annotate")).process(batch, Columns()).kept
    table = pa.Table.from_batches([batch])
    rows = np.arange(total) % table.num_rows
    ids = pa.array([f"d{i}" for i in range(total)])
    table = table.take(pa.array(rows)).set_column(0, "id", ids)
    text = pc.binary_join_element_wise(ids, table["text"], " ")  # every text unique, as in a real corpus
    table = table.set_column(table.schema.get_field_index("text"), "text", text)
    pq.write_table(table, path, compression="zstd")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--sample", type=int, default=2000)
    args = parser.parse_args()
    env = child_env({"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1"})
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        source = tmp / "annotated.parquet"
        annotated_input(args.data, args.sample, args.docs, source)
        print(f"{args.docs:,} annotated documents ({source.stat().st_size / 1e6:.0f} MB); load {os.getloadavg()}",
              file=sys.stderr)
        ours = run_measured(curate_command("filter", str(source), "-o", str(tmp / "out"), "--expr", EXPR,
                                           "--json", "-q"), env=env)
        theirs = run_measured([sys.executable, "-c", POLARS, str(source), str(tmp / "polars.parquet")], env=env)
    summary = json_summary(ours.stdout)
    kept_polars = int(theirs.stdout.strip())
    assert summary["docs_out"] == kept_polars, (summary["docs_out"], kept_polars)
    n = args.docs
    print(f"\n{'tool':<40}{'docs/s':>12}{'seconds':>10}{'peak RSS MB':>13}{'vs polars':>11}")
    print(f"{'polars read → filter → write':<40}{n / theirs.seconds:>12,.0f}{theirs.seconds:>10.2f}"
          f"{theirs.peak_rss_kb / 1024:>13.0f}{1:>11.2f}")
    print(f"{'curate filter --expr, whole command':<40}{n / ours.seconds:>12,.0f}{ours.seconds:>10.2f}"
          f"{ours.peak_rss_kb / 1024:>13.0f}{theirs.seconds / ours.seconds:>11.2f}")
    print(f"{'curate filter --expr, inside the run':<40}{n / summary['wall_seconds']:>12,.0f}"
          f"{summary['wall_seconds']:>10.2f}{'':>13}{theirs.seconds / summary['wall_seconds']:>11.2f}"
          "  (without interpreter start and imports)")
    print(f"\nkept: {summary['docs_out']:,} of {n:,} by both; removed per clause: {summary['removed']}")
    print(f"load after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
