"""Options shared by every streaming command: where data comes from, where it goes, how work is split."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from curate.io.errors import UsageError
from curate.params import option


@dataclass
class IOOptions:
    """Input/output and execution options; every stage command gets these flags."""

    text_column: str = option("text", "Column holding the document text.")
    id_column: str = option("id", "Column holding the document id (used in error reports and by dedup).")
    batch_size: int = option(
        10_000, "Rows per Arrow record batch: bounds memory; does not change the output.", fingerprint=False
    )
    columns: list[str] = option(
        [], "Keep only these pass-through columns (comma-separated), besides the text and id columns."
    )
    drop_columns: list[str] = option([], "Leave these pass-through columns out of the output (comma-separated).")
    max_rows_per_shard: int = option(
        100_000, "Input rows per work unit and at most this many rows per output shard."
    )
    workers: int = option(1, "Worker processes on this machine (with --executor ray: CPUs of a local Ray).",
                          fingerprint=False)
    executor: str = option(
        "local", "local: this machine's worker processes. ray: one Ray task per unit (pip install 'curate[ray]').",
        choices=["local", "ray"], fingerprint=False,
    )
    ray_address: str | None = option(
        None, "--executor ray: the cluster to join (auto: the one this node belongs to; default: a local one).",
        fingerprint=False,
    )
    shard_index: int | None = option(
        None,
        "This task's index for cluster array jobs (default: $SLURM_ARRAY_TASK_ID relative to its minimum).",
        fingerprint=False,
    )
    num_shards: int | None = option(
        None, "Number of array tasks (default: $SLURM_ARRAY_TASK_COUNT, else 1).", fingerprint=False
    )
    overwrite: bool = option(
        False, "Replace an existing output made with other inputs or parameters.", fingerprint=False
    )
    on_error: str = option(
        "fail",
        "fail: stop at the first bad file or row. skip: record it in OUT/_errors.jsonl and go on.",
        choices=["fail", "skip"],
    )
    storage_options: str | None = option(
        None,
        "JSON options for remote filesystems (s3://...), e.g. '{\"endpoint_url\": \"http://127.0.0.1:9000\"}'.",
        fingerprint=False,
    )
    retries: int = option(5, "Retries (exponential backoff) for throttled or failed remote requests.", fingerprint=False)
    quiet: bool = option(False, "No progress on stderr.", short="-q", fingerprint=False)
    json_summary: bool = option(
        False, "Print the run summary as JSON on stdout.", flag="--json", fingerprint=False
    )
    # where data comes from and goes: a plan records the inputs as resolved files (real paths, sizes, mtimes),
    # so how they were spelled (relative, absolute, listing order) is no part of a run's identity
    inputs: list[str] = field(default_factory=list, metadata={"fingerprint": False})
    output: str = field(default="", metadata={"fingerprint": False})

    def task(self) -> tuple[int, int]:
        """(index, count) of this array task, from the flags or Slurm's environment."""
        env = os.environ
        count = self.num_shards
        if count is None:
            count = int(env["SLURM_ARRAY_TASK_COUNT"]) if "SLURM_ARRAY_TASK_COUNT" in env else 1
        index = self.shard_index
        if index is None:
            index = (
                int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                if "SLURM_ARRAY_TASK_ID" in env
                else 0
            )
        if count < 1 or not 0 <= index < count:
            raise UsageError(f"--shard-index must be in 0..{count - 1} (got {index}) and --num-shards ≥ 1")
        return index, count

    def check(self) -> None:
        """Validate the options and apply the storage settings to this process."""
        from curate.io.storage import configure

        for name in ("batch_size", "max_rows_per_shard", "workers"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be ≥ 1")
        if self.retries < 0:
            raise UsageError("--retries must be ≥ 0")
        configure(self.storage_options, self.retries)
        self.task()
