"""`curate tokenizer train`: a byte-level BPE trained on the corpus, the offline default for `curate pack`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from curate.io.errors import UsageError
from curate.io.inputs import BadRows, Columns, iter_batches
from curate.io.options import IOOptions
from curate.io.output import write_text_atomic
from curate.params import option


def train_tokenizer(vocab_size: int, min_frequency: int, eos_token: str, io: IOOptions) -> dict:
    """Stream the text column into the BPE trainer batch by batch; write tokenizer.json atomically."""
    if io.output in ("", "-"):
        raise UsageError("-o must name the tokenizer.json file to write")
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    if vocab_size <= len(alphabet) + 1:
        raise UsageError(f"--vocab-size must exceed the byte alphabet plus EOS ({len(alphabet) + 1})")
    started = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[eos_token], initial_alphabet=alphabet,
        show_progress=not io.quiet,
    )
    columns = Columns(io.text_column, io.id_column)
    bad = BadRows(skip=io.on_error == "skip")
    counts = {"docs": 0}

    def texts() -> Iterator[list[str]]:
        for batch in iter_batches(io.inputs, columns, io.batch_size, bad=bad):
            column = batch.column(columns.text)
            counts["docs"] += batch.num_rows
            yield column.to_pylist()

    tokenizer.train_from_iterator(texts(), trainer=trainer)
    write_text_atomic(io.output, tokenizer.to_str())
    return {
        "stage": "tokenizer train",
        "output": io.output,
        "docs_in": counts["docs"],
        "vocab_size": tokenizer.get_vocab_size(),
        "eos_token": eos_token,
        "errors_skipped": len(bad.records),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


@dataclass
class TrainParams:
    vocab_size: int = option(32_000, "Vocabulary size, special tokens included.")
    min_frequency: int = option(2, "Merge only pairs seen at least this often.")
    eos_token: str = option("<|endoftext|>", "End-of-document special token added to the vocabulary.")


def train_tool(params: TrainParams, io: IOOptions) -> tuple[dict, list[str]]:
    """`curate tokenizer train` (and the ``tokenizer-train`` recipe step)."""
    return train_tokenizer(params.vocab_size, params.min_frequency, params.eos_token, io), []
