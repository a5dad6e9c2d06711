"""Language identification with fastText: adds ``lang``/``lang_score`` and filters by language and score.

The bundled default model is fastText's lid.176.ftz (176 languages, 917 KB), so the stage works offline right
after install. Any fastText LID model loads with ``--model``: lid.176.bin, GlotLID (``__label__eng_Latn``:
``lang=eng``, ``lang_script=Latn``), OpenLID. Newlines become spaces before prediction, as fastText expects.

``--keep`` codes are checked against the model's labels before any document is read: ISO 639-1 and 639-3
(or 639-2/B) spellings of one language map to the model's own code (``eng`` → ``en`` for lid.176, ``en`` →
``eng`` for GlotLID) when exactly one label matches; anything else is refused with the closest labels.
An input ``lang`` column is kept as ``lang_original`` rather than silently replaced. The model sees the first
``--max-chars`` characters of each document: fastText needs about 16 bytes per character of a line, so a 100 MB
document would otherwise take gigabytes (and its language is settled long before its end).
"""

from __future__ import annotations

import difflib
import itertools
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import InputError, UsageError
from curate.io.inputs import BadRows, Columns, iter_batches
from curate.io.options import IOOptions
from curate.io.output import file_checksum, write_text_atomic
from curate.params import load_mapping, option
from curate.stages.base import MapStage, StageOutput

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "lid.176.ftz"
LABEL_PREFIX = "__label__"
TOP_TYPE = pa.list_(pa.struct([("lang", pa.string()), ("score", pa.float32())]))
# FineWeb2's per-language threshold: tau = max(FLOOR, min(CEILING, median - std)) of the language's scores.
CALIBRATION_FLOOR, CALIBRATION_CEILING = 0.3, 0.9
_HISTOGRAM_BINS = 10_000
MAX_CHARS = 1_000_000
ORIGINAL_LANG = "lang_original"  # where an input's own `lang` column goes

# ISO 639-1 code → its ISO 639-3 (and 639-2/B) codes, plus common individual-language codes of macrolanguages
# (cmn → zh): how `--keep` accepts `eng` for a model labelled `en` and `en` for one labelled `eng`.
_ISO_639 = """
aa:aar ab:abk af:afr ak:aka am:amh ar:ara/arb an:arg as:asm av:ava ae:ave ay:aym az:aze/azj ba:bak bm:bam
be:bel bn:ben bh:bih bi:bis bo:bod/tib bs:bos br:bre bg:bul ca:cat cs:ces/cze ch:cha ce:che cu:chu
cv:chv kw:cor co:cos cr:cre cy:cym/wel da:dan de:deu/ger dv:div dz:dzo el:ell/gre en:eng eo:epo
et:est/ekk eu:eus/baq ee:ewe fo:fao fa:fas/per/pes fj:fij fi:fin fr:fra/fre fy:fry ff:ful gd:gla ga:gle
gl:glg gv:glv gn:grn gu:guj ht:hat ha:hau he:heb hz:her hi:hin ho:hmo hr:hrv hu:hun hy:hye/arm
ig:ibo io:ido ii:iii iu:iku ie:ile ia:ina id:ind ik:ipk is:isl/ice it:ita jv:jav ja:jpn kl:kal
kn:kan ks:kas ka:kat/geo kr:kau kk:kaz km:khm ki:kik rw:kin ky:kir kv:kom kg:kon ko:kor kj:kua
ku:kur lo:lao la:lat lv:lav/lvs li:lim ln:lin lt:lit lb:ltz lu:lub lg:lug mh:mah ml:mal mr:mar
mk:mkd/mac mg:mlg/plt mt:mlt mn:mon/khk mi:mri/mao ms:msa/may/zsm my:mya/bur na:nau nv:nav nr:nbl nd:nde
ng:ndo ne:nep/npi nl:nld/dut nn:nno nb:nob no:nor ny:nya oc:oci oj:oji or:ori/ory om:orm os:oss pa:pan
pi:pli pl:pol pt:por ps:pus qu:que rm:roh ro:ron/rum rn:run ru:rus sg:sag sa:san si:sin sk:slk/slo sl:slv
se:sme sm:smo sn:sna sd:snd so:som st:sot es:spa sq:sqi/alb sc:srd sr:srp ss:ssw su:sun sw:swa/swh
sv:swe ty:tah ta:tam tt:tat te:tel tg:tgk tl:tgl th:tha ti:tir to:ton tn:tsn ts:tso tk:tuk tr:tur
tw:twi ug:uig uk:ukr ur:urd uz:uzb/uzn ve:ven vi:vie vo:vol wa:wln wo:wol xh:xho yi:yid/ydd yo:yor
za:zha zh:zho/chi/cmn zu:zul sh:hbs
"""


