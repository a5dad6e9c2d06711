"""`curate extract --extractor trafilatura` side by side with FineWeb's extraction (datatrove's WarcReader +
Trafilatura) on the same WARC file: which pages each keeps, and whether the texts are the same.

Usage:
    .venv/bin/python scripts/compare_extract.py [--data ../shared/data] [--bench-python .venv-bench/bin/python]

datatrove pins its own trafilatura release (1.x), curate installs the current one, so the script separates
the two causes of a different text: it runs curate's trafilatura on the HTML as datatrove's reader decoded it
(same call, same page order, a fresh ``deduplicate`` memory), which isolates curate's reading and decoding,
and datatrove's own step against its trafilatura's plain call, which shows what the step adds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import bench_common
import pyarrow.parquet as pq

REPO = bench_common.REPO

DATATROVE_SIDE = """
import json, sys
import trafilatura
from datatrove.pipeline.extractors import Trafilatura
from datatrove.pipeline.readers import WarcReader
from trafilatura import extract
from trafilatura.meta import reset_caches

folder, name, out = sys.argv[1:4]
pages = [(doc.id, doc.text, doc.metadata.get("url")) for doc in WarcReader(folder, glob_pattern=name, doc_progress=False).run()]
step = {doc.id: doc.text for doc in Trafilatura(favour_precision=True, timeout=600).run(
    WarcReader(folder, glob_pattern=name, doc_progress=False).run())}
reset_caches()
plain = {i: extract(h, favor_precision=True, include_comments=False, deduplicate=True) for i, h, _ in pages}
json.dump({"version": trafilatura.__version__, "pages": pages, "step": step, "plain": plain}, open(out, "w"))
"""


def record_status(warc: Path) -> dict[str, int | None]:
    """WARC-Record-ID → HTTP status of every record, read by curate's WARC reader."""
    from curate.io.warc import warc_records

    def fail(error: Exception) -> None:
        raise error

    with open(warc, "rb") as raw:
        return {row["id"]: row["status"] for _, row in warc_records(str(warc), raw, True, 1 << 21, fail)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=bench_common.SHARED)
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    args = parser.parse_args()
    warc = args.data / "web" / "pages.warc.gz"

    import trafilatura
    from trafilatura import extract
    from trafilatura.meta import reset_caches

    from curate.stages.extract import TRAFILATURA_SETTINGS

    with tempfile.TemporaryDirectory() as tmp:
        dumped = Path(tmp) / "datatrove.json"
        subprocess.run([args.bench_python, "-c", DATATROVE_SIDE, str(warc.parent), warc.name, str(dumped)],
                       check=True, stderr=subprocess.DEVNULL)
        theirs = json.loads(dumped.read_text())
        out = Path(tmp) / "curate"
        subprocess.run([sys.executable, "-m", "curate", "extract", str(warc), "-o", str(out), "--extractor",
                        "trafilatura", "--quiet"], check=True)
        ours = {row["id"]: row for row in pq.read_table(out, columns=["id", "url", "status", "text"]).to_pylist()}

    step = {k: v for k, v in theirs["step"].items() if v}
    reset_caches()
    same_call = {i: extract(h, **TRAFILATURA_SETTINGS) for i, h, _ in theirs["pages"]}
    both = [k for k in ours if k in step]
    comparable = [k for k in ours if same_call.get(k)]
    print(f"trafilatura: curate {trafilatura.__version__}, datatrove {theirs['version']}")
    print(f"pages kept: curate {len(ours):,}, datatrove {len(step):,}, both {len(both):,}")
    status = record_status(warc)
    only_theirs = set(step) - set(ours)
    not_ok = sum(status.get(k) != 200 for k in only_theirs)
    print(f"  datatrove only: {len(only_theirs):,}: HTTP status not 200 (curate extracts only 200s) {not_ok:,}; "
          f"no text from curate's trafilatura release {len(only_theirs) - not_ok:,}")
    print(f"  curate only: {len(set(ours) - set(step)):,} (responses datatrove's reader skips: no "
          "WARC-Identified-Payload-Type and libmagic does not say text/html, or cchardet's charset fails)")
    print(f"datatrove's step = its trafilatura's plain call: "
          f"{sum(step[k] == theirs['plain'].get(k) for k in step):,} of {len(step):,} pages")
    print(f"curate = curate's trafilatura on datatrove's decoded HTML: "
          f"{sum(ours[k]['text'] == same_call[k] for k in comparable):,} of {len(comparable):,} pages")
    print(f"curate = datatrove, same text: {sum(ours[k]['text'] == step[k] for k in both):,} of {len(both):,} pages "
          "(the rest differ by trafilatura release)")


if __name__ == "__main__":
    main()
