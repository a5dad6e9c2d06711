"""`curate quality --explain`: the settings a run uses for a language, from the stage's own resolution."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from curate.stages.quality import QualityParams
from curate.stages.quality.config import QualityConfig
from curate.stages.quality.heuristics import explain_settings

REPO = Path(__file__).resolve().parent.parent


def curate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "curate", *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


def test_explain_prints_the_resolved_settings_without_inputs():
    result = curate("quality", "--explain", "--lang", "deu_Latn")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("# quality settings for de (from 'deu_Latn')\n# from: defaults.yaml <- de.yaml")
    shown = yaml.safe_load(result.stdout)
    settings = QualityConfig().settings("de")
    assert shown["stop_words"] == list(settings.stop_words) and "der" in shown["stop_words"]
    assert shown["gopher_repetition"] == settings.gopher_repetition
    assert shown["fineweb"]["max_dup_line_char_ratio"] == settings.fineweb["max_dup_line_char_ratio"] == 0.1
    assert "spaCy's 'de' tokenizer" in result.stdout


def test_explain_follows_config_filters_and_round_trips(tmp_path: Path):
    config = tmp_path / "quality.yaml"
    config.write_text("gopher_quality: {min_doc_words: 80}\nlanguages:\n  de: {fineweb: {max_short_line_ratio: 0.8}}\n")
    lines = explain_settings(QualityParams(config=str(config), filters=["fineweb", "gopher-quality"]), "de")
    assert "<- --config" in lines[1] and "(languages: de)" in lines[1]
    shown = yaml.safe_load("\n".join(lines))
    assert list(shown) == ["word_tokenizer", "stop_words", "fineweb", "gopher_quality"]
    assert shown["fineweb"]["max_short_line_ratio"] == 0.8 and shown["gopher_quality"]["min_doc_words"] == 80
    # what it prints is a valid per-language block giving the same settings
    again = QualityConfig({"languages": {"xx": shown}}).settings("xx")
    assert again.fineweb == shown["fineweb"] and again.gopher_quality == shown["gopher_quality"]
    fallback = yaml.safe_load("\n".join(explain_settings(QualityParams(), "zz")))
    assert fallback["gopher_quality"] == QualityConfig().settings("zz").gopher_quality


def test_without_explain_inputs_and_output_are_still_required():
    for args in (("quality", str(REPO / "README.md")), ("quality", "-o", "somewhere")):
        result = curate(*args)
        assert result.returncode == 2 and "missing INPUT... and -o OUT" in result.stderr
    bad = curate("quality", "--explain", "--filters", "nope")
    assert bad.returncode == 2 and "--filters" in bad.stderr
