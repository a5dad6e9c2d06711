"""`curate report` on a real multi-stage run over ../shared/data: FineWeb2's calibrated language ID, MinHash
dedup and per-language quality with --rejected outputs, a quality annotation branch, a RegMix search and the
mixture it chose, and three packs of it (buckets, Megatron, --compare). Checked as text against the stages'
own numbers and, when Debian's chromium is installed, in a headless browser (required in CI; the screenshot
is kept in $CURATE_TEST_ARTIFACTS when that names a folder)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html import escape
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from curate.cli.main import app
from curate.report import build_report, samples
from curate.report.data import discover

runner = CliRunner()
CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
RECIPES = Path(__file__).resolve().parent.parent / "recipes"


def _curate(*args: str) -> None:
    result = runner.invoke(app, [*args, "-q"])
    assert result.exit_code == 0, result.output


def _pick(table: pa.Table, n: int, source: str, max_chars: int = 4000) -> pa.Table:
    """``n`` rows spread over ``table`` (texts under ``max_chars``), as id, text, source."""
    table = table.filter(pc.less(pc.utf8_length(table["text"]), max_chars))
    rows = list(range(0, table.num_rows, max(1, table.num_rows // n)))[:n]
    table = table.take(rows)
    return pa.table({"id": pc.cast(table["id"], pa.string()), "text": table["text"],
                     "source": pa.array([source] * table.num_rows)})


def _corpus(data: Path, path: Path) -> None:
    """Web pages in five languages, movie reviews, speeches, chat lines, UDHR paragraphs and e-mails (some
    with the same body under different headers): what a small crawl-and-curate run meets."""
    misc = pq.read_table(data / "english" / "misc.parquet")
    udhr = pq.read_table(data / "udhr" / "paragraphs.parquet")
    mail = pq.read_table(data / "spamassassin" / "emails.parquet")
    bodies = pc.value_counts(mail["body_md5"]).to_pylist()
    repeated = [v["values"] for v in sorted(bodies, key=lambda v: (-v["counts"], v["values"]))[:6]]
    parts = [
        _pick(pq.read_table(data / "web" / "trafilatura_pages.parquet"), 90, "web"),
        _pick(misc.filter(pc.equal(misc["source"], "nltk-movie_reviews")), 40, "reviews"),
        _pick(misc.filter(pc.is_in(misc["source"], pa.array(["nltk-state_union", "nltk-inaugural"]))), 16,
              "speeches", 12_000),
        _pick(misc.filter(pc.equal(misc["source"], "nltk-webtext")), 10, "chat"),
        _pick(udhr.filter(pc.is_in(udhr["lang"], pa.array(["de", "fr", "es", "pl"]))), 12, "udhr"),
        _pick(mail.filter(pc.is_in(mail["body_md5"], pa.array(repeated))), 24, "email", 20_000),
        _pick(mail, 12, "email"),
    ]
    path.parent.mkdir(parents=True)
    pq.write_table(pa.concat_tables(parts), path)


@pytest.fixture(scope="module")
def run_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("report")
    _corpus(shared_data, root / "input" / "docs.parquet")
    work = root / "run"
    recipe = {
        "name": "report-test", "inputs": [str(root / "input")], "work_dir": str(work),
        "stages": [
            {"langid": {}},
            {"langid-calibrate": {"min_docs": 10, "output": "${work_dir}/thresholds.yaml"}},
            {"langid": {"thresholds": "${work_dir}/thresholds.yaml", "keep": ["en", "de", "es", "fr"],
                        "rejected": "${work_dir}/03-langid.rejected"}},
            {"dedup-minhash": {"threshold": 0.7, "rejected": "${work_dir}/04-dedup.rejected"}},
            {"quality": {"filters": ["gopher-repetition", "gopher-quality"],
                         "config": str(RECIPES / "multilingual-quality.yaml"), "lang_column": "lang",
                         "rejected": "${work_dir}/05-quality.rejected"}},
            {"mix-stats": {"domain_column": "source", "output": "${work_dir}/stats.json"}},
            {"mix-propose": {"stats": "${work_dir}/stats.json", "n": 64, "seed": 1, "token_budget": 20_000,
                             "output": "${work_dir}/mixtures.csv"}},
            {"mix-proxy": {"domain_column": "source", "mixtures": "${work_dir}/mixtures.csv", "valid_bytes": 400,
                           "output": "${work_dir}/results.csv"}},
            {"mix-fit": {"mixtures": "${work_dir}/mixtures.csv", "results": "${work_dir}/results.csv",
                         "target": "bpb/mean", "folds": 4, "iterations": 200, "output": "${work_dir}/model"}},
            {"mix-optimize": {"model": "${work_dir}/model", "n_sim": 2000, "top_k": 20,
                              "output": "${work_dir}/weights.yaml"}},
            {"mix-apply": {"domain_column": "source", "weights": "${work_dir}/weights.yaml", "tokens": 20_000}},
            {"pack": {"tokenizer": str(shared_data / "tokenizers" / "gpt2.json"), "keep_columns": ["mix_domain"]}},
        ],
    }
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    _curate("run", str(root / "recipe.yaml"))
    # branches: the quality signals of the same documents, and two more packs of the mixture
    _curate("quality", str(work / "04-dedup-minhash"), "-o", str(work / "05-quality-signals"), "--mode", "annotate",
            "--filters", "gopher-repetition,gopher-quality", "--config", str(RECIPES / "multilingual-quality.yaml"))
    # a fastText quality classifier trained on what the heuristics kept vs removed, filtering at 0.5
    _curate("quality", "train", "--positive", str(work / "05-quality"), "--negative", str(work / "05-quality.rejected"),
            "-o", str(root / "classifier.bin"), "--epoch", "5")
    _curate("quality", "classify", str(work / "04-dedup-minhash"), "-o", str(work / "06-classify"), "--model",
            str(root / "classifier.bin"), "--min-score", "0.5", "--rejected", str(work / "06-classify.rejected"))
    tokenizer = str(shared_data / "tokenizers" / "gpt2.json")
    _curate("pack", str(work / "11-mix-apply"), "-o", str(work / "12-pack-meg"), "--tokenizer", tokenizer,
            "--strategy", "concat", "--format", "megatron")
    _curate("pack", str(work / "11-mix-apply"), "-o", str(work / "12-cmp"), "--tokenizer", tokenizer, "--compare")
    return work


def _stats(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name / "_stats.json").read_text())


@pytest.fixture(scope="module")
def html(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    output = tmp_path_factory.mktemp("html") / "report.html"
    result = runner.invoke(app, ["report", str(run_dir), "-o", str(output)])
    assert result.exit_code == 0, result.output
    return output.read_text()


def _figures(html: str) -> dict[str, str]:
    return dict(re.findall(r'<figure class="chart" id="chart-([^"]+)"[^>]*>(.*?)</figure>', html, re.S))


def _section(html: str, name: str) -> str:
    match = re.search(rf"<h2 id='{name}'>.*?(?=<h2 id=|<script>)", html, re.S)
    assert match, name
    return match.group(0)


def _rows(table_html: str) -> list[list[str]]:
    return [re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", row) for row in re.findall(r"<tr>(.*?)</tr>", table_html)]


SECTIONS = ["stages", "funnel", "removals", "languages", "signals", "lengths", "dedup", "mixture", "pack",
            "parameters"]


def test_every_section_is_there_self_contained_and_small(html: str) -> None:
    assert re.findall(r"<h2 id='(\w+)'>", html) == SECTIONS
    assert "No data in this run" not in html
    assert not re.search(r'(src|href)="(?!#)', html) and "http" not in html and "@import" not in html
    assert "<script" in html and html.count("<script") == 1  # only the render check; the page needs none
    assert len(html) < 600_000  # sampled examples and pre-binned histograms, never per-document data
    for name, figure in _figures(html).items():
        assert figure.count('class="mark"') >= 1, name


def test_stage_graph_draws_branches_from_recorded_inputs(html: str) -> None:
    rows = {row[0]: row[1:] for row in _rows(_section(html, "stages"))[1:]}
    assert list(rows) == ["01-langid", "03-langid", "04-dedup-minhash", "05-quality", "11-mix-apply", "12-cmp",
                          "12-pack", "12-pack-meg", "05-quality-signals", "06-classify"]
    reads = {name: cells[0] for name, cells in rows.items()}
    assert reads == {"01-langid": "input", "03-langid": "01-langid", "04-dedup-minhash": "03-langid",
                     "05-quality": "04-dedup-minhash", "11-mix-apply": "05-quality", "12-cmp": "11-mix-apply",
                     "12-pack": "11-mix-apply", "12-pack-meg": "11-mix-apply",
                     "05-quality-signals": "04-dedup-minhash", "06-classify": "04-dedup-minhash"}
    assert rows["12-cmp"][3] == "–"  # pack --compare writes statistics, no documents
    assert rows["11-mix-apply"][2] != "–"  # mix apply's documents in
    graph = _figures(html)["graph"]
    assert graph.count("marker-end") == 9  # one arrow per stage that reads another
    funnel = _figures(html)["funnel"]
    assert "12-cmp" not in funnel and ": 0 docs" not in funnel
    assert "12-pack-meg (pack) ← 11-mix-apply" in funnel and "05-quality-signals (quality) ← 04-dedup" in funnel


def test_tokens_are_never_an_estimate_next_to_a_count(html: str, run_dir: Path) -> None:
    funnel = _section(html, "funnel")
    rows = {row[0]: row for row in _rows(funnel.split("<h3>Tokens</h3>")[1])[1:]}
    assert rows["11-mix-apply"][5] == "estimated: bytes / 4 (no --tokenizer)"
    assert rows["12-pack"][5] == "counted with gpt2.json"
    pack = _stats(run_dir, "12-pack")
    assert rows["12-pack"][2:5] == [f"{pack['tokens']['in']:,}", f"{pack['tokens']['out']:,}",
                                    f"{pack['tokens']['dropped_total']:,}"]
    assert "chart-tokens" not in html
    fill_rates = [row[-1] for row in _rows(_section(html, "pack")) if row[0] != "tokens in" and len(row) == 6]
    assert fill_rates and all(re.fullmatch(r"100%|\d\d?\.\d+%", rate) for rate in fill_rates), fill_rates
    assert "100.00%" not in html


def test_removed_documents_are_shown_for_every_reason(html: str, run_dir: Path) -> None:
    removals = _section(html, "removals")
    rejected = pq.read_table(run_dir / "03-langid.rejected")
    for reason in _stats(run_dir, "03-langid")["removed"]:
        assert f"<div class='reason-name'>{reason} (" in removals
    first = rejected.column("text")[0].as_py()[:300]
    assert escape(first) in removals  # escaped, first 300 characters
    quality = re.search(r"id='examples-05-quality'>(.*?)</div></div></div>(?!<div class='reason')", removals, re.S)
    assert quality, "examples from 05-quality's --rejected output"
    reasons = set(re.findall(r"<div class='reason-name'>([^ <]+)", quality.group(1)))
    assert reasons and reasons <= set(_stats(run_dir, "05-quality")["removed"])
    assert "<div class='reason-name'>gopher_quality:min_alpha_words_ratio" in removals
    assert "Examples from its annotated output" in removals  # 05-quality-signals: nothing removed, all shown
    texts = re.findall(r"<div class='doc-text'>(.*?)</div>", removals, re.S)
    assert texts and all(len(t) <= 300 * 6 + 1 for t in texts)


def test_dedup_clusters_show_the_kept_document_beside_the_removed(html: str, run_dir: Path) -> None:
    dedup = _section(html, "dedup")
    removed = pq.read_table(run_dir / "04-dedup.rejected")
    cluster = removed.column("dup_cluster_id")[0].as_py()
    kept = pq.read_table(run_dir / "04-dedup-minhash").filter(pc.equal(pc.field("dup_cluster_id"), cluster))
    assert kept.num_rows == 1
    assert f"kept: {kept.column('id')[0].as_py()}" in dedup
    clusters = len(set(removed.column("dup_cluster_id").to_pylist()))
    assert dedup.count("kept: ") == min(3, clusters) and dedup.count("removed: ") >= min(3, clusters)


def test_languages_after_every_stage_and_the_final_mix(html: str, run_dir: Path) -> None:
    languages = _section(html, "languages")
    assert "Final language mix" in languages and "in 11-mix-apply (mix apply)" in languages
    table = languages.split("<h3>Documents per language after each stage</h3>")[1].split("</table>")[0]
    rows = _rows(table)
    assert rows[0][:6] == ["language", "into 01-langid", "01-langid", "03-langid", "04-dedup-minhash",
                           "05-quality"]
    by_lang = _stats(run_dir, "03-langid")["by_lang"]
    quality = pq.read_table(run_dir / "05-quality", columns=["lang"])
    for row in rows[1:]:
        lang = row[0]
        assert row[1] == f"{_stats(run_dir, '01-langid')['by_lang'][lang]['docs_in']:,}"
        assert row[3] == f"{by_lang[lang]['docs_out']:,}"
        assert row[5] == f"{pc.sum(pc.equal(quality['lang'], lang)).as_py() or 0:,}"
    final = pq.read_table(run_dir / "11-mix-apply", columns=["lang"])
    top = pc.value_counts(final["lang"]).to_pylist()
    lang = max(top, key=lambda v: v["counts"])
    share = 100 * lang["counts"] / final.num_rows
    assert f"{lang['values']} · documents: {share:.2f}%" in _figures(html)["languages"]


def _caption(html: str, chart: str) -> str:
    return re.search(rf'id="chart-{chart}".*?<figcaption>(.*?)</figcaption>', html, re.S).group(1)


def test_signal_histograms_draw_the_thresholds_the_stage_applied(html: str, run_dir: Path) -> None:
    figures = _figures(html)
    langid = _stats(run_dir, "03-langid")
    thresholds = yaml.safe_load((run_dir / "thresholds.yaml").read_text())
    # langid: the output and its --rejected rows together are every document; the share beyond each language's
    # threshold is what the stage removed for its score (the other languages have no threshold: --keep drops them)
    caption = _caption(html, "signal-03-langid-lang_score")
    removed = langid["removed"]["lang_score_below_threshold"] / langid["docs_in"]
    assert f"beyond the thresholds: {100 * removed:.2f}% of documents" in caption
    assert f"thresholds {thresholds['en']:.3g} for en" in caption
    assert 'class="threshold"' in figures["signal-03-langid-lang_score"]
    # quality, annotate mode: each rule removes what the stage counted for it, with per-language thresholds
    signals = _stats(run_dir, "05-quality-signals")
    for column, rule in (("q_alpha_words_ratio", "gopher_quality:min_alpha_words_ratio"),
                         ("q_dup_line_frac", "gopher_repetition:max_dup_line_frac"),
                         ("q_top_2gram_char_frac", "gopher_repetition:max_top_2gram_char_frac")):
        caption = _caption(html, f"signal-05-quality-signals-{column}")
        share = signals["removed"].get(rule, 0) / signals["docs_in"]
        assert rule in caption and f"beyond the thresholds: {100 * share:.2f}% of documents" in caption, caption
    # the classifier: its --min-score over what it kept and what it rejected
    classify = _stats(run_dir, "06-classify")
    caption = _caption(html, "signal-06-classify-quality_score")
    share = sum(classify["removed"].values()) / classify["docs_in"]
    assert "min_score 0.5" in caption and f"beyond the thresholds: {100 * share:.2f}% of documents" in caption
    words = _caption(html, "signal-05-quality-signals-q_word_count")
    assert "min_doc_words 50" in words and "max_doc_words 1e+05" in words


def test_parameters_thresholds_and_version(html: str, run_dir: Path) -> None:
    parameters = _section(html, "parameters")
    import curate

    assert f"curate {curate.__version__}" in parameters
    thresholds = yaml.safe_load((run_dir / "thresholds.yaml").read_text())
    calibrated = parameters.split("Per-language thresholds")[1].split("</table>")[0]
    assert {row[0]: float(row[1]) for row in _rows(calibrated)[1:]} == pytest.approx(thresholds, abs=1e-4)
    quality = parameters.split("Thresholds as applied per language")[1].split("</table>")[0]
    rows = {row[0]: row for row in _rows(quality)}
    assert rows["gopher_quality:min_doc_words"][2] == "50"


def test_mixture_search_and_pack_domains(html: str, run_dir: Path) -> None:
    mixture = _section(html, "mixture")
    model = json.loads((run_dir / "model" / "model.json").read_text())
    assert f"{model['cv']['lightgbm']['spearman']:,.4g}" in mixture
    weights = yaml.safe_load((run_dir / "weights.yaml").read_text())
    assert f"{weights['predicted']:,.4g}" in mixture
    stats = json.loads((run_dir / "stats.json").read_text())
    search = _figures(html)["search-weights-11-mix-apply"]
    for domain, row in stats["domains"].items():
        assert f"{domain} · natural (token share): {100 * row['token_share']:.2f}%" in search
        assert f"{domain} · optimised: {100 * weights['weights'][domain]:.2f}%" in search
    assert _figures(html)["search-fit-11-mix-apply"].count("<circle") >= 20
    pack = _figures(html)["pack-12-pack"]
    buckets = _stats(run_dir, "12-pack")["buckets"]
    drawn: dict[str, float] = {}
    for bucket, _domain, value in re.findall(r"<title>(bucket_\d+) · (\w+): ([\d,.]+)", pack):
        drawn[bucket] = drawn.get(bucket, 0) + float(value.replace(",", ""))
    assert drawn == {name: b["tokens"] for name, b in buckets.items() if b["tokens"]}


def test_missing_sections_are_skipped(tmp_path: Path, run_dir: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copytree(run_dir / "04-dedup-minhash", partial / "04-dedup-minhash")
    html = build_report(partial)
    assert re.findall(r"<h2 id='(\w+)'>", html) == ["stages", "funnel", "removals", "languages", "lengths", "dedup",
                                                     "parameters"]
    assert "No data in this run for: signals, mixture, pack." in html
    result = runner.invoke(app, ["report", str(tmp_path / "nothing-here"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_one_stage_output_gives_a_one_stage_report(run_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["report", str(run_dir / "03-langid"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "r.html").read_text()
    assert "1 stage outputs" in html
    assert {"graph", "funnel", "removed-03-langid", "languages", "lengths"} <= set(_figures(html))


def test_stage_tree_resolves_each_input_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large run's plans list hundreds of shards per stage: ordering the stages resolves each path once, not
    once per pair of stages compared."""
    shards = 300
    for name, reads in (("01-langid", None), ("02-quality", "01-langid"), ("03-dedup", "02-quality")):
        folder = tmp_path / name
        folder.mkdir()
        parent = tmp_path / reads if reads else Path("/data/in")
        inputs = [{"path": str(parent / f"part-{i:05d}.parquet")} for i in range(shards)]
        (folder / "_plan.json").write_text(json.dumps({"stage": name[3:], "inputs": inputs}))
    calls = 0
    original = Path.resolve

    def counted(self, strict=False):
        nonlocal calls
        calls += 1
        return original(self, strict)

    monkeypatch.setattr(Path, "resolve", counted)
    stages = discover(tmp_path)
    assert [(s.name, s.reads) for s in stages] == [("01-langid", None), ("02-quality", "01-langid"),
                                                   ("03-dedup", "02-quality")]
    assert calls <= 3 * shards + 10, calls


