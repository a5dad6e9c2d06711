"""Parameters of the dedup commands: one dataclass per command, the single source of their CLI flags."""

from __future__ import annotations

from dataclasses import dataclass

from curate.io.errors import UsageError
from curate.params import nested, option
from curate.stages.dedup.shingles import Normalization


@dataclass
class NormalizeParams:
    """Normalisation switches shared by exact (--normalize) and MinHash dedup."""

    lowercase: bool = option(True, "Lowercase before hashing.")
    strip_accents: bool = option(False, "Drop accents (NFKD base letter; combining marks removed).")
    normalize_digits: bool = option(True, "Every run of digits (with an optional decimal part) becomes 0.")
    strip_punctuation: bool = option(True, "Runs of punctuation and symbols (Unicode P*, S*) become a space.")
    collapse_whitespace: bool = option(True, "Whitespace runs become one space; ends trimmed.")

    def normalization(self) -> Normalization:
        return Normalization(self.lowercase, self.strip_accents, self.normalize_digits,
                             self.strip_punctuation, self.collapse_whitespace)


@dataclass
class SignatureParams(NormalizeParams):
    """What decides the signatures (and so the index format): checked equal between index and corpus."""

    threshold: float = option(0.8, "Jaccard similarity above which documents are near-duplicates.")
    num_perm: int = option(112, "MinHash permutations per document.")
    ngram: int = option(5, "Shingle size: words per word n-gram, or code points per char n-gram.")
    shingle: str = option("words", "Shingle kind: word n-grams or character n-grams.", choices=["words", "chars"])
    spaceless_ngram: int = option(
        5, "With --shingle words: code points per char n-gram for text written without spaces (Chinese, Japanese, "
        "Thai, Lao, Khmer, Myanmar, Tibetan), chosen per document by its lang column or its script; 0: words.",
    )
    seed: int = option(1, "Seed of the permutations: same seed + same input = same clusters.")
    bands: int | None = option(
        None, "LSH bands (with --rows; FineWeb: 14 × 8). Default: chosen from --threshold and the two weights."
    )
    rows: int | None = option(None, "Hashes per LSH band (with --bands); bands × rows ≤ --num-perm.")
    false_positive_weight: float = option(
        0.1, "Weight of false positives when choosing bands x rows (datasketch's minimisation)."
    )
    false_negative_weight: float = option(
        0.9, "Weight of false negatives when choosing bands x rows (high: --verify removes false positives)."
    )
    verify: bool = option(
        True, "Keep each document's shingle set and confirm candidate pairs by exact Jaccard ≥ --threshold.",
    )
    keep: str = option("first", "Which document of a cluster stays: first (input order), longest, or max:COLUMN.")

    def check(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 2:
            raise UsageError(f"--num-perm must be ≥ 2, got {self.num_perm}")
        if self.ngram < 1:
            raise UsageError(f"--ngram must be ≥ 1, got {self.ngram}")
        if (self.bands is None) != (self.rows is None):
            raise UsageError("--bands and --rows go together (or leave both out to derive them from --threshold)")
        if self.bands is not None and not (self.bands >= 1 and self.rows >= 1 and self.bands * self.rows <= self.num_perm):
            raise UsageError(f"--bands {self.bands} × --rows {self.rows} must be between 1 and --num-perm {self.num_perm}")
        if self.spaceless_ngram < 0:
            raise UsageError(f"--spaceless-ngram must be ≥ 0, got {self.spaceless_ngram}")
        if self.keep not in ("first", "longest") and not (self.keep.startswith("max:") and len(self.keep) > 4):
            raise UsageError(f"--keep must be first, longest or max:COLUMN, got {self.keep!r}")


@dataclass
class ClusterParams:
    against: str | None = option(None, "Signature index (a `dedup minhash signatures` output) to dedup against.")
    partition_rows: int = option(
        1 << 24, "Band rows grouped in memory at once (larger bands are partitioned on disk), and the most "
        "candidate pairs verified at once.", fingerprint=False
    )


@dataclass
class FilterParams:
    mode: str = option("filter", "filter: keep one document per cluster. annotate: keep all, add dup_keep.",
                       choices=["filter", "annotate"])


@dataclass
class MinhashParams:
    """`curate dedup minhash`: one section per pass, each what that pass's plan records. Flags and recipe keys
    stay flat (``--ngram 5``, ``ngram: 5``); a recipe may also write ``signatures: {ngram: 5}``."""

    signatures: SignatureParams = nested(SignatureParams, "Pass 1: shingles, MinHash signatures, LSH band keys.")
    cluster: ClusterParams = nested(ClusterParams, "Pass 2: documents sharing a band key are clustered.")
    filter: FilterParams = nested(FilterParams, "Pass 3: one document kept per cluster.")
    work_dir: str | None = option(None, "Where signatures and clusters go (default: OUT.minhash-work).")


@dataclass
class ExactParams(NormalizeParams):
    key: str = option("text", "What makes documents equal: text, url, or any column name.")
    normalize: bool = option(False, "Normalise the key text first (the switches below) instead of exact bytes.")
    partition_rows: int = option(
        1 << 24, "Key hashes grouped in memory at once: the groups pass has one hash partition (a task of its own) "
        "per this many documents. Fixed when a run starts.", fingerprint=False
    )


DEFAULT_REPEAT_TABLE = "1:1,2:2,3:3,5:5,100:8,1000:1"


@dataclass
class RehydrateParams:
    table: str = option(DEFAULT_REPEAT_TABLE, "Cluster size → copies; a size uses the largest key ≤ it.")
    size_column: str = option("dup_cluster_size", "Column holding each document's cluster size.")
    materialize: bool = option(False, "Write each document `repeat` times instead of adding a repeat column.")
