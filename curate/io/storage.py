"""Remote storage (s3://, gs://, any fsspec URL): filesystems, and retries for the requests that fail.

Local paths never come here: they keep the plain ``os``/``pathlib`` code (atomic rename). A URL with a scheme
is opened through fsspec (``pip install 'curate[s3]'`` for S3), with ``--storage-options`` JSON passed to the
filesystem (endpoint URL, profile, ...) and credentials from the usual environment variables (``AWS_*``).

Object stores throttle ("SlowDown", 503) and drop connections. Curate owns the retries: every request it makes
goes through :func:`retrying` (bounded exponential backoff with jitter, ``--retries``), then one clear error
that names the key. The clients' own retry loops are set to a single attempt where curate can reach them
(s3fs, botocore), so ``--retries`` means what it says instead of multiplying with hidden layers.
"""

from __future__ import annotations

import errno
import json
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from curate.io.errors import OutputError, RemoteError, UsageError

T = TypeVar("T")
# error codes and messages of throttling and server-side failures (S3, GCS, Azure word them like this)
_TRANSIENT_WORDS = ("SlowDown", "reduce your request rate", "Throttl", "RequestTimeout", "InternalError",
                    "ServiceUnavailable", "TooManyRequests", "Service Unavailable", "Connection reset")
_TRANSIENT_ERRNOS = {errno.EBUSY, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED, errno.EAGAIN,
                     errno.ECONNREFUSED, errno.EPIPE}


def is_remote(path: str | object) -> bool:
    """True for URLs such as ``s3://bucket/key``; plain paths and ``file://`` stay local."""
    return isinstance(path, str) and "://" in path and not path.startswith("file://")


def join(base: str, *names: str) -> str:
    """``base/name`` for a local path or a URL (``pathlib`` would fold ``s3://`` into ``s3:/``)."""
    return "/".join([base.rstrip("/"), *names])


def normalised_location(location: str) -> str:
    """A URL with one spelling (lower-case scheme, no empty path parts), or a local path made absolute and
    real (symlinks and ".." resolved)."""
    if is_remote(location):
        scheme, rest = location.split("://", 1)
        return f"{scheme.lower()}://" + "/".join(part for part in rest.split("/") if part)
    return os.path.realpath(location)


def overlapping(a: str, b: str) -> bool:
    """Whether two locations are the same or one lies inside the other."""
    a, b = normalised_location(a), normalised_location(b)
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


@dataclass
class StorageSettings:
    options: dict[str, Any] = field(default_factory=dict)
    retries: int = 5
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 30.0
    retried: int = 0  # requests retried in this process (tests read it)


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
        raise UsageError(f"{url}: remote paths need fsspec and a driver, for S3: pip install 'curate[s3]'") from None
    protocol = url.split("://", 1)[0]
    fs = _FILESYSTEMS.get(protocol)
    if fs is None:
        options = dict(SETTINGS.options)
        if protocol in ("s3", "s3a"):
            # one attempt per botocore call unless the user configured botocore's retries: curate retries
            config = dict(options.get("config_kwargs") or {})
            config.setdefault("retries", {"total_max_attempts": 1})
            options["config_kwargs"] = config
            # other tasks write under the same prefix: a cached listing would hide their progress
            options.setdefault("use_listings_cache", False)
        try:
            fs = fsspec.filesystem(protocol, **options)
        except (ImportError, ValueError, TypeError) as exc:
            raise UsageError(
                f"{url}: cannot open a '{protocol}://' filesystem ({exc}); for S3: pip install 'curate[s3]'"
            ) from None
        if hasattr(fs, "retries"):
            fs.retries = 1  # s3fs: one attempt per request inside its own loop
        _FILESYSTEMS[protocol] = fs
    return fs, fs._strip_protocol(url)


