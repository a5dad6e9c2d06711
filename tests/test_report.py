"""`curate report`: a real pipeline run (sample → langid → dedup → mix → pack) rendered as one HTML file,
checked as text and, when Debian's chromium is installed, in a headless browser (required in CI; the
screenshot is kept in $CURATE_TEST_ARTIFACTS when that names a folder)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from curate.cli.demo import write_sample
from curate.cli.main import app
from curate.report import build_report

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"


def _curate(*args: str) -> None:
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    write_sample(root / "sample", 600, 1)
    _curate("langid", str(root / "sample"), "-o", str(root / "01-langid"), "--min-score", "0.5")
    _curate("dedup", "minhash", str(root / "01-langid"), "-o", str(root / "02-dedup"), "--threshold", "0.5")
    (root / "weights.yaml").write_text("web: 0.7\nbooks: 0.3\n")
    _curate("mix", "apply", str(root / "02-dedup"), "-o", str(root / "03-mix"), "--weights",
            str(root / "weights.yaml"), "--tokens", "40000", "--domain-column", "source")
    _curate("tokenizer", "train", str(root / "sample"), "-o", str(root / "tokenizer.json"), "--vocab-size", "400")
    _curate("pack", str(root / "03-mix"), "-o", str(root / "04-pack"), "--tokenizer", str(root / "tokenizer.json"))
    return root


EXPECTED_CHARTS = ["funnel", "tokens", "removed-01-langid", "removed-02-dedup", "languages", "lengths",
                   "clusters-02-dedup", "mixture-03-mix", "pack-04-pack", "dropped-04-pack"]


def _figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="chart" id="chart-([^"]+)"[^>]*>(.*?)</figure>', html, re.S))


def test_report_has_every_section_with_the_run_numbers(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    figures = _figures(html)
    assert sorted(figures) == sorted(EXPECTED_CHARTS)
    for name, figure in figures.items():
        assert figure.count('class="mark"') >= 1, name
    # self-contained: no external reference of any kind
    assert not re.search(r'(src|href)="(?!#)', html) and "http" not in html and "@import" not in html
    # the funnel and the languages carry the stages' own counts
    import json

    langid = json.loads((run_dir / "01-langid" / "_stats.json").read_text())
    assert f"{langid['docs_out']:,} docs" in figures["funnel"]
    top = max(langid["by_lang"].items(), key=lambda kv: kv[1]["docs_in"])
    assert f"{top[0]} · documents in: {top[1]['docs_in']:,}" in figures["languages"]
    assert "web · target: 70.00%" in figures["mixture-03-mix"]


def test_missing_sections_are_skipped(tmp_path: Path, run_dir: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copytree(run_dir / "sample", partial / "sample")
    html = build_report(partial)
    assert sorted(_figures(html)) == ["funnel", "lengths"]
    assert "No data in this run for: languages, dedup, mixture, pack." in html
    result = runner.invoke(app, ["report", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "not a directory" in result.output


def _overview_rows(html: str) -> dict[str, list[str]]:
    """The funnel table: output name → its other cells (as text)."""
    table = re.search(r"<h2 id='funnel'>Funnel</h2><table>(.*?)</table>", html, re.S).group(1)
    rows = [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table)]
    return {row[0]: row[1:] for row in rows[1:]}


def test_one_stage_output_gives_a_one_stage_report(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(run_dir / "01-langid"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "1 stage outputs" in html and list(_overview_rows(html)) == ["01-langid"]
    assert {"funnel", "removed-01-langid", "languages", "lengths"} <= set(_figures(html))


def test_branches_are_drawn_as_siblings_of_the_stage_they_read(run_dir: Path, tmp_path: Path) -> None:
    """Three outputs made from 03-mix (a pack, a Megatron pack, a --compare) read as three branches of 03-mix,
    not as a chain; the comparison, which writes no documents, shows no document count."""
    branched = tmp_path / "run"
    branched.mkdir()
    for stage in ("sample", "01-langid", "02-dedup", "03-mix", "04-pack"):
        (branched / stage).symlink_to(run_dir / stage)
    tokenizer = str(run_dir / "tokenizer.json")
    _curate("pack", str(run_dir / "03-mix"), "-o", str(branched / "04-pack-meg"), "--tokenizer", tokenizer,
            "--strategy", "concat", "--format", "megatron")
    _curate("pack", str(run_dir / "03-mix"), "-o", str(branched / "04-cmp"), "--tokenizer", tokenizer, "--compare")
    html = build_report(branched)
    rows = _overview_rows(html)
    assert list(rows) == ["sample", "01-langid", "02-dedup", "03-mix", "04-cmp", "04-pack", "04-pack-meg"]
    reads = {name: cells[0] for name, cells in rows.items()}
    assert reads == {"sample": "input", "01-langid": "sample", "02-dedup": "01-langid", "03-mix": "02-dedup",
                     "04-cmp": "03-mix", "04-pack": "03-mix", "04-pack-meg": "03-mix"}
    assert rows["04-cmp"][3] == "–"  # docs out: none written
    funnel = _figures(html)["funnel"]
    assert "04-cmp (pack)" not in funnel and ": 0 docs" not in funnel
    assert "04-pack (pack) ← 03-mix" in funnel and "04-pack-meg (pack) ← 03-mix" in funnel
    assert "02-dedup (dedup-minhash) ←" not in funnel  # a chain reads on without arrows


@pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI,
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); required in CI")
def test_report_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "CI=true: the rendering test must run, but /usr/bin/chromium is missing (.ci/run installs it)"
    report = tmp_path / "report.html"
    runner.invoke(app, ["report", str(run_dir), "-o", str(report)])
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    rendered = re.findall(r'<figure class="chart" id="chart-([^"]+)" data-rendered="(\w+)"', dom.stdout)
    assert sorted(rendered) == sorted((name, "yes") for name in EXPECTED_CHARTS)
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*flags, "--window-size=1100,4200", f"--screenshot={screenshot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]
    if os.environ.get("CURATE_TEST_ARTIFACTS"):  # kept for a person to look at, only when asked
        keep = Path(os.environ["CURATE_TEST_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, keep / "report.png")
