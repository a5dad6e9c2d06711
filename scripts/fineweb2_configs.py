"""Write curate's per-language quality settings (curate/data/quality/<code>.yaml) from FineWeb2's filter configs.

Usage:
    python scripts/fineweb2_configs.py --configs FINEWEB2/configs --tokenizers tokenizer_assignment.csv \
        (--commit SHA | --commits commits.json) [--languages rus_Cyrl,deu_Latn,...] [--out curate/data/quality]

Inputs (not shipped with curate: the fineweb-2 repository carries no licence of its own, so only the numbers
and stop-word lists are copied into curate's files):

* ``--configs``: the ``configs/`` folder of https://github.com/huggingface/fineweb-2, one ``<iso3>_<Script>.yml``
  per language (thresholds tuned per language, stop words);
* ``--commit``: the commit those files were read at, or ``--commits``: a JSON object ``{"rus_Cyrl": SHA}``
  when they come from different commits; each generated file names its source file at its commit;
* ``--tokenizers``: datatrove's ``assets/tokenizer_assignment.csv`` (which word tokenizer FineWeb2 used per
  language, and the ISO 639-1 code that names curate's file).

Every FineWeb2 key is mapped to one curate key (``FINEWEB2_KEYS``) or listed in ``NOT_QUALITY_KEYS``; an
unknown key stops the script, so that a new FineWeb2 setting is never dropped silently. The settings that
FineWeb2's pipeline (fineweb-2-pipeline.py) applies to every language are written into each file too
(``PIPELINE_SETTINGS``). Each file names the word split (``word_tokenizer``): FineWeb2's spaCy tokenizer
where it works offline; curate's per-character split for Chinese and Japanese, whose spaCy segmenters
(jieba, SudachiPy) are not curate dependencies, and for any language whose spaCy tokenizer needs a
package that is not installed (Vietnamese: pyvi). Stop words that this split never yields as one token are
left out and named in the file's header. Languages whose FineWeb2 word tokenizer cuts words that curate
cannot reproduce (``UNSUPPORTED_TOKENIZERS``: Korean morphemes, Thai/Lao/Khmer/Burmese/Tibetan dictionary
words) are refused.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from curate.text.words import REGEX_SPLITTER, spacy_tokenizer, split_words_by_language  # noqa: E402

SOURCE_URL = "https://github.com/huggingface/fineweb-2/blob/{commit}/configs/{name}.yml"
PIPELINE_COMMIT = "7ee60b3693872b2fde3a6cfbd2cf2b24fbbc5f48"
PIPELINE_URL = f"https://github.com/huggingface/fineweb-2/blob/{PIPELINE_COMMIT}/fineweb-2-pipeline.py"

#: FineWeb2's largest subsets (Korean and Thai excepted, see UNSUPPORTED_TOKENIZERS), then more European ones
DEFAULT_LANGUAGES = (
    "rus_Cyrl", "cmn_Hani", "deu_Latn", "jpn_Jpan", "spa_Latn", "fra_Latn", "ita_Latn", "por_Latn", "pol_Latn",
    "nld_Latn", "ind_Latn", "tur_Latn", "ces_Latn", "vie_Latn", "fas_Arab", "arb_Arab", "hun_Latn", "swe_Latn",
    "ron_Latn", "ell_Grek", "ukr_Cyrl", "dan_Latn", "nob_Latn", "fin_Latn", "bul_Cyrl", "slk_Latn", "heb_Hebr",
    "hin_Deva", "cat_Latn", "hrv_Latn", "lit_Latn", "slv_Latn", "ekk_Latn", "lvs_Latn", "zsm_Latn", "mkd_Cyrl",
    "isl_Latn",
)  # fmt: skip

#: FineWeb2 config key -> (curate section, curate key); section None = top-level key
FINEWEB2_KEYS = {
    "dup_line_frac": ("gopher_repetition", "max_dup_line_frac"),
    "top_n_grams": ("gopher_repetition", "max_top_ngram_char_frac"),
    "dup_n_grams": ("gopher_repetition", "max_dup_ngram_char_frac"),
    "min_avg_word_length": ("gopher_quality", "min_avg_word_length"),
    "max_avg_word_length": ("gopher_quality", "max_avg_word_length"),
    # datatrove's name for the minimum share of words containing a letter
    "max_non_alpha_words_ratio": ("gopher_quality", "min_alpha_words_ratio"),
    "line_punct_thr": ("fineweb", "min_line_punct_ratio"),
    "new_line_ratio": ("fineweb", "max_newline_word_ratio"),
    "stopwords": (None, "stop_words"),
}
#: FineWeb2 config keys that are not quality settings (written into the header instead)
NOT_QUALITY_KEYS = {"language_score": "the minimum GlotLID confidence FineWeb2 kept, a langid threshold"}
#: datatrove's Gopher filters skip a rule whose threshold is 0; curate spells that null
ZERO_MEANS_OFF = {"gopher_repetition", "gopher_quality"}

#: what fineweb-2-pipeline.py passes for every language (0 there disables a Gopher rule; 999 the short lines)
PIPELINE_SETTINGS = {
    "gopher_repetition": {"max_dup_para_frac": None, "max_dup_para_char_frac": None,
                          "max_dup_line_char_frac": None},
    "fineweb": {"max_short_line_ratio": None, "max_dup_line_char_ratio": 0.1},
}  # fmt: skip

SECTIONS = ("gopher_quality", "gopher_repetition", "fineweb")

#: curate's own settings kept next to FineWeb2's (FineWeb2 runs no C4 filter): cookie/policy lines in the
#: language, for users who add the c4 filter
_ENGLISH_POLICY = [
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
]
CURATE_SETTINGS = {
    "de": {"c4": {"policy_phrases": [*_ENGLISH_POLICY, "verwendet cookies", "verwenden cookies", "nutzt cookies",
                                     "datenschutzerklärung", "nutzungsbedingungen"]}},
    "es": {"c4": {"policy_phrases": [*_ENGLISH_POLICY, "utiliza cookies", "utilizamos cookies",
                                     "política de privacidad", "política de cookies", "términos de uso"]}},
    "fr": {"c4": {"policy_phrases": [*_ENGLISH_POLICY, "utilise des cookies", "utilisons des cookies",
                                     "politique de confidentialité", "conditions d'utilisation"]}},
}  # fmt: skip

UNSUPPORTED_TOKENIZERS = {
    "KiwiTokenizer", "ThaiTokenizer", "LaoTokenizer", "KhmerTokenizer", "BurmeseTokenizer", "TibetanTokenizer",
}  # fmt: skip
#: scripts curate splits into one token per character (curate.text.NO_SPACE_SCRIPTS)
PER_CHARACTER_SCRIPTS = {"Hani", "Hans", "Hant", "Jpan"}


def tokenizer_table(path: Path) -> dict[str, dict[str, str]]:
    """FineWeb2 name (``rus_Cyrl``) -> its row of datatrove's tokenizer assignment."""
    with path.open(encoding="utf-8", newline="") as handle:
        return {f"{row['code_3']}_{row['script']}": row for row in csv.DictReader(handle)}


