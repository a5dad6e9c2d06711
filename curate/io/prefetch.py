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
    """Produce ``items`` in a background thread, up to ``depth`` ahead of the consumer (errors re-raised).

    When the consumer stops early (an error in the stage, ``close()``), the thread is stopped and joined
    before this returns: a reader thread still inside pyarrow at interpreter exit aborts the process.
    """
    buffer: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                buffer.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as exc:  # handed to the consumer, raised there
            put(_Failure(exc))

    thread = threading.Thread(target=fill, daemon=True, name="curate-read")
    thread.start()
    try:
        while (item := buffer.get()) is not _END:
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
