"""Bounded reads of a stage output for the report: a few columns of at most a fixed number of rows.

Rows come from row groups spread evenly over the shards (every row when the output is small), so the cost of
building a report does not grow with the corpus: counts over a large output are estimates, scaled from the
sample and labelled as such on the page. Only :func:`_read_group` reads data, which lets a test count what
a report read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.io.errors import CurateError
from curate.io.inputs import parquet_file

# Rows read of one output, per kind of read (a test lowers them to check that reads stay within them)
BUDGETS = {
    "text": 20_000,  # columns holding text: lengths, characters per language
    "short": 1_000_000,  # short columns: language codes, cluster ids and sizes
    "signals": 200_000,  # per-document signals for histograms (quality's q_*, scores)
    "examples": 5_000,  # rows scanned for examples of removed documents
    "sequences": 2_000,  # packed sequences (token ids) per bucket
}
EXAMPLE_CHARS = 300
SPREAD = 64  # row groups a sample takes rows from, when the output has that many


@dataclass
class Sample:
    """Columns of some rows of an output, and how many rows the output has."""

    table: pa.Table
    total: int

    @property
    def exact(self) -> bool:
        return self.table.num_rows >= self.total

    @property
    def scale(self) -> float:
        return self.total / self.table.num_rows if self.table.num_rows else 0.0


def _read_group(file, group: int, columns: list[str], limit: int) -> pa.Table:
    """At most ``limit`` rows of one row group (stops reading the group there)."""
    batches, rows = [], 0
    for batch in file.iter_batches(batch_size=min(limit, 65_536), row_groups=[group], columns=columns):
        batches.append(batch.slice(0, limit - rows))
        rows += batches[-1].num_rows
        if rows >= limit:
            break
    return pa.Table.from_batches(batches, schema=batches[0].schema) if batches else None


def read_sample(shards: list[str], columns: list[str], budget: str, *, text: str | None = None) -> Sample | None:
    """``columns`` of at most ``BUDGETS[budget]`` rows spread over ``shards`` (None: a column is missing or
    there are no rows). ``text`` names a text column to keep only the first ``EXAMPLE_CHARS`` characters of.
    """
    max_rows = BUDGETS[budget]
    try:
        files = [parquet_file(path) for path in shards]
    except CurateError:
        return None
    if not files or any(c not in f.schema_arrow.names for f in files for c in columns):
        return None
    groups = [(f, g, f.metadata.row_group(g).num_rows) for f in files for g in range(f.metadata.num_row_groups)]
    groups = [g for g in groups if g[2]]
    total = sum(n for *_, n in groups)
    if not total:
        return None
    if total > max_rows:  # evenly spaced row groups (at least SPREAD of them), the first rows of each
        wanted = min(len(groups), max(SPREAD, math.ceil(len(groups) * max_rows / total)))
        groups = [groups[i] for i in sorted({round(x) for x in np.linspace(0, len(groups) - 1, wanted)})]
    limit = max(1, math.ceil(max_rows / len(groups)))
    tables, read = [], 0
    for file, group, _ in groups:
        if read >= max_rows:
            break
        table = _read_group(file, group, columns, min(limit, max_rows - read))
        if table is not None:
            read += table.num_rows
            if text is not None:
                index = table.schema.get_field_index(text)
                table = table.set_column(index, text, pc.utf8_slice_codeunits(
                    pc.fill_null(table.column(text).cast(pa.string()), ""), 0, EXAMPLE_CHARS))
            tables.append(table)
    if not tables:
        return None
    return Sample(pa.concat_tables(tables, promote_options="permissive"), total)


def language_counts(shards: list[str], lang: str, text: str) -> tuple[dict[str, tuple[float, float]], bool] | None:
    """{language: (documents, characters)} of an output and whether it is exact (else scaled from a sample).

    Documents come from the language column (a short read); characters from the text lengths of a text read,
    scaled to the output.
    """
    codes = read_sample(shards, [lang], "short")
    if codes is None:
        return None
    docs = _value_counts(codes.table.column(lang), codes.scale)
    lengths = read_sample(shards, [lang, text], "text")
    chars: dict[str, float] = {}
    if lengths is not None:
        frame = pa.table({"lang": pc.fill_null(lengths.table.column(lang).cast(pa.string()), "und"),
                          "chars": pc.utf8_length(pc.fill_null(lengths.table.column(text).cast(pa.string()), ""))})
        grouped = frame.group_by("lang").aggregate([("chars", "sum")])
        chars = {code: value * lengths.scale for code, value in
                 zip(grouped.column("lang").to_pylist(), grouped.column("chars_sum").to_pylist(), strict=True)}
    exact = codes.exact and (lengths is None or lengths.exact)
    return {code: (n, chars.get(code, 0.0)) for code, n in docs.items()}, exact


def _value_counts(column: pa.ChunkedArray, scale: float) -> dict[str, float]:
    counts = pc.value_counts(pc.fill_null(column.cast(pa.string()), "und"))
    return {str(v["values"]): v["counts"] * scale for v in counts.to_pylist()}


@dataclass
class Example:
    reason: str
    id: str
    lang: str
    text: str  # the first EXAMPLE_CHARS characters


def examples_by_reason(shards: list[str], reason_column: str, text: str, id_column: str, *,
                       per_reason: int = 3) -> dict[str, list[Example]]:
    """A few rows per removal reason of an output: ``reason`` (a string) or ``quality_reasons`` (a list)."""
    names = parquet_file(shards[0]).schema_arrow.names if shards else []
    columns = [c for c in (reason_column, text, id_column, "lang") if c in names]
    sample = read_sample(shards, columns, "examples", text=text) if reason_column in columns and text in columns \
        else None
    if sample is None:
        return {}
    table = sample.table
    reasons = table.column(reason_column).combine_chunks()
    if pa.types.is_list(reasons.type) or pa.types.is_large_list(reasons.type):
        rows = pc.list_parent_indices(reasons).to_numpy(zero_copy_only=False)
        reasons = pc.list_flatten(reasons)
    else:
        rows = np.arange(len(reasons))
    reasons = pc.fill_null(reasons.cast(pa.string()), "")
    found: dict[str, list[Example]] = {}
    for reason in pc.unique(reasons).to_pylist():  # a few reasons, each looked up at once
        if not reason:
            continue
        picked = table.take(pa.array(rows[np.flatnonzero(pc.equal(reasons, reason).to_numpy(zero_copy_only=False))
                                          [:per_reason]])).to_pylist()
        found[reason] = [Example(reason, str(row.get(id_column, "")), str(row.get("lang") or ""), row[text])
                         for row in picked]
    return found


def duplicate_clusters(kept: list[str], removed: list[str], text: str, id_column: str, *,
                       clusters: int = 3, members: int = 3) -> list[tuple[int, list[Example]]]:
    """The largest clusters among the first rows of a dedup output: the kept document, then removed ones.

    ``removed`` is the ``--rejected`` output (or ``kept`` itself in annotate mode, where ``dup_keep`` marks
    the kept one); the kept document of each cluster is looked up by ``dup_cluster_id``.
    """
    column = "dup_cluster_id"
    annotate = not removed
    wanted = [c for c in (column, "dup_cluster_size", id_column, text, "dup_keep") if c != "dup_keep" or annotate]
    sample = read_sample(removed or kept, wanted, "examples", text=text)
    if sample is None:
        return []
    table = sample.table
    if annotate:
        table = table.filter(pc.invert(pc.fill_null(table.column("dup_keep"), True)))
    if not table.num_rows:
        return []
    sizes = table.group_by(column).aggregate([("dup_cluster_size", "max")]).sort_by(
        [("dup_cluster_size_max", "descending"), (column, "ascending")])
    chosen = sizes.column(column).to_pylist()[:clusters]
    size_of = dict(zip(chosen, sizes.column("dup_cluster_size_max").to_pylist()[:clusters], strict=True))
    heads = read_matching(kept, column, chosen, [column, id_column, text] + (["dup_keep"] if annotate else []), text)
    if annotate and heads is not None:
        heads = heads.filter(pc.fill_null(heads.column("dup_keep"), False))
    head_rows = {row[column]: row for row in heads.to_pylist()} if heads is not None else {}
    out = []
    for cluster in chosen:
        rows = table.filter(pc.equal(table.column(column), cluster)).to_pylist()[: members - 1]
        group = []
        if cluster in head_rows:
            group.append(Example("kept", str(head_rows[cluster][id_column]), "", head_rows[cluster][text]))
        group += [Example("removed", str(r[id_column]), "", r[text]) for r in rows]
        out.append((int(size_of[cluster]), group))
    return out


def read_matching(shards: list[str], column: str, values: list, columns: list[str], text: str) -> pa.Table | None:
    """Rows whose ``column`` is one of ``values`` (a handful): the key column is scanned (a short read), the
    other columns are read only in the row groups that hold a match, up to the last match."""
    if not values:
        return None
    found, scanned = [], 0
    try:
        files = [parquet_file(path) for path in shards]
    except CurateError:
        return None
    for file in files:
        if any(c not in file.schema_arrow.names for c in columns):
            return None
        for group in range(file.metadata.num_row_groups):
            if scanned >= BUDGETS["short"]:
                break
            rows = file.metadata.row_group(group).num_rows
            keys = _read_group(file, group, [column], rows)
            scanned += rows
            hits = np.flatnonzero(pc.is_in(keys.column(column), pa.array(values)).to_numpy(zero_copy_only=False)) \
                if keys is not None else []
            if not len(hits):
                continue
            table = _read_group(file, group, columns, int(hits[-1]) + 1)  # only up to the last match
            table = table.filter(pc.is_in(table.column(column), pa.array(values)))
            index = table.schema.get_field_index(text)
            found.append(table.set_column(index, text, pc.utf8_slice_codeunits(
                pc.fill_null(table.column(text).cast(pa.string()), ""), 0, EXAMPLE_CHARS)))
    return pa.concat_tables(found) if found else None


def sample_lengths(shards: list[str], text: str) -> Sample | None:
    """Characters per document of a text read's rows."""
    sample = read_sample(shards, [text], "text")
    if sample is None:
        return None
    lengths = pc.utf8_length(pc.fill_null(sample.table.column(text).cast(pa.string()), ""))
    return Sample(pa.table({"chars": lengths}), sample.total)