def word_tokenizer(row: dict[str, str]) -> str:
    """curate's word split for a language: FineWeb2's spaCy tokenizer, else spaCy's rules for the language
    (IndicNLP's Hindi split), else curate's per-character split (Chinese, Japanese)."""
    code = row["tok_code"] if row["type"] == "SpaCyTokenizer" and row["tok_code"] else row["code_1"]
    if row["script"] in PER_CHARACTER_SCRIPTS or spacy_tokenizer(code) is None:
        return REGEX_SPLITTER
    return code


def is_one_token(word: str, tokenizer: str) -> bool:
    tokens = split_words_by_language(pl.Series([word]), np.zeros(1, dtype=np.int64), [tokenizer])
    return tokens.strings().to_list() == [word]


def convert(config: dict, name: str, tokenizer: str) -> tuple[dict, list[str]]:
    """curate settings for one FineWeb2 config (sections in defaults.yaml order), and the stop words dropped."""
    unknown = set(config) - set(FINEWEB2_KEYS) - set(NOT_QUALITY_KEYS)
    if unknown:
        raise SystemExit(f"{name}: FineWeb2 keys with no curate mapping: {sorted(unknown)}")
    settings: dict = {section: {} for section in SECTIONS}
    dropped: list[str] = []
    for key, (section, curate_key) in FINEWEB2_KEYS.items():
        value = config[key]
        if key == "stopwords":
            words = [str(word) for word in value]
            # spaCy yields FineWeb2's stop words by construction (inside words: "l'homme" -> "l'" "homme")
            dropped = [w for w in words if tokenizer == REGEX_SPLITTER and not is_one_token(w, tokenizer)]
            settings[curate_key] = [word for word in words if word not in dropped]
            continue
        if key in ("top_n_grams", "dup_n_grams"):
            value = {int(n): float(fraction) for n, fraction in value}
        elif section in ZERO_MEANS_OFF and value == 0:
            value = None
        settings[section][curate_key] = value
    for section, values in PIPELINE_SETTINGS.items():
        settings[section].update(values)
    settings["word_tokenizer"] = tokenizer
    return settings, dropped


