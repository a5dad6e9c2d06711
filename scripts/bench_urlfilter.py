"""Side by side: `curate urlfilter` against datatrove's URLFilter on the same URLs and the same lists.

Usage:
    .venv/bin/python scripts/bench_urlfilter.py [--urls 120000] [--bench-python .venv-bench/bin/python]

Lists: the UT1 block lists datatrove ships in its assets (``domains``, millions of lines, and ``urls``) and
its banned, soft-banned (threshold 2) and banned-subword lists, extracted to a temporary directory and given
to both tools as files. URLs: the trafilatura pages' URLs, repeated with varied paths and subdomains up to
``--urls``, a tenth of them moved onto domains drawn from the block list (so every rule fires).

datatrove runs in a subprocess under .venv-bench's python (a benchmark-only dependency), one URL at a time
through ``URLFilter.filter`` (tldextract on its bundled public suffix list: no network). curate runs the CLI
(`--mode annotate`, one worker) in a fresh process. Prints decision agreement, the disagreements by kind
(docs/filters.md explains them), and docs/s of both with the ratio, list loading included and not.

`--write-golden tests/data/urlfilter/datatrove.json` records datatrove's reasons for the trafilatura URLs
with the small lists in tests/data/urlfilter/, which tests/test_urlfilter.py checks curate against.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from bench_common import REPO, SHARED, child_env, curate_command, json_summary, run_measured

TEST_LISTS = REPO / "tests" / "data" / "urlfilter"
# datatrove's reasons, as curate names them
REASON_NAMES = {"domain": "blocked_domain", "subdomain": "blocked_domain", "url": "blocked_url",
                "hard_blacklisted": "banned_word", "soft_blacklisted": "soft_banned_words",
                "blacklisted_subword": "banned_subword"}
LIST_FILES = {"domains": "domains", "urls": "urls", "banned_words": "banned_words.txt",
              "soft_banned_words": "soft_banned_words.txt", "banned_subwords": "banned_subwords.txt"}


# -- datatrove side (runs under .venv-bench) -------------------------------------------------------------
def datatrove_worker(urls_path: str, lists: str, out_path: str, threshold: str) -> None:
    import pyarrow.parquet as pq
    from datatrove.data import Document
    from datatrove.pipeline.filters import URLFilter
    from tldextract import TLDExtract

    def lines(name: str) -> list[str]:
        path = Path(lists) / LIST_FILES[name]
        text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
        return [line for line in text.splitlines() if line]  # datatrove reads a blank line as a word ""

    started = time.perf_counter()
    url_filter = URLFilter(soft_word_threshold=int(threshold), extra_domains=lines("domains"),
                           extra_urls=lines("urls"), banned_words=lines("banned_words"),
                           soft_banned_words=lines("soft_banned_words"), banned_subwords=lines("banned_subwords"),
                           use_integrated_lists=False)
    url_filter.tldextractor = TLDExtract(suffix_list_urls=())  # the bundled public suffix list: no network
    url_filter.tldextractor("http://warm.up.example.com/")
    setup = time.perf_counter() - started
    urls = pq.read_table(urls_path, columns=["url"])["url"].to_pylist()
    started = time.perf_counter()
    reasons = []
    for url in urls:
        result = url_filter.filter(Document(text="", id="", metadata={"url": url}))
        reasons.append(None if result is True else REASON_NAMES[result[1]])
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    registered = [url_filter.tldextractor(url).top_domain_under_public_suffix for url in urls]
    Path(out_path).write_text(json.dumps({"setup_seconds": setup, "seconds": seconds, "peak_rss_mb": peak_mb,
                                          "reasons": reasons, "registered_domains": registered}))


def run_datatrove(bench_python: str, urls: Path, lists: Path, out: Path, threshold: int) -> dict:
    subprocess.run([bench_python, __file__, "--datatrove-worker", str(urls), str(lists), str(out), str(threshold)],
                   check=True)
    return json.loads(out.read_text())


# -- curate side ------------------------------------------------------------------------------------------
def curate_flags(lists: Path, threshold: int) -> list[str]:
    block = ",".join(str(lists / LIST_FILES[n]) for n in ("domains", "urls") if (lists / LIST_FILES[n]).exists())
    flags = ["--block", block, "--soft-threshold", str(threshold)]
    for name in ("banned_words", "soft_banned_words", "banned_subwords"):
        if (lists / LIST_FILES[name]).exists():
            flags += [f"--{name.replace('_', '-')}", str(lists / LIST_FILES[name])]
    return flags


def curate_in_process(urls: list[str], lists: Path, threshold: int, batch: int = 10_000) -> tuple[float, float]:
    """Seconds to load the lists and to decide every URL, in this process (one thread)."""
    import polars as pl

    from curate.stages.urlfilter import UrlFilterParams, UrlFilterStage

    files = {n: str(lists / LIST_FILES[n]) for n in LIST_FILES if (lists / LIST_FILES[n]).exists()}
    stage = UrlFilterStage(UrlFilterParams(block=[files[n] for n in ("domains", "urls") if n in files],
                                           banned_words=files.get("banned_words"),
                                           soft_banned_words=files.get("soft_banned_words"),
                                           banned_subwords=files.get("banned_subwords"), soft_threshold=threshold))
    started = time.perf_counter()
    stage.setup()
    loaded = time.perf_counter()
    column = pl.Series(urls)
    for start in range(0, len(urls), batch):
        stage.reasons(column.slice(start, batch))
    return loaded - started, time.perf_counter() - loaded


def intermediate_domain(urls: list[str], registered: list[str], lists: Path) -> list[bool]:
    """Whether a listed domain of each URL's host is an intermediate one: neither the host itself nor its
    registered domain (what datatrove looks up), e.g. ``x.blogspot.co.nz`` for ``www.x.blogspot.co.nz``."""
    import polars as pl

    from curate.stages.urlfilter import StringSet, UrlList, parse_entries, read_lines, split_url, string_keys

    domains, _ = parse_entries(read_lines(str(lists / "domains"), "--block"))
    listed = set(domains.to_list())
    hosts, _ = split_url(pl.Series(urls))
    result = []
    for host, top in zip(hosts.to_list(), registered, strict=True):
        labels = host.split(".")
        parents = {".".join(labels[i:]) for i in range(1, len(labels))}
        result.append(bool((parents & listed) - {top}) and host not in listed and top not in listed)
    assert UrlList(StringSet([string_keys(domains)]), StringSet([])).domain_hits(hosts).any()
    return result


def curate_reasons(out: Path) -> list[str | None]:
    import polars as pl

    return pl.read_parquet(out / "*.parquet").sort("id")["url_blocked_reason"].to_list()


# -- inputs -----------------------------------------------------------------------------------------------
def real_urls(data: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [u for u in pq.read_table(data / "web" / "trafilatura_pages.parquet", columns=["url"])["url"].to_pylist()
            if u]


def write_urls(urls: list[str], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"id": pa.array(range(len(urls)), pa.int64()), "text": [""] * len(urls), "url": urls}),
                   path)


def bench_urls(data: Path, lists: Path, total: int) -> list[str]:
    """Real URLs with varied paths and subdomains; a tenth moved onto block-listed domains."""
    import numpy as np

    real = real_urls(data)
    with (lists / "domains").open(encoding="utf-8", errors="replace") as fh:
        blocked = [line.strip() for i, line in enumerate(fh) if i % 200 == 0 and line.strip()]
    rng = np.random.default_rng(0)
    urls = []
    for i in range(total):
        url, draw = real[i % len(real)], rng.random()
        scheme, _, rest = url.partition("://")
        host, _, path = rest.partition("/")
        if draw < 0.1:
            host = ("www." if draw < 0.05 else "") + blocked[int(rng.integers(len(blocked)))]
        elif draw < 0.3:
            host = f"m{i % 7}.{host}"
        urls.append(f"{scheme}://{host}/{path}{'' if draw < 0.5 else f'?page={i}'}")
    return urls


def extract_lists(bench_python: str, target: Path) -> None:
    """datatrove's bundled UT1 lists and word lists, as plain files (never part of curate)."""
    assets = Path(subprocess.run([bench_python, "-c", "from datatrove.utils._import_utils import ASSETS_PATH; "
                                  "print(ASSETS_PATH)"], check=True, capture_output=True, text=True).stdout.strip())
    with tarfile.open(assets / "url_filterblacklistsv0_3_0.tar.gz") as tar:
        tar.extractall(target, filter="data")
    for name in ("banned_words.txt", "soft_banned_words.txt", "banned_subwords.txt"):
        (target / name).write_bytes((assets / name).read_bytes())


