"""`curate pack` (tokenize and pack) and `curate tokenizer train`."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from curate.cli.common import stage_command, stage_group
from curate.io.options import IOOptions
from curate.params import option
from curate.stages.pack.stage import PackParams, run_pack
from curate.stages.pack.train import train_tokenizer

app = stage_group(
    "Tokenize and pack for training: Dataset-Decomposition buckets (default), concat-and-chunk or best-fit, "
    "as Parquet, Megatron .bin/.idx or .npy.\n\n"
    "Usage: curate pack INPUT... -o OUT --tokenizer tokenizer.json [options]   (see `curate pack run --help`)",
    examples="Examples:\n\n\b\n  curate pack data/ -o out/packed --tokenizer tokenizer.json --seq-len 8192\n",
)
tokenizer_app = typer.Typer(
    help="Tokenizer utilities.",
    epilog="Examples:\n\n\b\n  curate tokenizer train data/ -o tokenizer.json --vocab-size 32000\n",
    no_args_is_help=True,
    rich_markup_mode=None,
)

EXAMPLES = """Examples:

\b
  curate pack data/ -o out/dd --tokenizer tokenizer.json                 # bucket_00256/ … bucket_08192/ + _buckets.json
  curate pack data/ -o out/dd --tokenizer gpt2.json --no-randomize --keep-columns mix_domain
  curate pack data/ -o out/cat --tokenizer gpt2.json --strategy concat --seq-len 2048 --format megatron
  curate pack data/ -o out/bf --tokenizer gpt2.json --strategy bestfit --seq-len 2048 --window 20000
  curate pack data/ -o out/cmp --tokenizer gpt2.json --compare --seq-len 8192   # three strategies side by side
  curate tokenizer train data/ -o tokenizer.json --vocab-size 32000
"""


@stage_command(app, "run", PackParams, help="Tokenize documents (EOS appended) and pack them into sequences.",
               examples=EXAMPLES, recipe="pack")
def pack(params: PackParams, io: IOOptions) -> dict:
    summary = run_pack(params, io)
    if summary.get("docs_in") and summary.get("docs_out") == 0:
        dropped = ", ".join(f"{reason} {tokens:,}" for reason, tokens in sorted(summary.get("tokens", {}).get("dropped", {}).items()))
        typer.echo(f"curate pack: warning: no token of the {summary['docs_in']:,} documents reached the output "
                   f"(tokens dropped: {dropped}); see --min-log2, --seq-len, --strategy", err=True)
    return summary


@dataclass
class TrainParams:
    vocab_size: int = option(32_000, "Vocabulary size, special tokens included.")
    min_frequency: int = option(2, "Merge only pairs seen at least this often.")
    eos_token: str = option("<|endoftext|>", "End-of-document special token added to the vocabulary.")


@stage_command(
    tokenizer_app,
    "train",
    TrainParams,
    help="Train a byte-level BPE tokenizer on the corpus with `tokenizers`' trainer; -o names the tokenizer.json.",
    output_file="tokenizer.json file to write",
    examples="Examples:\n\n\b\n  curate tokenizer train data/ -o tokenizer.json --vocab-size 32000\n"
    "  curate pack data/ -o out --tokenizer tokenizer.json\n",
)
def train(params: TrainParams, io: IOOptions) -> dict:
    return train_tokenizer(params.vocab_size, params.min_frequency, params.eos_token, io)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="pack")
    root.add_typer(tokenizer_app, name="tokenizer")
