"""Per-language quality settings: shipped defaults (curate/data/quality/*.yaml) merged with a user file.

Resolution for a document language ``L`` (normalised, e.g. ``eng_Latn`` / ``en-GB`` -> ``en``):
``defaults.yaml`` <- ``L.yaml`` (or the ``fallback`` block when no file ships for ``L``) <- the user's
top-level keys <- the user's ``languages: {L: ...}`` block. A language named only in the user's file is
treated as known (the fallback block is not applied to it). ``null`` disables a rule.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from curate.io.errors import UsageError
from curate.params import load_mapping
from curate.text.words import REGEX_SPLITTER, spacy_tokenizer

FILTER_SECTIONS = {
    "gopher-quality": "gopher_quality",
    "gopher-repetition": "gopher_repetition",
    "c4": "c4",
    "fineweb": "fineweb",
}
_NGRAM_KEYS = ("max_top_ngram_char_frac", "max_dup_ngram_char_frac")
_USER_ONLY_KEYS = ("languages", "fallback")

# ISO 639-3 / GlotLID codes (and lid.176's `no`) of languages with shipped settings, to the file's code
_THREE_TO_TWO = {
    "eng": "en", "deu": "de", "ger": "de", "fra": "fr", "fre": "fr", "spa": "es", "rus": "ru",
    "zho": "zh", "cmn": "zh", "chi": "zh", "yue": "zh", "jpn": "ja", "ita": "it", "por": "pt", "pol": "pl",
    "nld": "nl", "ind": "id", "tur": "tr", "ces": "cs", "vie": "vi", "fas": "fa", "pes": "fa", "arb": "ar",
    "ara": "ar", "hun": "hu", "swe": "sv", "ron": "ro", "ell": "el", "ukr": "uk", "dan": "da", "nob": "nb",
    "no": "nb", "fin": "fi", "bul": "bg", "slk": "sk", "heb": "he", "hin": "hi", "cat": "ca", "hrv": "hr",
    "lit": "lt", "slv": "sl", "ekk": "et", "est": "et", "lvs": "lv", "lav": "lv", "zsm": "ms", "msa": "ms",
    "mkd": "mk", "isl": "is",
}  # fmt: skip


def normalize_lang(code: str | None) -> str:
    """``en``, ``en-GB``, ``eng``, ``eng_Latn``, ``__label__en`` -> ``en``; empty/None -> ``und``."""
    if not code:
        return "und"
    base = code.removeprefix("__label__").replace("_", "-").split("-")[0].lower()
    return _THREE_TO_TWO.get(base, base) or "und"


@dataclass(frozen=True)
class LanguageSettings:
    """Resolved thresholds of one language; sections are plain dicts keyed like defaults.yaml."""

    lang: str
    gopher_quality: dict[str, Any]
    gopher_repetition: dict[str, Any]
    c4: dict[str, Any]
    fineweb: dict[str, Any]
    stop_words: tuple[str, ...]
    word_tokenizer: str  # spaCy language code of the word split, or "regex" (curate.text.words)

    def section(self, filter_name: str) -> dict[str, Any]:
        return getattr(self, FILTER_SECTIONS[filter_name])


def _shipped_dir():
    return resources.files("curate.data.quality")


@cache
def _shipped(name: str) -> dict[str, Any] | None:
    resource = _shipped_dir().joinpath(f"{name}.yaml")
    if not resource.is_file():
        return None
    return yaml.safe_load(resource.read_text(encoding="utf-8")) or {}


def shipped_languages() -> list[str]:
    """Languages with a settings file of their own."""
    return sorted(
        entry.name.removesuffix(".yaml")
        for entry in _shipped_dir().iterdir()
        if entry.name.endswith(".yaml") and entry.name != "defaults.yaml"
    )


def _check_keys(overrides: dict[str, Any], defaults: dict[str, Any], where: str) -> None:
    for key, value in overrides.items():
        if key in _USER_ONLY_KEYS and where.count(":") == 0:
            continue
        if key not in defaults:
            known = ", ".join(sorted(k for k in defaults if k not in _USER_ONLY_KEYS))
            raise UsageError(f"{where}: unknown quality setting {key!r} (expected one of: {known})")
        if isinstance(defaults[key], dict) and key not in _NGRAM_KEYS:
            if not isinstance(value, dict):
                raise UsageError(f"{where}: {key!r} must be a mapping, got {value!r}")
            _check_keys(value, defaults[key], f"{where}:{key}")


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if key in _USER_ONLY_KEYS:
            continue
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key not in _NGRAM_KEYS:
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class QualityConfig:
    """Resolves :class:`LanguageSettings` per language from shipped defaults and an optional user file."""

    def __init__(self, user: dict[str, Any] | None = None, *, source: str = "quality config") -> None:
        self.defaults = _shipped("defaults")
        self.user = user or {}
        self.source = source
        _check_keys(self.user, self.defaults, source)
        for lang, overrides in (self.user.get("languages") or {}).items():
            _check_keys(overrides or {}, self.defaults, f"{source}: languages:{lang}")
        _check_keys(self.user.get("fallback") or {}, self.defaults, f"{source}: fallback")
        self._cache: dict[str, LanguageSettings] = {}

    @classmethod
    def load(cls, path: Path | None) -> QualityConfig:
        if path is None:
            return cls()
        return cls(load_mapping(path, "--config"), source=f"--config {path}")

    def settings(self, lang: str) -> LanguageSettings:
        """Settings for a normalised language code."""
        if lang not in self._cache:
            self._cache[lang] = self._resolve(lang)
        return self._cache[lang]

    def sources(self, lang: str) -> list[str]:
        """Where ``lang``'s settings come from, lowest precedence first (what --explain shows)."""
        user_languages = {normalize_lang(k) for k in self.user.get("languages") or {}}
        shipped = _shipped(lang) if lang.isalnum() else None
        found = ["defaults.yaml"]
        if shipped is not None:
            found.append(f"{lang}.yaml")
        elif lang not in user_languages:
            found.append("the fallback block" + (f" (and {self.source}'s)" if self.user.get("fallback") else ""))
        if any(key not in _USER_ONLY_KEYS for key in self.user):
            found.append(f"{self.source} (top level)")
        if lang in user_languages:
            found.append(f"{self.source} (languages: {lang})")
        return found

    def _resolve(self, lang: str) -> LanguageSettings:
        user_languages = {normalize_lang(k): v or {} for k, v in (self.user.get("languages") or {}).items()}
        shipped = _shipped(lang) if lang.isalnum() else None
        resolved = _merge(self.defaults, shipped if shipped is not None else {})
        if shipped is None and lang not in user_languages:
            resolved = _merge(resolved, self.defaults.get("fallback") or {})
            resolved = _merge(resolved, self.user.get("fallback") or {})
        resolved = _merge(resolved, self.user)
        resolved = _merge(resolved, user_languages.get(lang, {}))
        return LanguageSettings(
            lang=lang,
            gopher_quality=resolved["gopher_quality"],
            gopher_repetition=resolved["gopher_repetition"],
            c4=resolved["c4"],
            fineweb=resolved["fineweb"],
            stop_words=tuple(str(word) for word in resolved.get("stop_words") or ()),
            word_tokenizer=str(resolved.get("word_tokenizer") or ("xx" if lang == "und" else lang)),
        )