def write_golden(data: Path, bench_python: str, target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        urls_path = Path(tmp) / "urls.parquet"
        urls = real_urls(data)
        write_urls(urls, urls_path)
        lists = Path(tmp) / "lists"
        lists.mkdir()
        for name, file in (("domains", "domains.txt"), ("urls", "urls.txt"), ("banned_words", "banned_words.txt"),
                           ("soft_banned_words", "soft_banned_words.txt"),
                           ("banned_subwords", "banned_subwords.txt")):
            (lists / LIST_FILES[name]).write_bytes((TEST_LISTS / file).read_bytes())
        result = run_datatrove(bench_python, urls_path, lists, Path(tmp) / "dt.json", 2)
    target.write_text(json.dumps(dict(zip(urls, result["reasons"], strict=True)), indent=1, sort_keys=True) + "\n")
    print(f"{target}: {len(urls)} URLs, {sum(r is not None for r in result['reasons'])} removed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--urls", type=int, default=120_000)
    parser.add_argument("--bench-python", default=str(REPO / ".venv-bench" / "bin" / "python"))
    parser.add_argument("--write-golden", type=Path, metavar="JSON",
                        help="write datatrove's reasons for the test URLs (tests/data/urlfilter/datatrove.json)")
    args = parser.parse_args()
    if args.write_golden:
        write_golden(args.data, args.bench_python, args.write_golden)
        return
    import os

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        lists = tmp / "lists"
        extract_lists(args.bench_python, lists)
        urls = bench_urls(args.data, lists, args.urls)
        write_urls(urls, tmp / "urls.parquet")
        print(f"{len(urls):,} URLs; {sum(1 for _ in (lists / 'domains').open('rb')):,} block-listed domains; "
              f"load {os.getloadavg()}", file=sys.stderr)
        ours = run_measured(curate_command("urlfilter", str(tmp / "urls.parquet"), "-o", str(tmp / "out"),
                                           "--mode", "annotate", "--json", "-q", *curate_flags(lists, 2)),
                            env=child_env({"POLARS_MAX_THREADS": "1", "NUMBA_NUM_THREADS": "1"}))
        stats = json_summary(ours.stdout)
        mine = curate_reasons(tmp / "out")
        theirs_run = run_measured([args.bench_python, __file__, "--datatrove-worker", str(tmp / "urls.parquet"),
                                   str(lists), str(tmp / "dt.json"), "2"])
        theirs = json.loads((tmp / "dt.json").read_text())
        load_seconds, decide_seconds = curate_in_process(urls, lists, 2)
        kinds = intermediate_domain([u for u, a, b in zip(urls, mine, theirs["reasons"], strict=True) if a and not b],
                                    [r for r, a, b in zip(theirs["registered_domains"], mine, theirs["reasons"],
                                                          strict=True) if a and not b], lists)
    agree = sum((a is None) == (b is None) for a, b in zip(mine, theirs["reasons"], strict=True))
    same_reason = sum(a == b for a, b in zip(mine, theirs["reasons"], strict=True))
    only_curate = [u for u, a, b in zip(urls, mine, theirs["reasons"], strict=True) if a and not b]
    only_datatrove = [u for u, a, b in zip(urls, mine, theirs["reasons"], strict=True) if b and not a]
    n = len(urls)
    dt_total = theirs["setup_seconds"] + theirs["seconds"]
    print(f"\n{'tool':<44}{'docs/s':>12}{'seconds':>10}{'peak RSS MB':>13}{'vs datatrove':>14}")
    print(f"{'datatrove URLFilter, lists + filter':<44}{n / dt_total:>12,.0f}{dt_total:>10.2f}"
          f"{theirs_run.peak_rss_kb / 1024:>13.0f}{1:>14.1f}")
    print(f"{'datatrove URLFilter, filter only':<44}{n / theirs['seconds']:>12,.0f}{theirs['seconds']:>10.2f}")
    print(f"{'curate urlfilter, 1 core, whole command':<44}{n / ours.seconds:>12,.0f}{ours.seconds:>10.2f}"
          f"{ours.peak_rss_kb / 1024:>13.0f}{dt_total / ours.seconds:>14.1f}")
    print(f"{'curate urlfilter, 1 thread, in-process':<44}{n / (load_seconds + decide_seconds):>12,.0f}"
          f"{load_seconds + decide_seconds:>10.2f}{'':>13}{dt_total / (load_seconds + decide_seconds):>14.1f}")
    print(f"{'curate urlfilter, 1 thread, filter only':<44}{n / decide_seconds:>12,.0f}{decide_seconds:>10.2f}"
          f"{'':>13}{theirs['seconds'] / decide_seconds:>14.1f}  (vs datatrove filter only)")
    print(f"  list loading: curate {load_seconds:.2f} s, datatrove {theirs['setup_seconds']:.2f} s; "
          f"curate blocked: {stats.get('blocked')}")
    print(f"\nkeep/remove agreement: {100 * agree / n:.3f}% of {n:,} URLs; same reason: {100 * same_reason / n:.3f}%")
    others = [u for u, k in zip(only_curate, kinds, strict=True) if not k]
    ip_hosts = [u for u in others if re.match(r"^[a-z]+://[0-9.]+(?:[:/]|$)", u)]
    print(f"removed by curate only: {len(only_curate)}, of which {sum(kinds)} through an intermediate listed "
          f"domain and {len(ip_hosts)} listed IP addresses (docs/filters.md), e.g. {only_curate[:3]}")
    print(f"  others: {[u for u in others if u not in ip_hosts][:10]}")
    print(f"removed by datatrove only: {len(only_datatrove)}, e.g. {only_datatrove[:5]}")
    print(f"load after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--datatrove-worker":
        datatrove_worker(*sys.argv[2:])
    else:
        main()
