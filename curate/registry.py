"""The command table: every stage and tool of curate, in one place.

Each entry says what a stage is (its parameters dataclass, its passes, which of them are array passes) or
what a tool is (a command that writes files for later steps). The CLI, recipes, ``--emit-slurm``, ``curate
status`` and the report read this table, and the runner and its executors run the passes it builds; nothing
registers itself as a side effect of an import. Entries name their code as ``"module:attribute"`` strings, imported only when used, so ``curate
--help`` or one command does not import every stage's libraries.

Adding a map stage takes its module (a :class:`~curate.stages.base.MapStage` and a params dataclass made
with :func:`~curate.params.option`) and one :class:`StageSpec` line in :data:`STAGES`.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from curate.io.options import IOOptions
from curate.params import Argument

if TYPE_CHECKING:
    from curate.stages.base import Pass

# The IOOptions flags of a stage that reads inputs and writes a sharded output directory.
IO_ALL: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(IOOptions) if f.name not in ("inputs", "output"))
# The flags of a command that reads inputs and writes one file: no shards, no work splitting.
IO_READ: tuple[str, ...] = ("text_column", "id_column", "batch_size", "on_error", "storage_options", "retries",
                            "quiet", "json_summary")

EXPLAIN = Argument("explain", bool, False, ("--explain",),
                   "Print the settings that apply (thresholds, word split, stop words) and exit; needs no input.")
REJECTED = Argument("rejected", str | None, None, ("--rejected",), "Also write removed documents here.")
ONLY_PASS = Argument("only_pass", str | None, None, ("--pass",),
                     "Run only this pass (for array jobs that schedule the passes themselves; each resumes).")


def load(reference: str) -> Any:
    """The object a ``"module:attribute"`` reference names."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class StageSpec:
    """A stage: reads documents, writes a sharded output directory, resumable, in one or more passes."""

    name: str  # its key in recipes
    command: tuple[str, ...]  # its words on the command line: ("dedup", "exact")
    params: str  # "module:Class" of its parameters dataclass
    help: str
    examples: str
    stage: str | None = None  # "module:Class" of a MapStage: one array pass over the input units
    passes: str | None = None  # or "module:function" (params, io, **options) -> list[Pass]
    options: tuple[Argument, ...] = ()  # command arguments that are not parameters (--rejected DIR)
    io: tuple[str, ...] = IO_ALL  # the IOOptions flags it takes
    show: str | None = None  # "module:function" (summary) -> lines printed under the summary line
    explain: str | None = None  # "module:function" (params, **explain_options) -> lines: --explain prints
    explain_options: tuple[Argument, ...] = ()  # them instead of running, needing no INPUT or -o
    recipe: bool = True  # False: a command only (one pass of a stage, run alone)

    def params_class(self) -> type:
        return load(self.params)

    def build_passes(self, params: Any, io: IOOptions, **options: Any) -> list[Pass]:
        """The stage's passes for these parameters and this output."""
        if self.passes is not None:
            return load(self.passes)(params, io, **options)
        assert self.stage is not None
        from curate.runner import run_map_stage
        from curate.stages.base import Pass

        stage_class = load(self.stage)
        rejected = options.get("rejected")
        return [Pass("", Path(io.output), True,
                     lambda task_io: run_map_stage(stage_class(params), task_io, rejected_dir=rejected))]

    def run(self, params: Any, io: IOOptions, only: str | None = None, **options: Any) -> dict:
        """Run every pass (or the pass named ``only``) as this array task: the stage's command."""
        from curate.runner import run_passes

        io.check()
        return run_passes(self.name, self.build_passes(params, io, **options), io, only)

    def lines(self, summary: dict) -> list[str]:
        return load(self.show)(summary) if self.show else []


@dataclass(frozen=True)
class ToolSpec:
    """A tool: a command that writes files (a model, a table) for later steps rather than documents.

    ``function(*params, **arguments) -> (summary, lines)`` gets one instance of each params dataclass and the
    arguments; an ``inputs`` argument makes it read the current data of a recipe. A tool with ``io`` flags
    reads INPUT... and writes the file -o names (``output``: what that file is) and gets them as ``io=``.
    """

    name: str
    command: tuple[str, ...]
    function: str
    help: str
    examples: str
    params: tuple[str, ...] = ()
    arguments: tuple[Argument, ...] = ()
    io: tuple[str, ...] = ()
    output: str = ""

    def params_classes(self) -> list[type]:
        return [load(reference) for reference in self.params]

    @property
    def takes_inputs(self) -> bool:
        return bool(self.io) or any(a.name == "inputs" for a in self.arguments)

    def call(self, params: list[Any], arguments: dict[str, Any]) -> tuple[dict, list[str]]:
        return load(self.function)(*params, **arguments)