@dataclass
class LangidParams:
    model: str | None = option(None, "fastText LID model file (default: the bundled lid.176.ftz).")
    keep: list[str] = option(
        [], "Keep only these languages, e.g. en,de,fr (or eng_Latn for GlotLID labels). ISO 639-1/639-3 spellings "
        "map to the model's own code (eng → en for lid.176, said on stderr); codes the model lacks are refused."
    )
    min_score: float | None = option(None, "Drop documents whose top language score is below this.")
    thresholds: str | None = option(
        None, "YAML/JSON file: language → minimum score (a 'default' key applies to unlisted languages)."
    )
    top_k: int | None = option(None, "Also add lang_top: the K best {lang, score} pairs.")
    max_chars: int = option(
        MAX_CHARS, "Characters of each document the model reads (the start of longer ones): memory stays bounded "
        "on huge documents; 0 reads whole documents.",
    )


def _spellings() -> dict[str, set[str]]:
    """Every ISO spelling → all spellings of that language (itself included)."""
    groups: dict[str, set[str]] = {}
    for entry in _ISO_639.split():
        two, threes = entry.split(":")
        group = {two, *threes.split("/")}
        for code in group:
            groups.setdefault(code, set()).update(group)
    return groups


def _close_labels(code: str, known: set[str], spellings: dict[str, set[str]]) -> list[str]:
    """Labels a mistyped code may mean: those of its 3- and 2-letter prefixes first, then similar strings."""
    prefixed = sorted(set().union(*(spellings.get(code[:n], {code[:n]}) for n in (3, 2))) & known)
    similar = difflib.get_close_matches(code, sorted(known), n=3, cutoff=0.5)
    return list(dict.fromkeys(prefixed + similar))[:3]


@dataclass
class KeepCodes:
    """--keep resolved against a model's labels: the codes to compare with, and which spellings were mapped."""

    codes: list[str]
    mapped: dict[str, str] = field(default_factory=dict)


def resolve_keep(keep: list[str], labels: list[str], model_name: str) -> KeepCodes:
    """Map each --keep code to the model's own label (exactly one match), or refuse it with close labels."""
    full = sorted({_code(label) for label in labels} - {None})  # type: ignore[arg-type]
    known = set(full) | {split_label(code)[0] for code in full}
    spellings = _spellings()
    resolved, mapped, unknown = [], {}, []
    for wanted in keep:
        code = wanted.strip().replace("-", "_")
        lowered = code.split("_")[0].lower()
        if code in known:
            resolved.append(code)
            continue
        matches = sorted(spellings.get(lowered, {lowered}) & known)
        if len(matches) == 1:
            resolved.append(matches[0])
            mapped[wanted] = matches[0]
        else:
            unknown.append((wanted, matches or _close_labels(lowered, known, spellings)))
    if unknown:
        problems = "; ".join(f"'{w}'" + (f" (did you mean {', '.join(c)}?)" if c else "") for w, c in unknown)
        raise UsageError(f"--keep: {model_name} has no language {problems}. It knows {len(full)} labels, e.g. "
                         + ", ".join(full[:12]) + " …")
    return KeepCodes(resolved, mapped)


def load_model(path: str | None):
    """Load a fastText model, quietly (fastText prints a warning on stderr for every load)."""
    import fasttext

    model_path = Path(path) if path else DEFAULT_MODEL
    if not model_path.is_file():
        raise UsageError(f"{model_path}: language-ID model not found (see --model)")
    fasttext.FastText.eprint = lambda *args, **kwargs: None
    try:
        return fasttext.load_model(str(model_path))
    except ValueError as exc:
        raise UsageError(f"{model_path}: not a fastText model ({exc})") from None


def split_label(label: str) -> tuple[str, str | None]:
    """``__label__en`` → (en, None); ``__label__eng_Latn`` → (eng, Latn)."""
    code = label[len(LABEL_PREFIX) :] if label.startswith(LABEL_PREFIX) else label
    lang, _, script = code.partition("_")
    return lang, (script or None)


def load_thresholds(path: str) -> dict[str, float]:
    data = load_mapping(path, "--thresholds")
    if not all(isinstance(v, int | float) for v in data.values()):
        raise UsageError(f"{path}: expected a mapping of language → number (e.g. en: 0.65)")
    return {str(k): float(v) for k, v in data.items()}


