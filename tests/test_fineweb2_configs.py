"""Shipped per-language quality settings follow FineWeb2's released filter configs (scripts/fineweb2_configs.py)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from curate.io.inputs import Columns
from curate.stages.quality import QualityParams, QualityStage
from curate.stages.quality.config import QualityConfig, shipped_languages

REPO = Path(__file__).resolve().parent.parent
QUALITY_DIR = REPO / "curate" / "data" / "quality"
SOURCE_LINE = re.compile(
    r"^# Source: https://github\.com/huggingface/fineweb-2/blob/[0-9a-f]{40}/configs/[a-z]{3}_[A-Z][a-z]{3}\.yml$",
    re.MULTILINE,
)
# FineWeb2's largest subsets (Korean excepted: FineWeb2 counted Kiwi morphemes, which curate does not cut)
LARGEST = {
    "ru",
    "zh",
    "de",
    "ja",
    "es",
    "fr",
    "it",
    "pt",
    "pl",
    "nl",
    "id",
    "tr",
    "cs",
    "vi",
    "fa",
    "ar",
    "hu",
    "sv",
    "ro",
    "el",
    "uk",
}

# configs/rus_Cyrl.yml of huggingface/fineweb-2 at 05e6729567a5df985fbd814e862c48f796feb09f
RUS_CYRL = {
    "dup_line_frac": 0.322,
    "dup_n_grams": [[5, 0.168], [6, 0.156], [7, 0.145], [8, 0.133], [9, 0.121], [10, 0.109]],
    "language_score": 0.9,
    "line_punct_thr": 0.231,
    "max_avg_word_length": 11,
    "max_non_alpha_words_ratio": 0.713,
    "min_avg_word_length": 3,
    "new_line_ratio": 0.139,
    "stopwords": ["в", "и", "на", "с", "года", "по", "году", "из", "был", "к", "не", "от", "что", "за", "для",
                  "его", "как", "а", "он", "также", "до", "после"],
    "top_n_grams": [[2, 0.184], [3, 0.164], [4, 0.146]],
}  # fmt: skip


@pytest.fixture(scope="module")
def converter():
    spec = importlib.util.spec_from_file_location(
        "fineweb2_configs", REPO / "scripts" / "fineweb2_configs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shipped_language_file_loads_and_names_its_fineweb2_source():
    languages = [lang for lang in shipped_languages() if lang != "en"]
    assert set(languages) >= LARGEST
    config = QualityConfig()
    for lang in languages:
        text = (QUALITY_DIR / f"{lang}.yaml").read_text(encoding="utf-8")
        assert SOURCE_LINE.search(text), f"{lang}.yaml does not name its FineWeb2 source file and commit"
        QualityConfig(yaml.safe_load(text), source=f"{lang}.yaml")  # unknown keys are a UsageError
        settings = config.settings(lang)
        assert len(settings.stop_words) >= 2 and settings.gopher_quality["min_stop_words"] == 2
        assert sorted(settings.gopher_repetition["max_top_ngram_char_frac"]) == [2, 3, 4]
        assert sorted(settings.gopher_repetition["max_dup_ngram_char_frac"]) == [5, 6, 7, 8, 9, 10]
        # what fineweb-2-pipeline.py sets for every language
        assert settings.fineweb["max_dup_line_char_ratio"] == 0.1
        assert settings.fineweb["max_short_line_ratio"] is None
        assert settings.gopher_repetition["max_dup_para_frac"] is None
        assert settings.gopher_repetition["max_dup_line_char_frac"] is None


def test_russian_settings_equal_the_fineweb2_source():
    settings = QualityConfig().settings("ru")
    assert settings.stop_words == tuple(RUS_CYRL["stopwords"])
    assert settings.gopher_repetition["max_dup_line_frac"] == 0.322
    assert settings.gopher_repetition["max_top_ngram_char_frac"] == {2: 0.184, 3: 0.164, 4: 0.146}
    assert settings.gopher_repetition["max_dup_ngram_char_frac"] == dict(RUS_CYRL["dup_n_grams"])
    assert settings.fineweb["min_line_punct_ratio"] == 0.231
    assert settings.fineweb["max_newline_word_ratio"] == 0.139
    assert settings.gopher_quality["min_alpha_words_ratio"] == 0.713
    assert (
        settings.gopher_quality["min_avg_word_length"],
        settings.gopher_quality["max_avg_word_length"],
    ) == (3, 11)


def test_shipped_russian_file_is_the_conversion_of_its_source(converter):
    settings, dropped = converter.convert(RUS_CYRL, "rus_Cyrl", "ru")
    assert dropped == []
    assert yaml.safe_load((QUALITY_DIR / "ru.yaml").read_text(encoding="utf-8")) == settings


def test_spot_values_of_other_languages():
    config = QualityConfig()
    german = config.settings("de")
    # deu_Latn.yml: min_avg_word_length 0 (datatrove skips the rule), line_punct_thr 0.0, dup_line_frac 0.263
    assert german.gopher_quality["min_avg_word_length"] is None
    assert german.gopher_quality["max_avg_word_length"] == 15
    assert german.fineweb["min_line_punct_ratio"] == 0.0
    assert german.gopher_repetition["max_dup_line_frac"] == 0.263
    assert "datenschutzerklärung" in german.c4["policy_phrases"]  # curate's own C4 phrases stay
    # fra_Latn.yml's elided stop words are tokens of spaCy's French split (l'homme -> l' homme)
    french = config.settings("fr")
    assert "l'" in french.stop_words and "d'" in french.stop_words and french.word_tokenizer == "fr"
    assert config.settings("zh").word_tokenizer == "regex"  # jieba is not a curate dependency
    japanese = config.settings("ja")  # jpn_Jpan.yml at d331bee
    assert japanese.gopher_repetition["max_dup_ngram_char_frac"][5] == 0.243
    assert japanese.stop_words[:3] == ("の", "に", "を")


def test_conversion_refuses_unknown_fineweb2_keys(converter):
    with pytest.raises(SystemExit, match="min_doc_words"):
        converter.convert({**RUS_CYRL, "min_doc_words": 30}, "rus_Cyrl", "ru")


def test_the_document_language_selects_fineweb2_thresholds():
    """Same text: Russian settings need 23.1% punctuated lines but allow 10% duplicated line characters."""
    lines = [f"Строка {i} рассказывает о жизни людей в большом городе и его долгой истории" for i in range(9)]
    text = "\n".join([*lines, lines[0], "Это предложение заканчивается точкой.", "И это тоже."])
    batch = pa.RecordBatch.from_pydict({"id": ["ru", "en"], "text": [text, text], "lang": ["ru", "en"]})
    out = QualityStage(QualityParams(mode="annotate", filters=["fineweb"])).process(batch, Columns())
    assert out.kept.column("quality_reasons").to_pylist() == [
        ["fineweb:min_line_punct_ratio"],
        ["fineweb:max_dup_line_char_ratio"],
    ]