@dataclass(frozen=True)
class CommandSpec:
    """Other commands (run, status, validate, report, …): ``register(app)`` adds them to a typer app."""

    command: tuple[str, ...]
    register: str


# -- the stages ---------------------------------------------------------------------------------------------
LANGID_EXAMPLES = """Examples:

\b
  curate langid data/ -o out/langid
  curate langid 'crawl/*.jsonl.zst' -o out --keep en,de,fr --min-score 0.65 --workers 2
  curate langid docs.parquet -o out --thresholds thresholds.yaml --top-k 3
  zstdcat x.jsonl.zst | curate langid - -o - | head
  curate langid data/ -o out --model glotlid/model_v3.bin   # lang=eng, lang_script=Latn
  curate langid calibrate out/langid -o thresholds.yaml
"""

QUALITY_EXAMPLES = """Examples:

\b
  curate quality data/ -o out/quality
  curate quality langid-out/ -o out --filters gopher-quality,fineweb --rejected out-rejected
  curate quality data/ -o out --mode annotate            # keep all; add quality_reasons and q_* signals
  curate quality data/ -o out --filters gopher-repetition,gopher-quality,c4,fineweb   # FineWeb's chain
  curate quality data/ -o out --config quality.yaml --no-c4-remove-lines --workers 2
  curate quality classify data/ -o scored --model model.bin
  curate quality train --positive wiki/ --negative crawl/ -o model.bin

\b
quality.yaml (keys as in curate/data/quality/defaults.yaml; null disables a rule):
  gopher_quality: {min_doc_words: 30}
  languages:
    de: {stop_words: [der, die, das, und], fineweb: {max_short_line_ratio: 0.8}}
  fallback: {gopher_quality: {min_avg_word_length: 2}}
"""

PACK_EXAMPLES = """Examples:

\b
  curate pack data/ -o out/dd --tokenizer tokenizer.json                 # bucket_00256/ … bucket_08192/ + _buckets.json
  curate pack data/ -o out/dd --tokenizer gpt2.json --no-randomize --keep-columns mix_domain
  curate pack data/ -o out/cat --tokenizer gpt2.json --strategy concat --seq-len 2048 --format megatron
  curate pack data/ -o out/bf --tokenizer gpt2.json --strategy bestfit --seq-len 2048 --window 20000
  curate pack data/ -o out/cmp --tokenizer gpt2.json --compare --seq-len 8192   # three strategies side by side
  curate pack data/ -o out/dd --tokenizer tokenizer.json --workers 2      # units in parallel, same output
  curate pack data/ -o out/icp --tokenizer gpt2.json --strategy concat --order related   # related documents together
"""

EXTRACT_EXAMPLES = """Examples:

\b
  curate extract crawl/CC-MAIN-*.warc.gz -o out/extract --workers 8
  curate extract s3://commoncrawl/crawl-data/CC-MAIN-2024-10/segments/ -o s3://bucket/extract
  curate extract pages.warc.gz -o out --extractor trafilatura        # FineWeb's extractor, ~20x slower
  curate extract pages.parquet -o out --html-column body --keep-html
  curate extract crawl/ -o out --on-error skip --min-chars 100 --max-html-bytes 500000
"""

