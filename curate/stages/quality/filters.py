"""Thresholds applied to the batch signals: a failure matrix, per-document reason lists and counters.

A reason is ``<section>:<setting>`` (e.g. ``gopher_quality:min_doc_words``), naming the setting in
defaults.yaml that the document violates; ``<section>:empty`` marks a blank text, and the C4 document rules
are ``c4:lorem_ipsum``, ``c4:curly_bracket`` and ``c4:min_sentences``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from curate.stages.quality.config import FILTER_SECTIONS
from curate.stages.quality.signals import DUP_NGRAM_KEY, TOP_NGRAM_KEY, PerDoc

ALL_FILTERS = list(FILTER_SECTIONS)

# (filter, setting, signal, comparison): the document fails when ``signal <comparison> setting``
THRESHOLD_RULES = [
    ("gopher-quality", "min_doc_words", "word_count", "<"),
    ("gopher-quality", "max_doc_words", "word_count", ">"),
    ("gopher-quality", "min_avg_word_length", "mean_word_length", "<"),
    ("gopher-quality", "max_avg_word_length", "mean_word_length", ">"),
    ("gopher-quality", "max_hash_word_ratio", "hash_ratio", ">"),
    ("gopher-quality", "max_ellipsis_word_ratio", "ellipsis_ratio", ">"),
    ("gopher-quality", "max_bullet_lines_ratio", "bullet_lines_ratio", ">"),
    ("gopher-quality", "max_ellipsis_lines_ratio", "ellipsis_lines_ratio", ">"),
    ("gopher-quality", "min_alpha_words_ratio", "alpha_words_ratio", "<"),
    ("gopher-quality", "min_stop_words", "stop_words", "<"),
    ("gopher-repetition", "max_dup_para_frac", "dup_para_frac", ">"),
    ("gopher-repetition", "max_dup_para_char_frac", "dup_para_char_frac", ">"),
    ("gopher-repetition", "max_dup_line_frac", "dup_line_frac", ">"),
    ("gopher-repetition", "max_dup_line_char_frac", "dup_line_char_frac", ">"),
    ("c4", "min_sentences", "c4_sentences", "<"),
    ("fineweb", "min_line_punct_ratio", "line_punct_ratio", "<"),
    ("fineweb", "max_short_line_ratio", "short_line_ratio", ">"),
    ("fineweb", "max_dup_line_char_ratio", "line_dup_char_ratio", ">"),
    ("fineweb", "max_newline_word_ratio", "newline_ratio", ">"),
]


@dataclass
class Decisions:
    """Rule names (columns of ``failed``) and which document fails which rule.

    A document that an earlier filter of the chain removed is not evaluated by the later ones (filter
    mode): its cells of their rules are False.
    """

    rules: list[str]
    failed: np.ndarray  # bool, shape (docs, rules)

    @property
    def passed(self) -> np.ndarray:
        return ~self.failed.any(axis=1)

    def reasons(self) -> pa.ListArray:
        """``list<string>`` of failed rule names per document, in rule order (empty list = passes)."""
        doc, rule = np.nonzero(self.failed)
        offsets = np.zeros(len(self.failed) + 1, dtype=np.int32)
        np.cumsum(np.bincount(doc, minlength=len(self.failed)), out=offsets[1:])
        names = pa.array(self.rules, type=pa.string()).take(pa.array(rule, type=pa.int32()))
        return pa.ListArray.from_arrays(pa.array(offsets), names)

    def counters(self, langs: np.ndarray, filters: list[str]) -> dict:
        """Removal funnel: docs failing each reason and filter, in chain order (each doc counted once), per language."""
        section_of = [rule.split(":")[0] for rule in self.rules]
        by_filter = {}
        remaining = np.ones(len(self.failed), dtype=bool)
        funnel = {}
        for name in filters:
            columns = [i for i, s in enumerate(section_of) if s == FILTER_SECTIONS[name]]
            fails = self.failed[:, columns].any(axis=1) if columns else np.zeros(len(self.failed), bool)
            by_filter[name] = int(fails.sum())
            funnel[name] = int((remaining & fails).sum())
            remaining &= ~fails
        reasons = {rule: int(n) for rule, n in zip(self.rules, self.failed.sum(axis=0), strict=True) if n}
        by_lang = {}
        for lang in np.unique(langs):
            rows = langs == lang
            lang_reasons = {
                rule: int(n) for rule, n in zip(self.rules, self.failed[rows].sum(axis=0), strict=True) if n
            }
            by_lang[str(lang)] = {
                "docs_in": int(rows.sum()),
                "docs_passed": int(self.passed[rows].sum()),
                "removed": lang_reasons,
            }
        return {
            "removed": reasons,
            "removed_by_filter": by_filter,
            "removed_in_order": funnel,
            "by_lang": by_lang,
        }


def decide(filter_name: str, values: dict[str, np.ndarray], per_doc: PerDoc, text_len: np.ndarray) -> Decisions:
    """Apply every threshold of one filter to its signals (NaN thresholds never fail)."""
    section = FILTER_SECTIONS[filter_name]
    rules: list[str] = []
    columns: list[np.ndarray] = []

    def add(name: str, fails: np.ndarray) -> None:
        rules.append(f"{section}:{name}")
        columns.append(np.asarray(fails, dtype=bool))

    for rule_filter, setting, signal, comparison in THRESHOLD_RULES:
        if rule_filter != filter_name:
            continue
        threshold = per_doc.threshold(section, setting)
        signal_values = values[signal].astype(np.float64)
        with np.errstate(invalid="ignore"):
            fails = signal_values < threshold if comparison == "<" else signal_values > threshold
        add(setting, fails)
        if setting == "max_dup_para_frac":
            add("empty", text_len == 0)
    if filter_name == "gopher-repetition":
        for key, template in ((TOP_NGRAM_KEY, "top_{n}gram"), (DUP_NGRAM_KEY, "dup_{n}gram")):
            for n in per_doc.ngram_sizes(key):
                threshold = per_doc.threshold(section, key, n)
                with np.errstate(invalid="ignore"):
                    fails = values[f"{template.format(n=n)}_char_frac"].astype(np.float64) > threshold
                add(key.replace("ngram", f"{n}gram"), fails)
    if filter_name == "c4":
        add("lorem_ipsum", values["c4_lorem_ipsum"])
        add("curly_bracket", values["c4_curly_bracket"])
    if filter_name == "fineweb":
        add("empty", values["nonblank_lines"] == 0)
    failed = np.column_stack(columns) if columns else np.zeros((len(text_len), 0), dtype=bool)
    return Decisions(rules=rules, failed=failed)
