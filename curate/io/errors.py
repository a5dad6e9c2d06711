"""Errors that the CLI turns into one clear line and a documented exit code.

Exit codes (also in the README):
  0 success · 1 a check failed (validate) · 2 usage error · 3 bad input · 4 output problem ·
  5 remote storage still failing after --retries (throttling, 5xx, timeouts: worth a later rerun) · 130 interrupted ·
  141 stdout closed by its reader (`curate … -o - | head`): a quiet stop, as for other Unix tools
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_REMOTE = 5
EXIT_INTERRUPTED = 130
EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: the reader of stdout went away (`curate … | head`)


class CurateError(Exception):
    """An error meant for the user: `str(err)` is the whole message, `exit_code` the process status."""

    exit_code = EXIT_INPUT

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __reduce__(self):  # errors cross process boundaries (worker pools) intact
        return (type(self), (str(self), self.exit_code))


class UsageError(CurateError):
    exit_code = EXIT_USAGE


class InputError(CurateError):
    """Bad input data: names the file and, where known, the row and column."""

    exit_code = EXIT_INPUT

    def __init__(
        self,
        path: str,
        problem: str,
        row: int | None = None,
        column: str | None = None,
        row_label: str = "row",
    ):
        where = path if row is None else f"{path}, {row_label} {row}"
        if column is not None:
            where += f", column '{column}'"
        super().__init__(f"{where}: {problem}")
        self.path, self.problem, self.row, self.column, self.row_label = path, problem, row, column, row_label

    def __reduce__(self):
        return (type(self), (self.path, self.problem, self.row, self.column, self.row_label))


class OutputError(CurateError):
    exit_code = EXIT_OUTPUT


class RemoteError(CurateError):
    """A request to remote storage that kept failing after every retry; names the key."""

    exit_code = EXIT_REMOTE


_FULL = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
         errno.EFBIG: "file too large for this file system", errno.EROFS: "read-only file system"}


def output_os_error(exc: OSError, where: str | None) -> OutputError | None:
    """A full disk, an exceeded quota or a read-only file system as an OutputError naming the path (exit 4),
    or None for OS errors that are not about where curate writes."""
    if exc.errno not in _FULL:
        return None
    path = where or exc.filename or "output"
    return OutputError(f"{path}: cannot write: {_FULL[exc.errno]}; free some space and rerun the same command to resume")
