"""What a per-document stage is: a function over Arrow record batches, testable without files or the CLI."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pyarrow as pa

from curate.io.inputs import Columns


@dataclass
class StageOutput:
    kept: pa.RecordBatch  # rows that stay, with the stage's added columns (fixed types)
    rejected: pa.RecordBatch | None = None  # removed rows, for --rejected DIR
    counters: dict = field(default_factory=dict)  # nested counts, summed across batches, units and tasks


class MapStage(ABC):
    """A stage that maps each batch independently: the runner shards, parallelises and resumes it."""

    name: ClassVar[str]
    source: str = ""  # the input file of the unit being processed, set by the runner (for error messages)

    def __init__(self, params: Any):
        self.params = params

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models and other heavy state; runs once in each worker process, before the first batch."""

    def identity(self) -> dict:
        """What beyond ``params`` decides the output (e.g. a model file's checksum); recorded in the plan."""
        return {}

    @abstractmethod
    def process(self, batch: pa.RecordBatch, columns: Columns) -> StageOutput: ...
