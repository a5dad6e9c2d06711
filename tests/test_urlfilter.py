"""`curate urlfilter` takes datatrove's URLFilter decisions on real URLs, plus subdomain and prefix matching.

datatrove's reasons for the trafilatura pages' URLs with the lists in tests/data/urlfilter/ were recorded by
``scripts/bench_urlfilter.py --write-golden tests/data/urlfilter/datatrove.json`` (datatrove is a
benchmark-only dependency).
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io.errors import InputError, UsageError
from curate.io.inputs import Columns
from curate.stages.urlfilter import UrlFilterParams, UrlFilterStage, parse_entries

REPO = Path(__file__).resolve().parent.parent
LISTS = REPO / "tests" / "data" / "urlfilter"
COLUMNS = Columns("text", "id")
# documented differences: an intermediate domain and a path prefix on the lists, which datatrove never matches
CURATE_ONLY = {"http://www.colours-of-the-soul.alhelm.net",
               "https://www.bmjv.de/DE/Verbraucherportal/KonsumImAlltag/TransparenzPreisanpassung/"
               "TransparenzPreisanpassung_node.html"}


def test_lists_params(**extra) -> UrlFilterParams:
    return UrlFilterParams(block=[str(LISTS / "domains.txt"), str(LISTS / "urls.txt")],
                           banned_words=str(LISTS / "banned_words.txt"),
                           soft_banned_words=str(LISTS / "soft_banned_words.txt"),
                           banned_subwords=str(LISTS / "banned_subwords.txt"), **extra)


test_lists_params.__test__ = False  # type: ignore[attr-defined]


def reasons(stage: UrlFilterStage, urls: list[str | None]) -> list[str | None]:
    batch = pa.RecordBatch.from_pydict({"text": [""] * len(urls), "url": pa.array(urls, pa.string())})
    return stage.process(batch, COLUMNS).kept.column("url_blocked_reason").to_pylist()


def test_same_decisions_as_datatrove_on_real_urls(shared_data: Path):
    golden = json.loads((LISTS / "datatrove.json").read_text())
    urls = [u for u in pq.read_table(shared_data / "web" / "trafilatura_pages.parquet")["url"].to_pylist() if u]
    assert set(urls) == set(golden)
    ours = dict(zip(urls, reasons(UrlFilterStage(test_lists_params(mode="annotate")), urls), strict=True))
    differ = {u for u in urls if ours[u] != golden[u]}
    assert differ == CURATE_ONLY, sorted(differ)
    assert {golden[u] for u in CURATE_ONLY} == {None}
    assert {ours[u] for u in CURATE_ONLY} == {"blocked_domain", "blocked_url"}
    assert set(golden.values()) == {None, "blocked_domain", "blocked_url", "banned_word", "soft_banned_words",
                                    "banned_subword"}  # every rule is exercised


def test_subdomains_words_soft_threshold_and_allow(tmp_path: Path):
    allow = tmp_path / "allow.txt"
    allow.write_text("# keep this one\ngood.boingboing.net\nhttps://chip.de/ok/\n")
    stage = UrlFilterStage(test_lists_params(allow=[str(allow)], soft_threshold=2, mode="annotate"))
    urls = ["http://A.B.BoingBoing.net.:8080/x", "http://good.boingboing.net/blog", "https://chip.de/ok/page",
            "https://log.wordpress.com/", "https://x.en.blog.wordpress.com/", "https://a.org/blogs/weblog",
            "https://a.org/Blog/", "https://a.org/la/the-page", "https://a.org/la/page", "https://a.org/Welt-Stadt",
            None, ""]
    assert reasons(stage, urls) == ["blocked_domain", None, None, None, "blocked_domain", None, None,
                                    "soft_banned_words", None, "banned_subword", None, None]


def test_hosts_and_ut1_formats():
    domains, urls = parse_entries(pl.Series(["# hosts file", "0.0.0.0 ads.example.com  tracker.example.org # two names",
                                   "127.0.0.1 localhost", "::1 ip6-localhost", "*.wild.example.net",
                                   "Example.COM.", "http://www.site.org/path/", "site.org/other?x=1", ""]))
    assert sorted(domains.to_list()) == ["ads.example.com", "example.com", "tracker.example.org",
                                         "wild.example.net"]
    assert sorted(urls.to_list()) == ["site.org/other?x=1", "site.org/path"]


def test_filter_mode_counts_and_rejected(tmp_path: Path, shared_data: Path):
    from curate.io.options import IOOptions
    from curate.registry import STAGES

    source = shared_data / "web" / "trafilatura_pages.parquet"
    io = IOOptions(inputs=[str(source)], output=str(tmp_path / "out"), quiet=True)
    summary = STAGES["urlfilter"].run(test_lists_params(), io, rejected=str(tmp_path / "rejected"))
    golden = json.loads((LISTS / "datatrove.json").read_text())
    removed_by_datatrove = sum(r is not None for r in golden.values())
    assert sum(summary["removed"].values()) == removed_by_datatrove + len(CURATE_ONLY)
    stats = json.loads((tmp_path / "out" / "_stats.json").read_text())
    assert stats["no_url"] == pq.read_table(source)["url"].null_count
    kept = pl.read_parquet(tmp_path / "out" / "*.parquet")
    rejected = pl.read_parquet(tmp_path / "rejected" / "*.parquet")
    assert kept.height + rejected.height == pq.read_metadata(source).num_rows
    assert "url_blocked_reason" not in kept.columns
    assert rejected["url_blocked_reason"].value_counts().height == 5


def test_errors(tmp_path: Path):
    with pytest.raises(UsageError, match="nothing to filter on"):
        UrlFilterStage(UrlFilterParams())
    with pytest.raises(UsageError, match="no such file"):
        UrlFilterStage(UrlFilterParams(block=[str(tmp_path / "missing.txt")]))
    stage = UrlFilterStage(test_lists_params())
    with pytest.raises(InputError, match="column 'url'"):
        stage.process(pa.RecordBatch.from_pydict({"text": ["a"], "link": ["http://x.org"]}), COLUMNS)
    with pytest.raises(InputError, match="expected URLs as strings"):
        stage.process(pa.RecordBatch.from_pydict({"text": ["a"], "url": [1]}), COLUMNS)


def test_gzipped_lists(tmp_path: Path):
    packed = tmp_path / "domains.txt.gz"
    packed.write_bytes(gzip.compress((LISTS / "domains.txt").read_bytes()))
    stage = UrlFilterStage(UrlFilterParams(block=[str(packed)], mode="annotate"))
    assert reasons(stage, ["https://x.chip.de/a", "https://chip.com/"]) == ["blocked_domain", None]
    broken = tmp_path / "broken.gz"
    broken.write_text("chip.de\n")
    with pytest.raises(UsageError, match="not a readable gzip file"):
        UrlFilterStage(UrlFilterParams(block=[str(broken)])).setup()


def test_cli_missing_url_column_exits_3(tmp_path: Path, shared_data: Path):
    """Also: the stage fails while the reader thread is still in pyarrow (which aborted the process before
    the reader was stopped and joined: exit 134 about three times in four)."""
    for attempt in range(2):
        result = subprocess.run([sys.executable, "-m", "curate", "urlfilter",
                                 str(shared_data / "web" / "trafilatura_pages.parquet"), "-o",
                                 str(tmp_path / f"o{attempt}"), "--block", str(LISTS / "domains.txt"),
                                 "--url-column", "link", "-q"],
                                capture_output=True, text=True, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
        assert result.returncode == 3, result.stderr
        assert "column 'link'" in result.stderr and "--url-column" in result.stderr
