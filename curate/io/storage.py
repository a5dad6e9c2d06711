"""Remote storage (s3://, gs://, any fsspec URL): filesystems, and retries for the requests that fail.

Local paths never come here: they keep the plain ``os``/``pathlib`` code (atomic rename). A URL with a scheme
is opened through fsspec (``pip install 'curate[s3]'`` for S3), with ``--storage-options`` JSON passed to the
filesystem (endpoint URL, profile, ...) and credentials from the usual environment variables. Object stores
throttle ("SlowDown", 503) and drop connections: every request curate makes itself goes through
:func:`retrying`, bounded exponential backoff with jitter, then one clear error that names the key.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from curate.io.errors import UsageError

T = TypeVar("T")
_TRANSIENT_CODES = ("SlowDown", "Throttl", "RequestTimeout", "InternalError", "ServiceUnavailable", "503", "500")


def is_remote(path: str) -> bool:
    """True for URLs such as ``s3://bucket/key``; plain paths and ``file://`` stay local."""
    return "://" in path and not path.startswith("file://")


def require_local(path: str, what: str) -> str:
    """For outputs that are not yet written through OutputDir's remote support: a clear refusal."""
    if is_remote(path):
        raise UsageError(f"{what}: {path}: this output must be a local directory for now (remote: inputs, and "
                         "the outputs of langid, quality, dedup filter passes)")
    return path


@dataclass
class StorageSettings:
    options: dict[str, Any] = field(default_factory=dict)
    retries: int = 5
    backoff_seconds: float = 0.5


SETTINGS = StorageSettings()
_FILESYSTEMS: dict[str, Any] = {}


def configure(options_json: str | None, retries: int) -> None:
    """Set the storage options and retry budget for this process (workers call it too)."""
    options = {}
    if options_json:
        try:
            options = json.loads(options_json)
        except json.JSONDecodeError as exc:
            raise UsageError(f"--storage-options: not valid JSON ({exc.msg})") from None
        if not isinstance(options, dict):
            raise UsageError("--storage-options: expected a JSON object, e.g. '{\"endpoint_url\": \"http://...\"}'")
    if options != SETTINGS.options:
        _FILESYSTEMS.clear()
    SETTINGS.options, SETTINGS.retries = options, retries


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path without the scheme) for a URL; one filesystem per scheme and process."""
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: remote paths need fsspec (pip install 'curate[s3]')") from None
    protocol = url.split("://", 1)[0]
    fs = _FILESYSTEMS.get(protocol)
    if fs is None:
        try:
            fs = fsspec.filesystem(protocol, **SETTINGS.options)
        except (ImportError, ValueError) as exc:
            raise UsageError(f"{url}: no filesystem for '{protocol}://' ({exc}); for S3: pip install 'curate[s3]'") from None
        _FILESYSTEMS[protocol] = fs
    return fs, fs._strip_protocol(url)


def transient(error: BaseException) -> bool:
    """Errors worth another try: throttling, 5xx, timeouts, dropped connections."""
    if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
        return False
    text = f"{type(error).__name__} {error}"
    return isinstance(error, TimeoutError | ConnectionError) or any(code in text for code in _TRANSIENT_CODES)


def retrying(what: str, action: Callable[[], T]) -> T:
    """Run ``action``; on a transient error wait (exponential backoff with jitter) and try again.

    ``what`` names the key in the error raised after the last attempt.
    """
    from curate.io.errors import OutputError

    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            attempt += 1
            if not transient(exc):
                raise
            if attempt > SETTINGS.retries:
                raise OutputError(f"{what}: still failing after {SETTINGS.retries} retries ({type(exc).__name__}: {exc})") from None
            delay = SETTINGS.backoff_seconds * 2 ** (attempt - 1)
            time.sleep(delay * (0.5 + random.random()))
