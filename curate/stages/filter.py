"""Filter documents on a condition over their columns: signals computed once, thresholds changed freely.

Annotating stages (``quality --mode annotate``, ``langid``, ``dedup minhash --mode annotate``,
``quality classify``) write ``q_*``, ``lang_score``, ``quality_score``, ``dup_cluster_size``,
``quality_reasons``; ``curate filter --expr`` keeps the documents for which a condition over them holds,
without recomputing anything (what Dolma's and data-juicer's filters and NeMo Curator's ``ScoreFilter`` do
with precomputed scores). The condition is parsed by :mod:`curate.stages.filter_expr`, never evaluated as
Python.

A document is kept when every top-level ``and`` clause is true. A clause that is null (a comparison with a
null value, ``not`` of a null) removes the document, and it is counted like a false one. Each removed
document is counted against the first clause it fails, under that clause's text. ``--drop-columns``
(names or globs like ``q_*``) leaves columns out of the kept documents once the condition has been
evaluated; the rejected documents keep every column.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from curate.io.errors import UsageError
from curate.io.inputs import Columns
from curate.io.output import OutputDir, UnitRecord
from curate.params import option
from curate.stages.base import MapStage, StageOutput
from curate.stages.filter_expr import parse


@dataclass
class FilterParams:
    expr: str = option("", "Condition to keep a document, e.g. 'lang == \"en\" and q_word_count >= 50' "
                       "(grammar: docs/filters.md).", required=True)
    drop_columns: list[str] = option([], "Leave these columns out of the kept documents, after filtering "
                                     "(comma-separated names or globs: 'q_*,quality_reasons').")


class FilterStage(MapStage):
    """Keeps the documents for which ``--expr`` holds; counts removals per top-level ``and`` clause."""

    name = "filter"
    empty_hint = "--expr"

    def __init__(self, params: FilterParams):
        super().__init__(params)
        self.condition = parse(params.expr)
        self._checked: tuple[str, ...] | None = None

    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput:
        names = batch.schema.names
        if self._checked != tuple(names):
            self.condition.check_columns(names)
            for pattern in self.params.drop_columns:
                if pattern in (columns.text, columns.id):
                    raise UsageError(f"--drop-columns: cannot drop the {'text' if pattern == columns.text else 'id'}"
                                     f" column '{pattern}'")
            self._checked = tuple(names)
        frame = pl.from_arrow(pa.Table.from_batches([batch.select(list(self.condition.columns))]))  # no text copy
        assert isinstance(frame, pl.DataFrame)
        try:
            results = frame.select([c.expr.alias(str(i)) for i, c in enumerate(self.condition.clauses)])
        except pl.exceptions.PolarsError as exc:
            raise UsageError(f"--expr: cannot evaluate {self.params.expr!r} on these columns: "
                             f"{str(exc).splitlines()[0]}") from None
        for clause, dtype in zip(self.condition.clauses, results.dtypes, strict=True):
            if dtype not in (pl.Boolean, pl.Null):
                raise UsageError(f"--expr: '{clause.text}' is a {dtype}, not a condition (compare it with something)")
        passed = results.select(pl.all().cast(pl.Boolean).fill_null(False)).to_numpy().reshape(batch.num_rows, len(results.columns))
        keep = passed.all(axis=1)
        first_failed = np.argmin(passed, axis=1)[~keep]
        counts = np.bincount(first_failed, minlength=len(self.condition.clauses))
        removed = {c.text: int(n) for c, n in zip(self.condition.clauses, counts, strict=True) if n}
        mask = pa.array(keep)
        kept = batch.filter(mask)
        dropped = self.dropped(kept.schema.names, columns)
        if dropped:
            kept = kept.select([n for n in kept.schema.names if n not in dropped])
        return StageOutput(kept, batch.filter(pa.array(~keep)), {"removed": removed})

    def dropped(self, names: list[str], columns: Columns) -> set[str]:
        """The columns ``--drop-columns`` names or matches (the text and id columns always stay)."""
        return {n for n in names if n not in (columns.text, columns.id)
                and any(fnmatch.fnmatchcase(n, p) for p in self.params.drop_columns)}

    def finish(self, out: OutputDir, records: list[UnitRecord]) -> dict:
        """The clauses in the expression's order (``removed`` is keyed by their text)."""
        return {"clauses": [c.text for c in self.condition.clauses]}
