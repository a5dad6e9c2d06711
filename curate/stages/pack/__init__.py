"""Tokenize and pack: Dataset-Decomposition buckets, concat-and-chunk and best-fit, in formats trainers read.

Modules: tokenize (encode_batch + EOS), decompose / concat / bestfit (the algorithms on token arrays),
packers (streaming strategies), writers (Parquet, Megatron .bin/.idx, .npy), curriculum (`_buckets.json`,
Grow-P2), stats (accounting, --compare table), train (`curate tokenizer train`), stage (`curate pack`).
"""