STAGES: dict[str, StageSpec] = {spec.name: spec for spec in (
    StageSpec(
        "extract", ("extract",), "curate.stages.extract:ExtractParams", stage="curate.stages.extract:ExtractStage",
        help="Main text of crawled pages: reads WARC files (.warc, .warc.gz) or an HTML column, extracts HTTP 200 "
        "HTML responses with resiliparse (default) or trafilatura, and writes id, url, date, text, title, "
        "content_type, status, source; every other record is counted by reason (docs/extract.md).",
        examples=EXTRACT_EXAMPLES, io=tuple(n for n in IO_ALL if n != "text_column"),
    ),
    StageSpec(
        "langid", ("langid",), "curate.stages.langid:LangidParams", stage="curate.stages.langid:LangidStage",
        help="Language identification with fastText (offline default model): adds lang, lang_score (and "
        "lang_top with --top-k) to every document; optionally filters. An input column named lang is kept as "
        "lang_original (with a warning on stderr).",
        examples=LANGID_EXAMPLES, options=(REJECTED,),
    ),
    StageSpec(
        "quality", ("quality",), "curate.stages.quality:QualityParams",
        stage="curate.stages.quality:QualityStage",
        help="Quality filtering: Gopher quality/repetition, C4 and FineWeb heuristics, applied as a chain in "
        "--filters order; per-language settings come from the lang column.",
        examples=QUALITY_EXAMPLES,
        options=(Argument("rejected", str | None, None, ("--rejected",),
                          "Also write removed documents here, with quality_reasons."),),
        explain="curate.stages.quality.heuristics:explain_settings",
        explain_options=(Argument("lang", str | None, None, ("--lang",),
                                  "With --explain: the language to show (default: --default-lang)."),),
    ),
    StageSpec(
        "quality-classify", ("quality", "classify"), "curate.stages.quality.classifier:ClassifyParams",
        stage="curate.stages.quality.classifier:QualityClassifierStage",
        help="Add quality_score (float32): a fastText classifier's probability of --label; optionally filter.",
        examples="Examples:\n\n\b\n  curate quality classify data/ -o scored --model model.bin\n"
        "  curate quality classify data/ -o kept --model model.bin --min-score 0.5 --rejected low\n",
        options=(REJECTED,),
    ),
    StageSpec(
        "pii", ("pii",), "curate.stages.pii:PiiParams", stage="curate.stages.pii:PiiStage",
        help="Replace e-mail addresses and public IPv4 addresses with datatrove's regexes and decoys; the decoy "
        "rotation starts at a hash of each document's id, so output does not depend on --workers or tasks.",
        examples="Examples:\n\n\b\n  curate pii dedup-out/ -o out/pii\n"
        "  curate pii data/ -o out --mode annotate            # keep the text, add pii_emails and pii_ips\n"
        "  curate pii data/ -o out --all-ips --no-emails      # private addresses too, e-mails untouched\n"
        "  curate pii data/ -o out --ip-replacements 192.0.2.1,198.51.100.1\n",
    ),
    StageSpec(
        "urlfilter", ("urlfilter",), "curate.stages.urlfilter:UrlFilterParams",
        stage="curate.stages.urlfilter:UrlFilterStage",
        help="Remove documents by URL, as datatrove's URLFilter: block lists of domains (subdomains included) "
        "and URLs (UT1 lists, hosts files), allow lists that always win, banned words, soft-banned words and "
        "banned subwords; --mode annotate adds url_blocked_reason. See docs/filters.md.",
        examples="Examples:\n\n\b\n  curate urlfilter data/ -o out/url --block ut1/adult/domains,ut1/adult/urls\n"
        "  curate urlfilter data/ -o out/url --block hosts.txt --allow allow.txt --rejected out/url-rejected\n"
        "  curate urlfilter data/ -o out/url --banned-words banned.txt --soft-banned-words soft.txt "
        "--soft-threshold 2\n  curate urlfilter data/ -o out/url --block domains.gz --mode annotate "
        "--url-column source_url\n",
        options=(Argument("rejected", str | None, None, ("--rejected",),
                          "Also write removed documents here, with url_blocked_reason."),),
    ),
    StageSpec(
        "filter", ("filter",), "curate.stages.filter:FilterParams", stage="curate.stages.filter:FilterStage",
        help="Keep the documents for which --expr holds: a condition over columns that annotating stages wrote "
        "(q_*, lang_score, quality_score, dup_cluster_size, quality_reasons), so thresholds change without "
        "recomputing; removals are counted per top-level 'and' clause. Grammar: docs/filters.md.",
        examples="Examples:\n\n\b\n  curate filter annotated/ -o out --expr 'lang == \"en\" and lang_score >= 0.7'\n"
        "  curate filter annotated/ -o out --expr 'q_word_count >= 50 and not "
        "quality_reasons.list.contains(\"c4:curly_bracket\")' --drop-columns 'q_*,quality_reasons'\n"
        "  curate filter scored/ -o out --expr 'quality_score > 0.5 or url.str.contains(\"wikipedia.org\")' "
        "--rejected low\n",
        options=(REJECTED,), io=tuple(n for n in IO_ALL if n != "drop_columns"),
    ),
    StageSpec(
        "dedup-exact", ("dedup", "exact"), "curate.stages.dedup.params:ExactParams",
        passes="curate.stages.dedup.passes:exact_stage",
        help="Keep the first document (input order) of each group with an equal key; add dup_count (group "
        "size). Three array passes: keys per unit, groups per key partition, filter per unit.",
        examples="Examples:\n\n\b\n  curate dedup exact data/ -o out/exact\n"
        "  curate dedup exact data/ -o out/exact --key url\n"
        "  curate dedup exact data/ -o out/exact --normalize   # equal after lowercasing, punctuation, digits\n",
    ),
    StageSpec(
        "dedup-minhash", ("dedup", "minhash"), "curate.stages.dedup.params:MinhashParams",
        passes="curate.stages.dedup.passes:minhash_stage",
        help="MinHash-LSH near-duplicate removal: signatures → cluster → filter, keeping one document per "
        "cluster; kept documents get dup_cluster_id and dup_cluster_size (--mode annotate keeps all and adds "
        "dup_keep). The passes also run alone (`curate dedup minhash signatures|cluster|filter`).",
        examples="Examples:\n\n\b\n  curate dedup minhash data/ -o out/dedup\n"
        "  curate dedup minhash data/ -o out/dedup --threshold 0.8 --bands 14 --rows 8\n"
        "  curate dedup minhash data/ -o out/annotated --mode annotate --shingle chars --ngram 24\n"
        "  curate dedup minhash new/ -o out/new --against old-signatures/\n"
        "  curate dedup minhash signatures data/ -o work/sigs --shard-index 0 --num-shards 4\n",
        options=(REJECTED,),
    ),
    StageSpec(
        "dedup-minhash-signatures", ("dedup", "minhash", "signatures"), "curate.stages.dedup.params:SignatureParams",
        passes="curate.stages.dedup.passes:signatures_command", recipe=False,
        help="Pass 1: MinHash signatures, one 64-bit key per LSH band, one Parquet part per input unit (-o SIGDIR). "
        "The output is also an index for --against.",
        examples="Examples:\n\n\b\n  curate dedup minhash signatures data/ -o work/sigs --num-shards 8 --shard-index 3\n",
    ),
    StageSpec(
        "dedup-minhash-cluster", ("dedup", "minhash", "cluster"), "curate.stages.dedup.params:ClusterParams",
        passes="curate.stages.dedup.passes:cluster_command", recipe=False,
        help="Pass 2: group equal band keys out of core and union-find the documents (INPUT = SIGDIR, -o "
        "CLUSTERDIR). With --num-shards N each task takes every N-th band; the last task to finish writes the "
        "clusters.",
        examples="Examples:\n\n\b\n  curate dedup minhash cluster work/sigs -o work/clusters\n"
        "  curate dedup minhash cluster work/sigs -o work/clusters --against index/sigs\n",
    ),
    StageSpec(
        "dedup-minhash-filter", ("dedup", "minhash", "filter"), "curate.stages.dedup.params:FilterParams",
        passes="curate.stages.dedup.passes:filter_command", recipe=False,
        help="Pass 3: keep one document per cluster (or annotate all) using --clusters; same INPUT as signatures.",
        examples="Examples:\n\n\b\n  curate dedup minhash filter data/ --clusters work/clusters -o out/dedup\n",
        options=(Argument("clusters", str, flags=("--clusters",),
                          help="Clusters directory from `dedup minhash cluster`."), REJECTED),
    ),
    StageSpec(
        "dedup-rehydrate", ("dedup", "rehydrate"), "curate.stages.dedup.params:RehydrateParams",
        stage="curate.stages.dedup.rehydrate:RehydrateStage",
        help="Add `repeat` from each document's dup_cluster_size through a table (largest key ≤ size); "
        "--materialize writes each document `repeat` times instead.",
        examples="Examples:\n\n\b\n  curate dedup rehydrate out/dedup -o out/rehydrated\n"
        "  curate dedup rehydrate out/dedup -o out/train --materialize --table '1:1,2:2,3:3,5:5,100:8,1000:1'\n",
    ),
    StageSpec(
        "mix-apply", ("mix", "apply"), "curate.stages.mix.apply:ApplyParams",
        passes="curate.stages.mix.apply:apply_passes", show="curate.stages.mix.tools:apply_lines",
        help="Sample documents per domain to realise --weights for a --tokens budget (repeating a domain up to "
        "--max-epochs), adding mix_domain; reports realised vs target token shares.",
        examples="Examples:\n\n\b\n  curate mix apply data.parquet --domain-column source -o mixed --weights weights.yaml "
        "--tokens 1000000\n  curate mix apply web=crawl/ wiki=wiki/ -o mixed --weights w.yaml --tokens 2000000000 "
        "--tokenizer tokenizer.json\n",
    ),
    StageSpec(
        "decontaminate", ("decontaminate",), "curate.stages.decontaminate:DecontaminateParams",
        passes="curate.stages.decontaminate:decontaminate_passes", show="curate.stages.decontaminate:decontamination_lines",
        help="Benchmark decontamination (GPT-3 / NeMo Curator): documents holding a word 13-gram of a --benchmarks "
        "text get contamination_ngrams and contamination_sources, and are cut around each match (--mode cut), "
        "dropped (drop) or kept (annotate). Two passes: index (built once, by task 0), check (per input unit).",
        examples="Examples:\n\n\b\n  curate decontaminate data/ -o out/clean --benchmarks mmlu.jsonl,gsm8k.parquet\n"
        "  curate decontaminate data/ -o out/flagged --benchmarks evals/ --mode annotate\n"
        "  curate decontaminate data/ -o out/clean --benchmarks prompts.txt --mode drop --rejected out/contaminated\n"
        "  curate decontaminate data/ -o out/clean --benchmarks evals/ --pass check --shard-index 3 --num-shards 8\n",
        options=(REJECTED,),
    ),
    StageSpec(
        "pack", ("pack",), "curate.stages.pack.stage:PackParams", passes="curate.stages.pack.stage:pack_passes",
        help="Tokenize documents (EOS appended) and pack them into sequences for training: Dataset-Decomposition "
        "buckets (default), concat-and-chunk or best-fit, as Parquet, Megatron .bin/.idx or .npy.",
        examples=PACK_EXAMPLES, io=tuple(n for n in IO_ALL if n not in ("columns", "drop_columns")),
    ),
)}


