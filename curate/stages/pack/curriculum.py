"""Bucket metadata for variable-sequence-length training (Dataset Decomposition's `_buckets.json`).

Grow-P2 curriculum: at every optimizer step a trainer picks bucket i with weight ∝ (batches left in bucket i in
this cycle) × odds_i, with odds 2^(max − k) from the shortest bucket to the longest (32 16 8 4 2 1 for k = 8..13),
repeated for 8 cycles. A bucket's batch holds `batch_multiplier` × (base batch) sequences, so every step sees
the same number of tokens (64 × 8,192 ↔ 2,048 × 256).
"""

from __future__ import annotations

import numpy as np

GROW_P2_CYCLES = 8


def bucket_name(log2: int) -> str:
    return f"bucket_{1 << log2:05d}"


def grow_p2_odds(min_log2: int, max_log2: int) -> list[int]:
    return [1 << (max_log2 - k) for k in range(min_log2, max_log2 + 1)]


def buckets_metadata(sequences: dict[int, int], min_log2: int, max_log2: int, fmt: str) -> dict:
    """The content of `_buckets.json`: per bucket counts, odds and batch multipliers, plus the curriculum."""
    odds = grow_p2_odds(min_log2, max_log2)
    buckets = []
    for i, k in enumerate(range(min_log2, max_log2 + 1)):
        count = sequences.get(k, 0)
        buckets.append(
            {
                "name": bucket_name(k),
                "log2": k,
                "sequence_length": (1 << k) + 1,
                "context_length": 1 << k,
                "sequences": count,
                "tokens": count * ((1 << k) + 1),
                "batch_multiplier": 1 << (max_log2 - k),
                "curriculum_odds": odds[i],
            }
        )
    return {
        "format": fmt,
        "buckets": buckets,
        "curriculum": {
            "name": "grow_p2",
            "odds": odds,
            "cycles": GROW_P2_CYCLES,
            "rule": "each step pick bucket i with weight ∝ remaining batches of i in the cycle × odds[i]; "
            "batch of bucket i = batch_multiplier[i] × base batch (tokens per step constant)",
        },
    }


def grow_p2_schedule(
    sequences: list[int], batch_multipliers: list[int], odds: list[int], base_batch: int, cycles: int, seed: int
) -> np.ndarray:
    """Bucket index of every step under Grow-P2 (a reference sampler for trainers and tests).

    Each bucket's full batches are spread evenly over `cycles`; within a cycle a step draws bucket i with
    probability ∝ remaining batches of i × odds[i], so short sequences come first and long ones last.
    """
    rng = np.random.default_rng(seed)
    batches = np.array([n // (m * base_batch) for n, m in zip(sequences, batch_multipliers, strict=True)])
    per_cycle = [np.diff(np.floor(np.linspace(0, b, cycles + 1)).astype(np.int64)) for b in batches]
    steps: list[int] = []
    weights = np.asarray(odds, np.float64)
    for cycle in range(cycles):
        left = np.array([pc[cycle] for pc in per_cycle], np.float64)
        while left.sum() > 0:
            p = left * weights
            i = int(rng.choice(len(left), p=p / p.sum()))
            steps.append(i)
            left[i] -= 1
    return np.asarray(steps, np.int64)
