"""Remote storage: what reading and writing s3:// costs over local disk, against the raw s3fs transfer.

One run, one machine, an S3 server on loopback (moto in server mode: a Python server, so absolute MB/s are
moto's, not S3's; the ratios show curate's own overhead):

  local   `curate langid IN -o OUT` on local disk (langid: the fastest stage, so I/O weighs most)
  s3      the same command from s3://bench/in to s3://bench/out-N
  raw     s3fs alone moving the same bytes: get every input object, put every output shard of `local`
  list    resolve_inputs on a prefix of --keys small objects, against s3fs `find` on the same prefix

Each command runs in a fresh process (as users run it); best of --repeat. Peak RSS is the child's.

    .venv/bin/python scripts/bench_remote.py --copies 4 --units 16 --keys 10000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.io.output import file_checksum

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
MEASURE = (  # runs the CLI in this child and reports its own peak RSS
    "import resource, sys\n"
    "from curate.cli.main import main\n"
    "try:\n    main()\nfinally:\n"
    "    print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
)


def start_server() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"http://127.0.0.1:{port}"


def make_corpus(directory: Path, copies: int, units: int) -> int:
    """english/misc.parquet repeated ``copies`` times (ids made unique), cut into ``units`` files."""
    table = pq.read_table(SHARED / "english" / "misc.parquet", columns=["id", "text", "source"])
    tables = [table.set_column(0, "id", pc.binary_join_element_wise(table["id"], pa.scalar(f"-{c}"), ""))
              for c in range(copies)]
    corpus = pa.concat_tables(tables)
    step = -(-corpus.num_rows // units)
    directory.mkdir(parents=True)
    for i, start in enumerate(range(0, corpus.num_rows, step)):
        pq.write_table(corpus.slice(start, step), directory / f"part-{i:03d}.parquet")
    return corpus.num_rows


def curate(args: list[str], env: dict) -> tuple[float, int, dict]:
    """(seconds, peak RSS in MB, --json summary) of one `curate` command in a fresh process."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, *args, "--json", "--quiet"], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"curate {' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    rss = next(int(line.split()[1]) for line in done.stderr.splitlines() if line.startswith("MAXRSS"))
    return seconds, rss // 1024, json.loads(done.stdout)


def best(runs: list[tuple]) -> tuple:
    return min(runs, key=lambda r: r[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=4, help="Copies of english/misc.parquet (28,131 docs each).")
    parser.add_argument("--units", type=int, default=16, help="Input files (= units = output shards).")
    parser.add_argument("--keys", type=int, default=10_000, help="Objects under the prefix of the listing test.")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    import s3fs

    os.environ.update(CREDENTIALS)
    server, endpoint = start_server()
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    fs = s3fs.S3FileSystem(skip_instance_cache=True, use_listings_cache=False)
    fs.mkdir("bench")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-remote-") as tmp:
            root = Path(tmp)
            docs = make_corpus(root / "in", args.copies, args.units)
            fs.put(str(root / "in") + "/", "bench/in/", recursive=True)
            mbytes = sum(p.stat().st_size for p in (root / "in").iterdir()) / 1e6
            print(f"corpus: {docs:,} documents, {args.units} Parquet files, {mbytes:.1f} MB; S3 server: moto on "
                  f"loopback; load {os.getloadavg()[0]:.2f}", file=sys.stderr)

            local = best([curate(["langid", str(root / "in"), "-o", str(root / f"out-{i}")], env)
                          for i in range(args.repeat)])
            remote = best([curate(["langid", "s3://bench/in", "-o", f"s3://bench/out-{i}"], env)
                           for i in range(args.repeat)])
            reference = {p.name: file_checksum(p) for p in sorted((root / "out-0").glob("part-*.parquet"))}
            fs.get("bench/out-0/", str(root / "remote-copy"), recursive=True)
            copied = {p.name: file_checksum(p) for p in sorted((root / "remote-copy").glob("part-*.parquet"))}
            assert copied == reference, "s3 output differs from the local output"

            raw_runs = []
            for i in range(args.repeat):
                started = time.perf_counter()
                fs.get("bench/in/", str(root / f"raw-in-{i}"), recursive=True)
                for shard in sorted((root / "out-0").glob("part-*.parquet")):
                    fs.put_file(str(shard), f"bench/raw-out-{i}/{shard.name}")
                raw_runs.append(time.perf_counter() - started)
            raw = min(raw_runs)

            fs.pipe({f"bench/many/d{i % 10}/part-{i:06d}.jsonl": b'{"text": "x"}\n' for i in range(args.keys)})
            from curate.io.inputs import resolve_inputs
            from curate.io.storage import configure

            configure(None, 5)
            started = time.perf_counter()
            files = resolve_inputs(["s3://bench/many"])
            listing = time.perf_counter() - started
            started = time.perf_counter()
            found = fs.find("bench/many")
            raw_listing = time.perf_counter() - started
            assert len(files) == len(found) == args.keys
    finally:
        server.stop()

    rows = [
        ("local disk → local disk", local[0], local[1]),
        ("s3 → s3 (curate)", remote[0], remote[1]),
    ]
    print("\n| run | seconds | docs/s | peak RSS MB |\n|---|---:|---:|---:|")
    for name, seconds, rss in rows:
        print(f"| {name} | {seconds:.2f} | {docs / seconds:,.0f} | {rss} |")
    print(f"| raw s3fs transfer of the same bytes (get inputs, put shards) | {raw:.2f} | | |")
    print(f"\ns3 / local: {remote[0] / local[0]:.2f}×  ·  s3 / (local + raw transfer): "
          f"{remote[0] / (local[0] + raw):.2f}×  ·  in-stage s3 {remote[2]['wall_seconds']:.2f} s vs local "
          f"{local[2]['wall_seconds']:.2f} s")
    print(f"listing {args.keys:,} keys: resolve_inputs {listing:.2f} s, s3fs find {raw_listing:.2f} s "
          f"({listing / raw_listing:.2f}×)")


if __name__ == "__main__":
    main()
