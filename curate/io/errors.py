"""Errors that the CLI turns into one clear line and a documented exit code.

Exit codes (also in the README):
  0 success · 1 a check failed (validate) · 2 usage error · 3 bad input · 4 output problem ·
  5 remote storage still failing after --retries (throttling, 5xx, timeouts: worth a later rerun) · 130 interrupted
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_OUTPUT = 4
EXIT_REMOTE = 5
EXIT_INTERRUPTED = 130


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