# -- the tools --------------------------------------------------------------------------------------------
def _mix_tool(name: str, params: tuple[str, ...], arguments: tuple[Argument, ...], help: str,
              examples: str) -> ToolSpec:
    return ToolSpec(f"mix-{name}", ("mix", name), f"curate.stages.mix.tools:{name}_tool", help, examples,
                    tuple(f"curate.stages.mix.{module}" for module in params), arguments)


INPUTS = Argument("inputs", list[str], help="name=path per domain, or inputs plus --domain-column.")
OPTIONAL_INPUTS = Argument("inputs", list[str] | None, None, help="Data to take token shares from (or use --stats).")
READ_ARGUMENTS = (
    Argument("text_column", str, "text", ("--text-column",), "Column holding the document text."),
    Argument("batch_size", int, 10_000, ("--batch-size",), "Rows per Arrow batch (bounds memory)."),
)
DOMAINS = "tools:DomainParams"
MIXTURES = Argument("mixtures", str, flags=("--mixtures",), help="Mixtures CSV (index + one column per domain).")
MODEL = Argument("model", str, flags=("--model",), help="Model directory from `curate mix fit`.")

TOOLS: dict[str, ToolSpec] = {spec.name: spec for spec in (
    ToolSpec(
        "langid-calibrate", ("langid", "calibrate"), "curate.stages.langid:calibrate_tool",
        help="Per-language score thresholds, the FineWeb2 way: for each predicted language, "
        "tau = max(0.3, min(0.9, median - std)) of its documents' scores. -o names the YAML file to "
        "write (- for stdout); use it with `curate langid --thresholds`.",
        examples="Examples:\n\n\b\n  curate langid calibrate data/ -o thresholds.yaml\n"
        "  curate langid data/ -o out --thresholds thresholds.yaml\n",
        params=("curate.stages.langid:CalibrateParams",), io=IO_READ,
        output="YAML file of thresholds to write (- for stdout)",
    ),
    ToolSpec(
        "tokenizer-train", ("tokenizer", "train"), "curate.stages.pack.train:train_tool",
        help="Train a byte-level BPE tokenizer on the corpus with `tokenizers`' trainer; -o names the tokenizer.json.",
        examples="Examples:\n\n\b\n  curate tokenizer train data/ -o tokenizer.json --vocab-size 32000\n"
        "  curate pack data/ -o out --tokenizer tokenizer.json\n",
        params=("curate.stages.pack.train:TrainParams",), io=IO_READ, output="tokenizer.json file to write",
    ),
    _mix_tool(
        "stats", (DOMAINS,),
        (INPUTS, Argument("output", str | None, None, ("-o", "--output"), "Write the stats JSON here."), *READ_ARGUMENTS),
        help="Documents, bytes and tokens per domain (tokens with --tokenizer, else bytes/4).",
        examples="Examples:\n\n\b\n  curate mix stats data.parquet --domain-column source -o stats.json\n"
        "  curate mix stats web=crawl/ wiki=wiki/ --tokenizer tokenizer.json",
    ),
    _mix_tool(
        "propose", ("propose:ProposeParams", DOMAINS),
        (OPTIONAL_INPUTS, Argument("output", str, flags=("-o", "--output"), help="Mixtures CSV to write."),
         Argument("stats", str | None, None, ("--stats",), "Domain stats JSON from `curate mix stats -o`."),
         *READ_ARGUMENTS),
        help="RegMix's generator: Dirichlet draws around token share ** temperature, within the epoch caps.",
        examples="Examples:\n\n\b\n  curate mix propose --stats stats.json --n 512 --seed 1 -o mixtures.csv\n"
        "  curate mix propose web=crawl/ wiki=wiki/ --token-budget 25000000000 -o mixtures.csv",
    ),
    _mix_tool(
        "proxy", ("proxy:ProxyParams", DOMAINS),
        (INPUTS, MIXTURES,
         Argument("output", str, flags=("-o", "--output"), help="Results CSV to write (index + one loss column per target)."),
         *READ_ARGUMENTS),
        help="Built-in CPU proxy runs: a smoothed byte n-gram LM per mixture, scored in bits/byte on held-out "
        "text of each target domain (see docs/mix.md).",
        examples="Examples:\n\n\b\n  curate mix proxy data.parquet --domain-column source --mixtures mixtures.csv -o results.csv\n"
        "  curate mix proxy web=crawl/ wiki=wiki/ --mixtures m.csv --targets web -o results.csv",
    ),
    _mix_tool(
        "fit", ("regression:FitParams",),
        (MIXTURES, Argument("results", str, flags=("--results",), help="Results CSV (index + metric columns), joined on index."),
         Argument("output", str, flags=("-o", "--output"), help="Model directory (model.json + lightgbm.txt).")),
        help="Fit LightGBM (RegMix: gbdt, 1000 rounds, lr 0.01, seed 42) and linear regression from mixture "
        "weights to --target; prints k-fold cross-validated Spearman ρ and MSE of both.",
        examples="Examples:\n\n\b\n  curate mix fit --mixtures mixtures.csv --results results.csv --target bpb/mean -o model\n"
        "  curate mix fit --mixtures train_mixture_1m.csv --results train_pile_loss_1m.csv \\\n"
        "      --target metric/the_pile_pile_cc_val_loss -o model",
    ),
    _mix_tool(
        "predict", (),
        (MODEL, Argument("mixtures", str, flags=("--mixtures",), help="Mixtures CSV to score."),
         Argument("output", str, flags=("-o", "--output"), help="Predictions CSV (index + predicted target)."),
         Argument("regressor", str, "lightgbm", ("--regressor",), "One of lightgbm, linear.")),
        help="Predict the target for each mixture (index + predicted target column).",
        examples="Examples:\n\n\b\n  curate mix predict --model model --mixtures test_mixture_1m.csv -o predictions.csv",
    ),
    _mix_tool(
        "optimize", ("optimize:OptimizeParams",),
        (MODEL, Argument("output", str | None, None, ("-o", "--output"), "Weights YAML (default: MODEL/weights.yaml).")),
        help="Simulate --n-sim mixtures from the generator, predict them, and average the --top-k best into "
        "the final weights (within the epoch caps when --stats is given). Writes YAML for `curate mix apply`.",
        examples="Examples:\n\n\b\n  curate mix optimize --model model\n"
        "  curate mix optimize --model model --stats stats.json --token-budget 25000000000 -o weights.yaml",
    ),
    ToolSpec(
        "mix-cmr", ("mix", "cmr"), "curate.stages.mix.cmr:cmr_tool",
        help="CMR scaling law for continual pre-training (Gu et al. 2024): from runs at several domain shares and "
        "token budgets, the largest share of --domain that keeps --general-loss within --tolerance of --base-loss, "
        "at --budget. Writes weights YAML for `curate mix apply` (see docs/mix.md).",
        examples="Examples:\n\n\b\n  curate mix cmr --mixtures mixtures.csv --results results.csv --domain finance \\\n"
        "      --general-loss loss/general --domain-loss loss/finance --budget 20000000000 -o weights.yaml\n"
        "  curate mix cmr --mixtures m.csv --results proxy.csv --run-tokens 5000000 --domain web \\\n"
        "      --general-loss bpb/general --base-loss 2.35 --tolerance 0.05 -o weights.yaml\n",
        params=("curate.stages.mix.cmr:CmrParams",),
        arguments=(MIXTURES, Argument("results", str, flags=("--results",),
                                      help="Results CSV (index, tokens, loss columns), joined on index."),
                   Argument("output", str, flags=("-o", "--output"), help="Weights YAML to write.")),
    ),
)}