class Predictor:
    """Batched fastText prediction: one C++ call per batch, labels normalised once per distinct label."""

    def __init__(self, model_path: str | None, max_chars: int = MAX_CHARS):
        self.model = load_model(model_path)
        self.max_chars = max_chars
        self.has_script = any(split_label(lbl)[1] for lbl in self.model.get_labels()[:50])

    def predict(self, text: pa.Array, k: int = 1) -> tuple[pa.Array, np.ndarray]:
        """Top-k codes (``lang`` or ``lang_Script``) flattened to n·k entries, and scores of shape (n, k)."""
        # fastText reads one line per document: newlines become spaces, and each line ends in "\n". The
        # binding's own per-text Python check is skipped: this is the same C++ call, over the whole batch.
        # A text is only cut when some document is longer than max_chars (UTF-8 bytes ≥ characters), and the
        # lines go to fastText as bytes: no decoding into Python strings and encoding back.
        if self.max_chars and (pc.max(pc.binary_length(text)).as_py() or 0) > self.max_chars:
            text = pc.utf8_slice_codeunits(text, 0, self.max_chars)
        lines = pc.binary_join_element_wise(pc.replace_substring(text, "\n", " "), pa.scalar("\n"), "")
        labels, probs = self.model.f.multilinePredict(lines.cast(pa.binary()).to_pylist(), k, 0.0, "strict")
        if all(len(row) == k for row in labels):
            scores = np.asarray(probs, dtype=np.float32).reshape(len(labels), k)
            flat = list(itertools.chain.from_iterable(labels))
        else:  # models with fewer than k labels
            scores = np.zeros((len(labels), k), dtype=np.float32)
            for row, p in enumerate(probs):
                scores[row, : len(p)] = p
            flat = [lbl for row in labels for lbl in (row + [None] * (k - len(row)))]
        encoded = pc.dictionary_encode(pa.array(flat, pa.string()))
        codes = pa.array([_code(lbl) for lbl in encoded.dictionary.to_pylist()], pa.string())
        return pc.take(codes, encoded.indices), scores


def _code(label: str | None) -> str | None:
    if label is None:
        return None
    lang, script = split_label(label)
    return lang if script is None else f"{lang}_{script}"