def _chain(error: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def transient(error: BaseException) -> bool:
    """Errors worth another try: throttling, 5xx, timeouts, dropped connections (looked for in the cause chain)."""
    for exc in _chain(error):
        if isinstance(exc, FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError):
            return False
        if isinstance(exc, TimeoutError | ConnectionError):
            return True
        if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
            return True
        response = getattr(exc, "response", None)
        if isinstance(response, dict):  # botocore ClientError
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
            if status >= 500 or status == 429:
                return True
        name = type(exc).__name__
        if "Timeout" in name or "Connection" in name or "Throttl" in name:
            return True
        text = str(exc)
        if any(word in text for word in _TRANSIENT_WORDS):
            return True
    return False


def retrying(what: str, action: Callable[[], T]) -> T:
    """Run ``action``; on a transient error wait (exponential backoff, each wait drawn from 50–100% of its
    step so that throttled tasks do not retry in lockstep) and try again.

    ``what`` names the key in the error raised after the last attempt.
    """
    attempt = 0
    while True:
        try:
            return action()
        except Exception as exc:
            if not transient(exc):
                raise _explained(what, exc) from None
            if attempt >= SETTINGS.retries:
                raise RemoteError(
                    f"{what}: still failing after {SETTINGS.retries} retries ({type(exc).__name__}: {exc})"
                ) from None
            attempt += 1
            SETTINGS.retried += 1
            delay = min(SETTINGS.max_backoff_seconds, SETTINGS.backoff_seconds * 2 ** (attempt - 1))
            time.sleep(delay * (0.5 + random.random() / 2))


def _explained(what: str, error: Exception) -> Exception:
    """Permanent failures as errors users can act on (a missing key stays FileNotFoundError for callers)."""
    name = type(error).__name__
    if isinstance(error, PermissionError) or "AccessDenied" in str(error):
        return OutputError(f"{what}: access denied ({error}); check the credentials (AWS_* variables, profile)")
    if name in ("NoCredentialsError", "PartialCredentialsError"):
        return UsageError(f"{what}: no credentials found; set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or a profile")
    if name == "InvalidEndpointURL" or "Invalid endpoint" in str(error):
        return UsageError(f"{what}: {error} (check endpoint_url in --storage-options)")
    return error


class RetryingFile:
    """A remote file opened for reading whose reads are retried (pyarrow and decompressors read lazily).

    fsspec's buffered files move their position only after a fetch succeeds, so a failed read can be redone.
    """

    def __init__(self, url: str, handle: Any):
        self.url, self._handle = url, handle

    def read(self, size: int = -1) -> bytes:
        return retrying(self.url, lambda: self._handle.read(size))

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)

    def __enter__(self) -> RetryingFile:
        return self

    def __exit__(self, *exc) -> None:
        self._handle.close()


def open_remote(url: str, size: int | None = None) -> RetryingFile:
    """Open a remote object for reading; a size known from the listing saves a request per object."""
    fs, key = filesystem(url)
    extra = {"size": size} if size is not None and hasattr(fs, "call_s3") else {}
    return RetryingFile(url, retrying(url, lambda: fs.open(key, "rb", **extra)))


def abort_unfinished_uploads(url_prefix: str, wanted: Callable[[str], bool] = lambda key: True) -> int:
    """Abort S3 multipart uploads under ``url_prefix`` (those whose key ``wanted`` accepts) that a killed process
    left behind: invisible parts that still cost storage. Returns how many; other stores have none (0)."""
    fs, path = filesystem(url_prefix)
    if not hasattr(fs, "call_s3"):
        return 0
    bucket, _, prefix = path.partition("/")
    listing = retrying(url_prefix, lambda: fs.call_s3("list_multipart_uploads", Bucket=bucket, Prefix=prefix))
    aborted = 0
    for upload in listing.get("Uploads", []):
        key, upload_id = upload["Key"], upload["UploadId"]
        if not wanted(key):
            continue
        retrying(f"s3://{bucket}/{key}", lambda k=key, u=upload_id: fs.call_s3(
            "abort_multipart_upload", Bucket=bucket, Key=k, UploadId=u))
        aborted += 1
    if aborted:
        print(f"curate: aborted {aborted} unfinished upload(s) under {url_prefix} left by an interrupted run",
              file=sys.stderr)
    return aborted


def require_local(path: str, what: str) -> str:
    """Paths that are read back with random access or hold run state must be on a (shared) file system."""
    if is_remote(path):
        raise UsageError(f"{what}: {path}: must be a local or shared-filesystem path, not a URL "
                         "(intermediate files are read back with random access)")
    return path


def work_dir_beside(output: str, suffix: str) -> str:
    """Where a stage keeps intermediate files: ``OUT.suffix`` beside a local OUT; for a remote OUT a local
    folder named after it, ``./curate-work/BUCKET_PREFIX.suffix`` (intermediates need a file system)."""
    if not is_remote(output):
        return f"{output.rstrip('/')}.{suffix}"
    name = output.split("://", 1)[1].strip("/").replace("/", "_")
    return str(Path("curate-work") / f"{name}.{suffix}")