def _flow(value) -> str:
    """One YAML value on one line (flow style for lists and mappings)."""
    return yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=1 << 20).strip()[1:-1]


def to_yaml(settings: dict, own: dict) -> str:
    """Sections as blocks, one key per line; keys from FineWeb2's pipeline and curate's own keys are marked."""
    lines = []
    for section, values in [*settings.items(), *own.items()]:
        if not isinstance(values, dict):
            lines.append(f"{section}: {_flow(values)}")
            continue
        lines.append(f"{section}:")
        for key, value in values.items():
            mark = ""
            if key in PIPELINE_SETTINGS.get(section, {}):
                mark = "  # every language (pipeline)"
            elif key in own.get(section, {}):
                mark = "  # curate's own, not from FineWeb2"
            lines.append(f"  {key}: {_flow(value)}{mark}")
    return "\n".join(lines) + "\n"


def header(name: str, commit: str, row: dict[str, str], config: dict, dropped: list[str]) -> str:
    tokenizer = row["type"] + (f" {row['tok_code']!r}" if row["tok_code"] else "")
    lines = [
        f"{row['name']}: FineWeb2's filter settings for {name}, written by scripts/fineweb2_configs.py.",
        f"Source: {SOURCE_URL.format(commit=commit, name=name)}",
        f"Settings FineWeb2 applies to every language: {PIPELINE_URL}",
        f"FineWeb2 split words with datatrove's {tokenizer} (assets/tokenizer_assignment.csv); curate splits",
        f"them with {word_tokenizer(row)!r} (word_tokenizer below; curate/text/words.py).",
    ]
    if row["script"] in PER_CHARACTER_SCRIPTS:
        lines.append(
            "curate counts one word per Han/Kana character: word counts, mean word length and n-grams"
        )
        lines.append("are in characters here, while FineWeb2 tuned these thresholds on segmented words.")
    for key, meaning in NOT_QUALITY_KEYS.items():
        lines.append(f"Not a quality setting: {key} {config[key]}, {meaning}.")
    if dropped:
        lines.append(f"Stop words left out (curate never yields them as one token): {', '.join(dropped)}")
    return "".join(f"# {line}\n" for line in lines)


def write_language(name: str, commit: str, row: dict[str, str], config_path: Path, out: Path) -> Path:
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    settings, dropped = convert(config, name, word_tokenizer(row))
    if len(settings["stop_words"]) < 2:
        raise SystemExit(
            f"{name}: fewer than 2 stop words curate can match; the stop-word rule would drop all"
        )
    body = to_yaml(settings, CURATE_SETTINGS.get(row["code_1"], {}))
    target = out / f"{row['code_1']}.yaml"
    target.write_text(header(name, commit, row, config, dropped) + body, encoding="utf-8")
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=Path, required=True, help="fineweb-2's configs/ folder")
    parser.add_argument("--tokenizers", type=Path, required=True, help="datatrove's tokenizer_assignment.csv")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--commit", help="fineweb-2 commit the configs were read at")
    source.add_argument("--commits", type=Path, help='JSON {"rus_Cyrl": commit, ...}')
    parser.add_argument(
        "--languages", default=",".join(DEFAULT_LANGUAGES), help="FineWeb2 names, comma-separated"
    )
    parser.add_argument("--out", type=Path, default=REPO / "curate" / "data" / "quality")
    args = parser.parse_args()

    table = tokenizer_table(args.tokenizers)
    commits = json.loads(args.commits.read_text()) if args.commits else {}
    names = [name.strip() for name in args.languages.split(",") if name.strip()]
    written: dict[str, str] = {}
    for name in names:
        row = table.get(name)
        if row is None or not row["code_1"]:
            raise SystemExit(f"{name}: no ISO 639-1 code in {args.tokenizers} to name curate's file")
        if row["type"] in UNSUPPORTED_TOKENIZERS:
            raise SystemExit(
                f"{name}: FineWeb2 used {row['type']}, whose words curate's splitter does not cut"
            )
        if row["code_1"] in written:
            raise SystemExit(f"{name} and {written[row['code_1']]} would both write {row['code_1']}.yaml")
        commit = args.commit or commits.get(name)
        if not commit:
            raise SystemExit(f"{name}: no commit given in {args.commits}")
        target = write_language(name, commit, row, args.configs / f"{name}.yml", args.out)
        written[row["code_1"]] = name
        print(
            f"{target.relative_to(REPO) if target.is_relative_to(REPO) else target} <- {name} @ {commit[:7]}"
        )


if __name__ == "__main__":
    main()