class LangidStage(MapStage):
    name = "langid"

    empty_hint = "--keep, --min-score and --thresholds"

    def notices(self) -> list[str]:
        return [f"--keep {wanted}: using the model's code '{code}'" for wanted, code in self.keep_mapped.items()]

    def warnings(self, summary: dict) -> list[str]:
        if not summary.get(ORIGINAL_LANG):
            return super().warnings(summary)
        return [*super().warnings(summary), f"the input already had a 'lang' column; it is kept as '{ORIGINAL_LANG}' "
                f"({summary[ORIGINAL_LANG]:,} documents) and 'lang' now holds the model's prediction"]

    def __init__(self, params: LangidParams):
        super().__init__(params)
        self.thresholds = load_thresholds(params.thresholds) if params.thresholds else {}
        if params.top_k is not None and params.top_k < 1:
            raise UsageError("--top-k must be ≥ 1")
        if params.max_chars < 0:
            raise UsageError("--max-chars must be ≥ 0 (0: whole documents)")
        self.keep_mapped: dict[str, str] = {}
        if params.keep:  # checked here, before any input is read; the resolved codes go into the plan
            model_path = params.model or str(DEFAULT_MODEL)
            resolved = resolve_keep(params.keep, load_model(params.model).get_labels(), Path(model_path).name)
            self.params.keep, self.keep_mapped = resolved.codes, resolved.mapped
        self.predictor: Predictor | None = None

    def identity(self) -> dict:
        model = Path(self.params.model) if self.params.model else DEFAULT_MODEL
        ident = {"model_checksum": file_checksum(model) if model.is_file() else None}
        if self.thresholds:
            ident["threshold_values"] = self.thresholds
        return ident

    def setup(self) -> None:
        self.predictor = Predictor(self.params.model, self.params.max_chars)

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        if self.predictor is None:
            self.setup()
        assert self.predictor is not None
        k = self.params.top_k or 1
        codes, scores = self.predictor.predict(batch.column(columns.text), k)
        full = codes if k == 1 else pc.take(codes, pa.array(np.arange(0, len(codes), k)))
        lang, script = _split_codes(full) if self.predictor.has_script else (full, None)
        score = pa.array(scores[:, 0], pa.float32())
        counters: dict = {}
        if "lang" in batch.schema.names and ORIGINAL_LANG not in batch.schema.names:
            batch = batch.rename_columns([ORIGINAL_LANG if n == "lang" else n for n in batch.schema.names])
            counters[ORIGINAL_LANG] = batch.num_rows
        annotated = _append(batch, "lang", lang)
        annotated = _append(annotated, "lang_score", score)
        if script is not None:
            annotated = _append(annotated, "lang_script", script)
        if self.params.top_k:
            annotated = _append(annotated, "lang_top", _top_column(codes, scores))

        if not (self.thresholds or self.params.min_score is not None or self.params.keep):
            # annotation only: no row is removed, so nothing needs copying
            everything = pa.array(np.ones(len(lang), dtype=bool))
            counters["by_lang"] = _per_language(lang, batch.column(columns.text), everything)
            return StageOutput(annotated, None, counters)
        reason = self._reasons(lang, full, scores[:, 0])
        kept_mask = pc.is_null(reason)
        removed = pc.invert(kept_mask)
        rejected = annotated.filter(removed).append_column("reason", reason.filter(removed))
        counters["removed"] = _value_counts(reason.filter(removed))
        counters["by_lang"] = _per_language(lang, batch.column(columns.text), kept_mask)
        return StageOutput(annotated.filter(kept_mask), rejected, counters)

    def _reasons(self, lang: pa.Array, full: pa.Array, score: np.ndarray) -> pa.Array:
        """Why each document is removed (first failing rule), or null when it is kept."""
        n = len(lang)
        reasons = np.full(n, None, dtype=object)
        if self.thresholds:
            keys = [k for k in self.thresholds if k != "default"]
            index = pc.index_in(lang, value_set=pa.array(keys, pa.string())).to_numpy(zero_copy_only=False)
            per_doc = np.full(n, self.thresholds.get("default", 0.0), dtype=np.float64)
            found = ~np.isnan(index.astype(np.float64))
            per_doc[found] = np.array([self.thresholds[k] for k in keys])[index[found].astype(np.int64)]
            reasons[score < per_doc] = "lang_score_below_threshold"
        if self.params.min_score is not None:
            reasons[score < self.params.min_score] = "lang_score_below_min"
        if self.params.keep:
            wanted = pa.array(self.params.keep, pa.string())
            kept = pc.or_(pc.is_in(lang, value_set=wanted), pc.is_in(full, value_set=wanted))
            reasons[~kept.to_numpy(zero_copy_only=False)] = "lang_not_kept"
        return pa.array(reasons, pa.string())


def _append(batch: pa.RecordBatch, name: str, values: pa.Array) -> pa.RecordBatch:
    """Add a column, replacing one of the same name (a rerun of langid on its own output)."""
    if name in batch.schema.names:
        batch = batch.drop_columns([name])
    return batch.append_column(name, values)