# -- other commands, and the command line's groups -----------------------------------------------------------
COMMANDS: tuple[CommandSpec, ...] = (
    CommandSpec(("quality", "train"), "curate.cli.quality:register"),
    CommandSpec(("validate",), "curate.cli.validate:register"),
    CommandSpec(("stats",), "curate.cli.validate:register"),
    CommandSpec(("report",), "curate.cli.validate:register"),
    CommandSpec(("run",), "curate.cli.run:register"),
    CommandSpec(("status",), "curate.cli.run:register"),
    CommandSpec(("sample",), "curate.cli.demo:register"),
    CommandSpec(("demo",), "curate.cli.demo:register"),
)

GROUPS: dict[tuple[str, ...], tuple[str, str]] = {  # words → (help, examples) of a group that is no stage
    ("dedup",): (
        "Deduplication: exact keys, MinHash-LSH near-duplicates (out of core), FineWeb2 rehydration.",
        "Examples:\n\n\b\n  curate dedup exact data/ -o out/exact\n  curate dedup minhash data/ -o out/dedup\n"
        "  curate dedup rehydrate out/dedup -o out/rehydrated\n",
    ),
    ("mix",): (
        "Data-mixture search, RegMix-style: propose mixtures, score them with proxy runs, fit a regression, "
        "optimise it, and sample the winning mixture.\n\nDomains come from a column (--domain-column source) or "
        "one input per domain (web=path/ wiki=path/).",
        "Examples (the whole search; each command's --help has more):\n\n\b\n"
        "  curate mix stats data/ --domain-column source -o stats.json\n"
        "  curate mix propose --stats stats.json --n 64 -o mixtures.csv\n"
        "  curate mix proxy data/ --domain-column source --mixtures mixtures.csv -o results.csv\n"
        "  curate mix fit --mixtures mixtures.csv --results results.csv --target bpb/mean -o model\n"
        "  curate mix optimize --model model -o weights.yaml\n"
        "  curate mix apply data/ --domain-column source --weights weights.yaml --tokens 1000000 -o mixed",
    ),
    ("tokenizer",): ("Tokenizer utilities.",
                     "Examples:\n\n\b\n  curate tokenizer train data/ -o tokenizer.json --vocab-size 32000\n"),
}


def stage_named(label: str) -> StageSpec | None:
    """The stage an output's plan names (``langid``, ``dedup minhash``, ``mix apply``), for the report."""
    return next((spec for spec in STAGES.values() if " ".join(spec.command) == label or spec.name == label), None)


def top_level_words() -> list[str]:
    """Every first word of a command, in the table's order."""
    words: list[str] = []
    for spec in (*STAGES.values(), *TOOLS.values(), *COMMANDS):
        if spec.command[0] not in words:
            words.append(spec.command[0])
    return words

