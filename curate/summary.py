"""A stage run's summary, read one way by everyone: the recipe table, `curate demo`, the report.

A run writes its summary as JSON (``--json`` on stdout, ``_stats.json`` in its output); the keys each stage
adds stay there for users' scripts. :class:`RunSummary` is the typed view of what every stage reports
(documents, characters and tokens in and out, removals per reason, time), whichever stage wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class RunSummary:
    stage: str
    output: str = ""
    complete: bool = True
    docs_in: int | None = None  # None: the step is a tool (it wrote a file), or did not count documents
    docs_out: int | None = None
    chars_in: int | None = None
    chars_out: int | None = None
    tokens_in: int | None = None  # where the stage counted tokens (pack; mix apply counts what it wrote)
    tokens_out: int | None = None
    removed: dict[str, int] = field(default_factory=dict)  # documents per reason (each once when ordered)
    wall_seconds: float = 0.0
    errors_skipped: int = 0
    data: dict = field(default_factory=dict)  # the summary as written

    @classmethod
    def from_dict(cls, data: dict) -> RunSummary:
        documents = data.get("documents") if isinstance(data.get("documents"), dict) else {}
        tokens = data.get("tokens") if isinstance(data.get("tokens"), dict) else {}
        docs_in = _int(data.get("docs_in"))
        if docs_in is None:
            docs_in = _int(documents.get("in"))
        docs_out = None if "compare" in data else _int(data.get("docs_out"))  # pack --compare writes no documents
        if docs_out is None and "compare" not in data and _int(documents.get("in")) is not None:
            docs_out = int(documents["in"]) - int(documents.get("dropped", 0))  # pack: documents with a token out
        tokens_out = _int(tokens.get("out"))
        mix = data.get("mix")
        if tokens_out is None and isinstance(mix, dict):
            tokens_out = sum(int(row.get("tokens", 0)) for row in mix.values() if isinstance(row, dict))
        reasons = data.get("removed_in_order") or data.get("removed") or {}
        return cls(
            stage=str(data.get("stage", "")), output=str(data.get("output") or ""),
            complete=bool(data.get("complete", True)), docs_in=docs_in, docs_out=docs_out,
            chars_in=_int(data.get("chars_in")), chars_out=_int(data.get("chars_out")),
            tokens_in=_int(tokens.get("in")), tokens_out=tokens_out,
            removed={str(k): int(v) for k, v in reasons.items() if _int(v)} if isinstance(reasons, dict) else {},
            wall_seconds=float(data.get("wall_seconds") or 0.0), errors_skipped=_int(data.get("errors_skipped")) or 0,
            data=data,
        )