def test_reads_stay_within_their_budgets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large output (120,000 documents in 60 row groups, with a --rejected output) is read only as far as
    the budgets allow, and its counts say they are estimates."""
    out, rejected = tmp_path / "run" / "01-langid", tmp_path / "run" / "01-langid.rejected"
    n = 120_000
    langs = pa.array(["en", "de", "fr", "es"] * (n // 4))
    scores = pc.divide(pa.array(range(n), pa.float32()), float(n))
    table = pa.table({"id": pa.array([f"d{i}" for i in range(n)]), "text": pa.array(["lorem ipsum " * 8] * n),
                      "lang": langs, "lang_score": scores})
    for folder, rows, stage in ((out, table.slice(n // 10), "langid"), (rejected, table.slice(0, n // 10),
                                                                        "langid:rejected")):
        folder.mkdir(parents=True)
        if stage.endswith("rejected"):
            rows = rows.append_column("reason", pa.array(["lang_score_below_min"] * rows.num_rows))
        pq.write_table(rows, folder / "part-00000.parquet", row_group_size=2_000)
        plan = {"stage": stage, "inputs": [{"path": "/data/in.parquet"}],
                "parameters": {"min_score": 0.1, "keep": []}}
        (folder / "_manifest.json").write_text(json.dumps({**plan, "rows": rows.num_rows, "curate_version": "0"}))
        (folder / "_plan.json").write_text(json.dumps(plan))
    (out / "_stats.json").write_text(json.dumps({"stage": "langid", "docs_in": n, "docs_out": n - n // 10,
                                                 "removed": {"lang_score_below_min": n // 10}}))
    budgets = {"text": 3_000, "short": 20_000, "signals": 5_000, "examples": 1_000, "sequences": 100}
    monkeypatch.setattr(samples, "BUDGETS", budgets)
    reads: list[tuple[tuple[str, ...], int]] = []
    original = samples._read_group

    def counted(file, group, columns, limit):
        result = original(file, group, columns, limit)
        reads.append((tuple(columns), result.num_rows if result is not None else 0))
        return result

    monkeypatch.setattr(samples, "_read_group", counted)
    html = build_report(tmp_path / "run")
    text_rows = sum(rows for columns, rows in reads if "text" in columns)
    short_rows = sum(rows for columns, rows in reads if "text" not in columns)
    # lengths before and after (one output: read twice), characters per language, examples
    assert text_rows <= 3 * budgets["text"] + budgets["examples"], text_rows
    # language codes, then the signal histograms; the lengths read only the text
    assert short_rows <= budgets["short"] + budgets["signals"], short_rows
    assert "≈" in _section(html, "languages") and "a sample of" in _section(html, "signals")
    assert len(html) < 200_000
    share = re.search(r"beyond the thresholds: ([\d.]+)%", _section(html, "signals")).group(1)
    assert float(share) == pytest.approx(10.0, abs=2.5)  # from a spread sample of output and rejected rows


@pytest.mark.skipif(not CHROMIUM.exists() and not IN_CI,
                    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium); required in CI")
def test_report_renders_in_headless_chromium(run_dir: Path, html: str, tmp_path: Path) -> None:
    assert CHROMIUM.exists(), "CI=true: the rendering test must run, but /usr/bin/chromium is missing (.ci/run installs it)"
    report = tmp_path / "report.html"
    report.write_text(html)
    flags = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--enable-logging=stderr", "--v=0", "--dump-dom", report.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console
    rendered = re.findall(r'<figure class="chart" id="chart-([^"]+)" data-rendered="(\w+)"', dom.stdout)
    assert rendered and sorted(rendered) == sorted((name, "yes") for name in _figures(html))
    assert re.findall(r'<h2 id="(\w+)">', dom.stdout) == SECTIONS
    screenshot = tmp_path / "report.png"
    shot = subprocess.run([*flags, "--window-size=1280,4000", f"--screenshot={screenshot}", report.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and screenshot.stat().st_size > 50_000, shot.stderr[-2000:]
    if os.environ.get("CURATE_TEST_ARTIFACTS"):  # kept for a person to look at, only when asked
        keep = Path(os.environ["CURATE_TEST_ARTIFACTS"])
        keep.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(screenshot, keep / "report.png")