def _split_codes(full: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``eng_Latn`` → (``eng``, ``Latn``); a code without a script gets a null script."""
    parts = pc.extract_regex(full, r"^(?P<lang>[^_]*)_?(?P<script>.*)$")
    script = parts.field("script")
    return parts.field("lang"), pc.if_else(pc.equal(script, ""), pa.scalar(None, pa.string()), script)


def _top_column(codes: pa.Array, scores: np.ndarray) -> pa.Array:
    n, k = scores.shape
    structs = pa.StructArray.from_arrays([codes, pa.array(scores.reshape(-1), pa.float32())], names=["lang", "score"])
    offsets = pa.array(np.arange(0, n * k + 1, k, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, structs).cast(TOP_TYPE)


def _value_counts(values: pa.Array) -> dict[str, int]:
    if len(values) == 0:
        return {}
    return {item["values"]: item["counts"] for item in pc.value_counts(values).to_pylist()}


def _per_language(lang: pa.Array, text: pa.Array, kept: pa.Array) -> dict[str, dict[str, int]]:
    """Documents and characters in and out per language (bincounts over the dictionary-encoded codes)."""
    encoded = pc.dictionary_encode(pc.fill_null(lang, "") if lang.null_count else lang)
    index = encoded.indices.to_numpy(zero_copy_only=False)
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.float64)
    keep = kept.to_numpy(zero_copy_only=False)
    n = len(encoded.dictionary)
    columns = {
        "docs_in": np.bincount(index, minlength=n),
        "chars_in": np.bincount(index, weights=chars, minlength=n),
        "docs_out": np.bincount(index[keep], minlength=n),
        "chars_out": np.bincount(index[keep], weights=chars[keep], minlength=n),
    }
    return {
        code: {name: int(values[i]) for name, values in columns.items()}
        for i, code in enumerate(encoded.dictionary.to_pylist())
    }


class ScoreHistogram:
    """Per-language score distribution in fixed bins: bounded memory, mergeable, exact enough for medians."""

    def __init__(self) -> None:
        self.counts: dict[str, np.ndarray] = {}
        self.sums: dict[str, np.ndarray] = {}  # [sum, sum of squares]

    def add(self, lang: pa.Array, score: np.ndarray) -> None:
        bins = np.minimum((score * _HISTOGRAM_BINS).astype(np.int64), _HISTOGRAM_BINS - 1)
        codes = (
            pc.dictionary_encode(lang).combine_chunks()
            if isinstance(lang, pa.ChunkedArray)
            else pc.dictionary_encode(lang)
        )
        indices = codes.indices.to_numpy(zero_copy_only=False)
        for i, name in enumerate(codes.dictionary.to_pylist()):
            mask = indices == i
            counts = self.counts.setdefault(name, np.zeros(_HISTOGRAM_BINS, dtype=np.int64))
            counts += np.bincount(bins[mask], minlength=_HISTOGRAM_BINS)
            sums = self.sums.setdefault(name, np.zeros(2))
            chosen = score[mask].astype(np.float64)
            sums += (chosen.sum(), (chosen**2).sum())

    def thresholds(self, min_docs: int) -> dict[str, dict[str, float]]:
        """FineWeb2 thresholds per language with at least ``min_docs`` documents."""
        result = {}
        for lang in sorted(self.counts):
            counts = self.counts[lang]
            n = int(counts.sum())
            if n < min_docs:
                continue
            mean = self.sums[lang][0] / n
            std = float(np.sqrt(max(self.sums[lang][1] / n - mean**2, 0.0)))
            median_bin = int(np.searchsorted(np.cumsum(counts), (n + 1) / 2))
            median = (median_bin + 0.5) / _HISTOGRAM_BINS
            tau = max(CALIBRATION_FLOOR, min(CALIBRATION_CEILING, median - std))
            result[lang] = {
                "threshold": round(tau, 4),
                "docs": n,
                "median": round(median, 4),
                "std": round(std, 4),
            }
        return result


def calibrate(batches, model: str | None, columns: Columns, min_docs: int) -> dict[str, dict[str, float]]:
    """Per-language thresholds from predicted scores (existing ``lang``/``lang_score`` columns are reused)."""
    histogram = ScoreHistogram()
    predictor: Predictor | None = None
    for batch in batches:
        if "lang" in batch.schema.names and "lang_score" in batch.schema.names:
            lang = batch.column("lang")
            score = batch.column("lang_score").to_numpy(zero_copy_only=False).astype(np.float32)
        else:
            predictor = predictor or Predictor(model)
            lang, scores = predictor.predict(batch.column(columns.text))
            score = scores[:, 0]
        if pc.any(pc.is_null(lang)).as_py():
            raise InputError("input", "column 'lang' has nulls; calibrate expects langid output or raw text")
        histogram.add(lang, score)
    return histogram.thresholds(min_docs)


@dataclass
class CalibrateParams:
    model: str | None = option(
        None,
        "fastText LID model (default: bundled lid.176.ftz); unused when the input has lang and lang_score.",
    )
    min_docs: int = option(20, "Languages with fewer predicted documents get no threshold.")


def calibrate_tool(params: CalibrateParams, io: IOOptions) -> tuple[dict, list[str]]:
    """`curate langid calibrate` (and the ``langid-calibrate`` recipe step): thresholds as YAML."""
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    table = calibrate(iter_batches(io.inputs, columns, io.batch_size, bad=bad), params.model, columns,
                      params.min_docs)
    lines = [f"# curate langid calibrate: tau = max({CALIBRATION_FLOOR}, min({CALIBRATION_CEILING}, median - std))"]
    lines += [f"{lang}: {row['threshold']}  # docs={row['docs']} median={row['median']} std={row['std']}"
              for lang, row in table.items()]
    text = "\n".join(lines) + "\n"
    if io.output == "-":
        sys.stdout.write(text)
    else:
        write_text_atomic(io.output, text)
    summary = {"stage": "langid calibrate", "output": io.output, "languages": table,
               "errors_skipped": len(bad.records)}
    return summary, []