def explain(filters: list[str], config: QualityConfig, code: str) -> str:
    """The settings that apply to documents of language ``code``, as YAML that a --config file accepts under
    ``languages: {code: ...}``, with where they come from."""
    lang = normalize_lang(code)
    settings = config.settings(lang)
    splitter = "curate's regex word split"
    if settings.word_tokenizer != REGEX_SPLITTER:  # what the run resolves the code to
        nlp = spacy_tokenizer(settings.word_tokenizer)
        if nlp is None:
            splitter += f" (spaCy cannot tokenize '{settings.word_tokenizer}' offline)"
        else:
            splitter = f"spaCy's '{nlp.lang}' tokenizer" + (
                f" (spaCy has no '{settings.word_tokenizer}')" if nlp.lang != settings.word_tokenizer else "")
    header = [f"# quality settings for {lang}" + (f" (from {code!r})" if code != lang else ""),
              f"# from: {' <- '.join(config.sources(lang))}", f"# words split by {splitter}",
              f"# filters in --filters order: {', '.join(filters)}; null disables a rule"]
    body = {"word_tokenizer": settings.word_tokenizer, "stop_words": list(settings.stop_words),
            **{FILTER_SECTIONS[name]: settings.section(name) for name in filters}}
    return "\n".join(header) + "\n" + yaml.dump(body, Dumper=_ExplainDumper, sort_keys=False, allow_unicode=True,
                                                width=110)


class _ExplainDumper(yaml.SafeDumper):
    """Sections as blocks, lists (stop words, phrases) on one line each."""


_ExplainDumper.add_representer(
    list, lambda dumper, value: dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=True))
