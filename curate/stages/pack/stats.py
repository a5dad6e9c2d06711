"""Token accounting shared by the three strategies, and the side-by-side table of `curate pack --compare`.

Invariant (asserted by the tests): tokens.in == tokens.out + sum(tokens.dropped); padding is counted apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PackStats:
    docs_in: int = 0
    docs_split: int = 0  # documents whose tokens land in two or more sequences (Ding et al.'s truncations)
    docs_dropped: int = 0  # documents with no token in the output
    docs_partially_dropped: int = 0  # documents that lost some tokens but kept others
    tokens_in: int = 0  # tokenizer output plus one EOS per document
    tokens_out: int = 0  # real tokens in output sequences (padding excluded)
    padding: int = 0
    sequences: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason → tokens

    def drop(self, reason: str, tokens: int) -> None:
        if tokens:
            self.dropped[reason] = self.dropped.get(reason, 0) + tokens

    def counters(self) -> dict:
        """The counts, nested as in ``_stats.json``: they sum across units (ratios come from ``with_ratios``)."""
        return {
            "documents": {
                "in": self.docs_in,
                "split": self.docs_split,
                "dropped": self.docs_dropped,
                "partially_dropped": self.docs_partially_dropped,
            },
            "tokens": {
                "in": self.tokens_in,
                "out": self.tokens_out,
                "dropped": dict(sorted(self.dropped.items())),
                "dropped_total": sum(self.dropped.values()),
                "padding": self.padding,
            },
            "sequences": self.sequences,
        }


def with_ratios(counters: dict) -> dict:
    """Counters (one unit's, or all units' summed) with ``fill_rate`` (real tokens over sequence slots, 1.0
    without padding) and ``kept_share`` (tokens out over tokens in)."""
    tokens = counters["tokens"]
    slots = tokens["out"] + tokens["padding"]
    return {
        **counters,
        "tokens": {**tokens, "dropped": dict(sorted(tokens["dropped"].items()))},
        "fill_rate": round(tokens["out"] / slots, 6) if slots else 0.0,
        "kept_share": round(tokens["out"] / tokens["in"], 6) if tokens["in"] else 0.0,
    }


_ROWS = [
    ("documents in", lambda s: s["documents"]["in"]),
    ("sequences", lambda s: s["sequences"]),
    ("tokens in", lambda s: s["tokens"]["in"]),
    ("tokens out", lambda s: s["tokens"]["out"]),
    ("tokens dropped", lambda s: s["tokens"]["dropped_total"]),
    ("padding", lambda s: s["tokens"]["padding"]),
    ("fill rate", lambda s: f"{100 * s['fill_rate']:.2f}%"),
    ("tokens kept", lambda s: f"{100 * s['kept_share']:.2f}%"),
    ("docs split", lambda s: s["documents"]["split"]),
    ("docs dropped", lambda s: s["documents"]["dropped"]),
    ("docs partly dropped", lambda s: s["documents"]["partially_dropped"]),
]


def compare_table(by_strategy: dict[str, dict]) -> str:
    """Strategies as columns, measures as rows (what --compare prints on stderr)."""
    names = list(by_strategy)
    cells = [[label] + [_fmt(get(by_strategy[n])) for n in names] for label, get in _ROWS]
    header = ["", *names]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in [header, *cells]]
    return "\n".join(lines)


def _fmt(value: object) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
