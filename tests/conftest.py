"""Shared fixtures: the real corpora in ../shared/data (skipped with a reason when absent) and small inputs."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (see its README); tests that need it skip when it is absent, as in a user's clone."""
    if not (SHARED_DATA / "README.md").exists():
        pytest.skip(f"real corpora not found at {SHARED_DATA} (present in CI; see shared/data/README.md)")
    return SHARED_DATA


def write_parquet(path: Path, table: pa.Table, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


@pytest.fixture
def small_corpus(tmp_path: Path) -> Path:
    """Three Parquet files of the generated sample with an extra typed column, 1,200 rows in all."""
    from curate.sample import generate

    table = generate(1_200, seed=7)
    table = table.append_column(
        "weight", pa.array([float(i) / 7 for i in range(table.num_rows)], pa.float64())
    )
    directory = tmp_path / "corpus"
    for i, start in enumerate(range(0, table.num_rows, 400)):
        write_parquet(directory / f"shard-{i}.parquet", table.slice(start, 400), row_group_size=150)
    return directory
