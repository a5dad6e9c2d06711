"""A one-line progress display on stderr: units, docs/s, text MB/s, ETA. Silent unless stderr is a TTY."""

from __future__ import annotations

import sys
import threading
import time


class Progress:
    def __init__(self, label: str, total_units: int, total_rows: int | None, enabled: bool):
        self.label, self.total_units, self.total_rows = label, total_units, total_rows
        self.enabled = enabled and sys.stderr.isatty()
        self.units = self.docs = self.bytes = 0
        self.start = self._last = time.monotonic()
        self._lock = threading.Lock()  # units finish in several threads (one per pool worker)

    def update(self, docs: int = 0, nbytes: int = 0, units: int = 0) -> None:
        with self._lock:
            self.docs += docs
            self.bytes += nbytes
            self.units += units
            now = time.monotonic()
            if self.enabled and (now - self._last > 0.25 or units):
                self._last = now
                self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.bytes / elapsed
        docs_rate = self.docs / elapsed
        eta = ""
        if self.total_rows and docs_rate > 0:
            eta = f" · ETA {max(self.total_rows - self.docs, 0) / docs_rate:.0f}s"
        sys.stderr.write(
            f"\r{self.label}: units {self.units}/{self.total_units} · {self.docs:,} docs · "
            f"{docs_rate:,.0f} docs/s · {rate / 1e6:.1f} MB/s{eta}   "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
