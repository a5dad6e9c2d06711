"""Read ahead in a background thread: pyarrow decodes without the GIL, so reading overlaps a stage's work."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import TypeVar

T = TypeVar("T")
_END = object()
_PREFETCH_DEPTH = 2


class _Failure:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(items: Iterator[T], depth: int = _PREFETCH_DEPTH) -> Iterator[T]:
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer (errors re-raised)."""
    buffer: queue.Queue = queue.Queue(maxsize=depth)

    def fill() -> None:
        try:
            for item in items:
                buffer.put(item)
            buffer.put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            buffer.put(_Failure(exc))

    threading.Thread(target=fill, daemon=True, name="curate-read").start()
    while (item := buffer.get()) is not _END:
        if isinstance(item, _Failure):
            raise item.error
        yield item
