"""Output directories: atomic shards, the recorded plan, per-unit completion, manifest, stats and errors.

Layout of ``OUT/``::

    part-00000.parquet …        one shard per work unit (``part-00000_0001.parquet`` … when a unit overflows
                                --max-rows-per-shard); zstd-compressed; row groups independent of --batch-size
    _plan.json                  stage, output-relevant parameters, inputs (path, size) and units: fixed on the
                                first run, checked on every rerun (resume) and by every array task
    _progress/unit-00000.json   written after a unit's shards are renamed into place: the unit is finished
    _manifest.json              written once every unit is finished: version, command, parameters, inputs,
                                shards (rows, bytes, xxh3-128 checksum)
    _stats.json                 documents/characters in and out, removals per reason, stage counters, seconds
    _errors.jsonl               bad files and rows skipped under --on-error skip
    .tmp/                       shards being written, one name per writer (host, pid, random): renamed into
                                place when complete; removed when empty at the end of a run
    .locks/                     flock files: one run at a time per array task, no clearing under a live run
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import secrets
import shutil
import socket
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

import curate
from curate.io.errors import OutputError, UsageError, output_os_error
from curate.io.storage import abort_unfinished_uploads, filesystem, is_remote, join, overlapping, retrying

PLAN = "_plan.json"
MANIFEST = "_manifest.json"
STATS = "_stats.json"
ERRORS = "_errors.jsonl"
PROGRESS_DIR = "_progress"
TMP_DIR = ".tmp"
LOCK_DIR = ".locks"
ROW_GROUP_ROWS = 10_000
ROW_GROUP_BYTES = 128 << 20
COMPRESSION = "zstd"
_READ_THREADS = 16  # progress records read at once from an object store
_HELD: dict[str, list[int]] = {}  # lock file → [descriptor, holders] for this process (see OutputDir.prepare)
_HOST = socket.gethostname().replace(".", "_")  # dots separate the fields of a temporary name


def shard_name(unit_index: int, piece: int = 0) -> str:
    return f"part-{unit_index:05d}.parquet" if piece == 0 else f"part-{unit_index:05d}_{piece:04d}.parquet"


def temp_name(final: str) -> str:
    """A temporary name for ``final`` that no other writer uses: host, process id and a random token.

    Two runs (or a worker of each) writing the same unit never share a file, and a leftover can be told
    apart from the file of a writer that is still alive (see ``_writer_alive``).
    """
    return f"{final}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def _writer_alive(name: str) -> bool:
    """Whether the writer of a temporary file (named by ``temp_name``) may still be writing it.

    On this host, the process id answers. A file from another host (array tasks on a shared file system)
    is its writer's own business: left alone.
    """
    parts = name.rsplit(".", 4)
    if len(parts) != 5 or parts[-1] != "tmp" or not parts[2].isdigit():
        return False  # an older curate's name: nobody writes it any more
    host, pid = parts[1], int(parts[2])
    return host != _HOST or pid_alive(pid)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host is still running (one of another user counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _release(path: str) -> None:
    held = _HELD[path]
    held[1] -= 1
    if held[1] == 0:
        del _HELD[path]
        os.close(held[0])  # closing the last descriptor releases the lock


def _flock(fd: int, operation: int) -> bool:
    """flock; False when another process holds the lock. A file system without locks (some network mounts)
    counts as locked: curate then works as it did before it locked, trusting one run per output."""
    try:
        fcntl.flock(fd, operation)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
    return True


def file_checksum(path: str | Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 << 20):
            digest.update(chunk)
    return "xxh3_128:" + digest.hexdigest()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it is renamed to ``path``, on failure removed.

    Readers never see half a file, whatever kind of file it is (JSON, YAML, CSV, raw token files, models).
    A URL (``s3://…``) is written to a local temporary file and uploaded whole when it is complete.
    """
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="curate-upload-") as staging:
            url = str(path)
            local = Path(staging) / url.rstrip("/").rsplit("/", 1)[-1]
            with atomic_open(local, mode) as handle:
                yield handle
            fs, key = filesystem(url)
            retrying(url, lambda: fs.put_file(str(local), key))
        return
    path = Path(path)
    tmp = path.with_name("." + temp_name(path.name))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, mode) as handle:
            yield handle
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise output_os_error(exc, str(path)) or OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_open(path, "w") as handle:
        handle.write(text)


def json_text(value: Any) -> str:
    """How curate writes its JSON files: indented, sorted keys (stable diffs and checksums)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def write_json_atomic(path: str | Path, value: Any) -> None:
    write_text_atomic(path, json_text(value))


def merge_counters(into: dict, more: dict) -> dict:
    """Sum nested dicts of counts (stage stats from batches, units and tasks)."""
    for key, value in more.items():
        if isinstance(value, dict):
            merge_counters(into.setdefault(key, {}), value)
        else:
            into[key] = into.get(key, 0) + value
    return into


@dataclass
class ShardInfo:
    name: str
    rows: int
    bytes: int
    checksum: str


@dataclass
class UnitRecord:
    """What a finished unit leaves in ``_progress/``: its shards, counters and skipped errors."""

    unit: int
    shards: list[ShardInfo] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict) -> UnitRecord:
        return cls(data["unit"], [ShardInfo(**s) for s in data["shards"]], data["stats"], data["errors"])


class _LocalFiles:
    """Files of a local output directory: written under temporary names and renamed (atomic)."""

    def __init__(self, root: Path):
        self.root = root

    def read_text(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text() if path.exists() else None

    def write_text(self, name: str, text: str) -> None:
        write_text_atomic(self.root / name, text)

    def names(self) -> list[str]:
        """Entries directly under the root."""
        return [p.name for p in self.root.iterdir()] if self.root.is_dir() else []

    def folders(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir()) if self.root.is_dir() else []

    def listing(self, prefix: str) -> dict[str, int]:
        """{name: bytes} of the files whose name (relative to the root) starts with ``prefix``."""
        folder, _, start = prefix.rpartition("/")
        directory = self.root / folder
        if not directory.is_dir():
            return {}
        base = f"{folder}/" if folder else ""
        return {base + p.name: p.stat().st_size for p in directory.iterdir() if p.name.startswith(start) and p.is_file()}

    def remove(self, name: str) -> None:
        path = self.root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def remove_files(self, names: list[str]) -> None:
        for name in names:
            (self.root / name).unlink(missing_ok=True)

    def publish(self, local: Path, name: str) -> int:
        final = self.root / name
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(local, final)
        return final.stat().st_size

    def abort_unfinished(self, prefix: str, wanted: Callable[[str], bool]) -> int:
        return 0  # a killed local write leaves a file in .tmp/, removed with the unit's leftovers


class _RemoteFiles:
    """Files under a remote prefix (fsspec). An object appears only when its upload completes (a single PUT,
    or a multipart upload completed at the end), so objects are written once, whole, at their final key:
    no temporary keys. Multipart uploads cut short by a kill are aborted when their unit is redone."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.root = filesystem(self.url)[1]

    @property
    def fs(self):
        """Looked up per use: a worker process configures its storage options after unpickling its job."""
        return filesystem(self.url)[0]

    def _key(self, name: str) -> str:
        return f"{self.root}/{name}"

    def read_text(self, name: str) -> str | None:
        try:
            return retrying(join(self.url, name), lambda: self.fs.cat_file(self._key(name))).decode()
        except FileNotFoundError:
            return None

    def write_text(self, name: str, text: str) -> None:
        retrying(join(self.url, name), lambda: self.fs.pipe_file(self._key(name), text.encode()))

    def names(self) -> list[str]:
        try:
            listing = retrying(self.url, lambda: self.fs.ls(self.root, detail=False))
        except FileNotFoundError:
            return []
        return [key.rstrip("/").rsplit("/", 1)[-1] for key in listing]

    def folders(self) -> list[str]:
        try:
            listing = retrying(self.url, lambda: self.fs.ls(self.root, detail=True))
        except FileNotFoundError:
            return []
        return sorted(i["name"].rstrip("/").rsplit("/", 1)[-1] for i in listing if i.get("type") == "directory")

    def listing(self, prefix: str) -> dict[str, int]:
        """One paginated listing of the keys under the root that start with ``prefix``."""
        # s3fs lists by key prefix on the server; other stores list the folder and filter here
        extra = {"prefix": prefix} if hasattr(self.fs, "call_s3") else {}
        try:
            found = retrying(join(self.url, prefix), lambda: self.fs.find(self.root, detail=True, **extra))
        except FileNotFoundError:
            return {}
        start = len(self.root) + 1
        return {key[start:]: int(info.get("size") or 0) for key, info in found.items()
                if key[start:].startswith(prefix) and info.get("type") != "directory"}

    def remove(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            retrying(join(self.url, name), lambda: self.fs.rm(self._key(name), recursive=True))

    def remove_files(self, names: list[str]) -> None:
        """Delete objects in batches (S3: up to 1,000 keys a request)."""
        if names:
            with contextlib.suppress(FileNotFoundError):
                retrying(join(self.url, names[0]), lambda: self.fs.rm([self._key(n) for n in names]))

    def publish(self, local: Path, name: str) -> int:
        retrying(join(self.url, name), lambda: self.fs.put_file(str(local), self._key(name)))
        size = local.stat().st_size
        local.unlink()
        return size

    def abort_unfinished(self, prefix: str, wanted: Callable[[str], bool]) -> int:
        start = len(self.root) - len(self.root.split("/", 1)[0])  # keys from the store omit the bucket
        return abort_unfinished_uploads(join(self.url, prefix), lambda key: wanted(key[start:]))


def files_at(location: str | Path) -> _LocalFiles | _RemoteFiles:
    """The files under a local directory or a remote prefix, for readers of curate outputs (report, status)."""
    return _RemoteFiles(str(location)) if is_remote(str(location)) else _LocalFiles(Path(location))


class OutputDir:
    """An output directory owned by one stage run; knows what is finished and refuses foreign reuse.

    ``path`` is a local directory, or a remote URL (``s3://bucket/prefix``): then ``files`` talks to the store
    and shards are staged in a local temporary folder (``path`` is that folder) before their upload.
    """

    def __init__(self, path: str | Path):
        self.location = str(path)
        self.remote = is_remote(self.location)
        if self.remote:
            self.files: _LocalFiles | _RemoteFiles = _RemoteFiles(self.location)
            self.path = Path(tempfile.mkdtemp(prefix="curate-staging-"))
            (self.path / TMP_DIR).mkdir()
            weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)
        else:
            self.path = Path(path)
            self.files = _LocalFiles(self.path)

    _run_lock = -1  # descriptor of this process's shared lock on a local output (see ``prepare``)

    def __reduce__(self):  # workers rebuild it (a remote one gets its own staging folder)
        return (OutputDir, (self.location,))

    def __str__(self) -> str:
        return self.location

    # -- planning and resume ---------------------------------------------------------------------------
    def prepare(self, plan: dict, overwrite: bool, task: tuple[int, int] = (0, 1)) -> None:
        """Record the plan, or check that an existing one is the same run (resume); refuse otherwise.

        On a local directory, concurrent runs are serialised here: each holds a shared lock on the output
        for its whole life and an exclusive one on its array task (``task``: index, count), so a second run
        of the same task is refused, array tasks of one run share the directory, and nothing is cleared or
        replaced while another run writes into it.
        """
        paths = [item.get("path", "-") if isinstance(item, dict) else str(item) for item in plan.get("inputs", [])]
        inside = [path for path in paths if path != "-" and overlapping(path, self.location)]
        if inside:
            raise UsageError(f"{self.location}: holds the input {inside[0]}: a run would read its own output; "
                             "choose an output outside the inputs")
        if self.remote:
            self._prepare(plan, overwrite)
            return
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot create output directory ({exc.strerror})") from None
        if not os.access(self.path, os.W_OK):
            raise OutputError(f"{self.path}: output directory is not writable")
        index, count = task
        with self._lock("prepare"):
            self._hold(f"task-{index:05d}-of-{count:05d}", f"task {index} of {count} of this output")
            self._run_lock = self._hold("run", "this output", shared=True)
            self._prepare(plan, overwrite)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        """An exclusive lock held for the block: one run at a time decides about the plan."""
        folder = self.path / LOCK_DIR
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / f"{name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            _flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _hold(self, name: str, what: str, shared: bool = False) -> int:
        """Take a lock while this OutputDir lives (the kernel drops it if the process dies first).

        A process that holds it already (several stages or passes on one output) shares the one it has.
        """
        path = str((self.path / LOCK_DIR / f"{name}.lock").resolve())
        if path not in _HELD:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            if not _flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB):
                os.close(fd)
                raise OutputError(
                    f"{self.location}: another curate run is writing {what} right now; "
                    "wait for it to finish, or choose another -o"
                ) from None
            _HELD[path] = [fd, 0]
        _HELD[path][1] += 1
        weakref.finalize(self, _release, path)  # dropped with the last OutputDir of this process that took it
        return _HELD[path][0]

    def _only_run(self) -> bool:
        """True when no other run holds this output (checked by briefly upgrading this run's shared lock)."""
        if self.remote:
            return True
        if not _flock(self._run_lock, fcntl.LOCK_EX | fcntl.LOCK_NB):
            return False
        _flock(self._run_lock, fcntl.LOCK_SH)
        return True

    def _started(self) -> bool:
        """Whether the recorded run wrote anything besides its plan: a completion record, a shard, a shard
        folder, a manifest (only such a run's output is worth protecting from a different command)."""
        bookkeeping = {PLAN, PROGRESS_DIR, TMP_DIR, LOCK_DIR}
        written = [name for name in self.files.names() if name not in bookkeeping and not name.startswith(".")]
        return bool(written or self.files.listing(f"{PROGRESS_DIR}/"))

    def _prepare(self, plan: dict, overwrite: bool) -> None:
        existing_text = self.files.read_text(PLAN)
        if existing_text is not None:
            existing = json.loads(existing_text)
            if _comparable(existing) == _comparable(plan):
                self._make_folders()
                return
            if not self._only_run():
                raise OutputError(
                    f"{self.location}: another curate run is writing a different output here "
                    f"({_difference(existing, plan)}); wait for it to finish, or choose another -o"
                )
            if not overwrite and self._started():
                raise OutputError(
                    f"{self.location}: holds the output of a different run ({_difference(existing, plan)}); "
                    "choose another -o or pass --overwrite to replace it"
                )
            self.clear()  # overwrite, or the plan of a run that finished nothing (it failed): replaced
        elif self._foreign_files() and not overwrite:
            raise OutputError(
                f"{self.location}: is not empty and was not written by this curate run; "
                "choose another -o or pass --overwrite"
            )
        elif overwrite:
            if not self._only_run():
                raise OutputError(f"{self.location}: another curate run is writing here; wait for it to finish")
            self.clear()
        self._make_folders()
        self.files.write_text(PLAN, json_text(plan))

    def _make_folders(self) -> None:
        (self.path / TMP_DIR).mkdir(parents=True, exist_ok=True)
        if not self.remote:
            (self.path / PROGRESS_DIR).mkdir(exist_ok=True)

    def _foreign_files(self) -> list[str]:
        """Entries curate did not write (its temporary files start with a dot: a killed write leaves one)."""
        ours = {PROGRESS_DIR, TMP_DIR}
        return [name for name in self.files.names() if name not in ours and not name.startswith(".")]

    def clear(self) -> None:
        """Remove what curate writes in an output directory (and nothing else): shards, ``_*`` metadata files
        (plan, manifest, stats, errors, stage tables), its folders, and folders that hold only shards."""
        for name in self.files.names():
            if name in (PROGRESS_DIR, TMP_DIR) or name.startswith(("part-", "_")):
                self.files.remove(name)
        for folder in self._shard_folders():
            self.files.remove(folder)

    def _shard_folders(self) -> list[str]:
        """Folders a stage groups its shards in (``bucket_00256/part-00003.parquet``): they hold only shards."""
        found = []
        for folder in self._stage_folders():
            names = self.files.listing(f"{folder}/")
            if names and all(name.rsplit("/", 1)[-1].startswith("part-") for name in names):
                found.append(folder)
        return found

    def _stage_folders(self) -> list[str]:
        """Folders besides curate's bookkeeping (``_progress``, ``.tmp``, ``.locks``)."""
        return [f for f in self.files.folders() if f != PROGRESS_DIR and not f.startswith(".")]

    def _shard_listing(self, folders: Iterable[str]) -> dict[str, int]:
        """{name: bytes} of the shards at the top and in ``folders``."""
        listing = self.files.listing("part-")
        for folder in sorted(set(folders) - {""}):
            listing.update(self.files.listing(f"{folder}/part-"))
        return listing

    def _progress_name(self, unit_index: int) -> str:
        return f"{PROGRESS_DIR}/unit-{unit_index:05d}.json"

    def finished_units(self, indices: Iterable[int]) -> dict[int, UnitRecord]:
        """The records of the units (among ``indices``) that finished and whose shards are all still there.

        Two listings (progress records, shards) answer for every unit at once: on an object store that is a
        few paginated requests, not a request per unit and shard.
        """
        wanted = set(indices)
        progress = self.files.listing(f"{PROGRESS_DIR}/")
        names = {index: self._progress_name(index) for index in sorted(wanted) if self._progress_name(index) in progress}
        if not names:
            return {}
        with ThreadPoolExecutor(_READ_THREADS if self.remote else 1, thread_name_prefix="curate-resume") as pool:
            texts = dict(zip(names, pool.map(self.files.read_text, names.values()), strict=True))
        found = {index: UnitRecord.from_json(json.loads(text)) for index, text in texts.items() if text is not None}
        shards = self._shard_listing(s.name.rpartition("/")[0] for r in found.values() for s in r.shards)
        return {index: record for index, record in found.items()
                if all(shards.get(shard.name) == shard.bytes for shard in record.shards)}

    def mark_finished(self, record: UnitRecord) -> None:
        self.files.write_text(self._progress_name(record.unit), json_text(_record_json(record)))

    def discard_units(self, indices: Iterable[int]) -> None:
        """Remove leftovers of interrupted attempts at these units before redoing them: completion records
        first, then shards, staged files and unfinished uploads. A few listings and batch deletes for all the
        units at once, so an object store is not asked per unit."""
        indices = list(indices)
        wanted = {shard_name(i).split(".")[0] for i in indices}
        if not wanted:
            return

        def ours(name: str) -> bool:  # part-00042.parquet, part-00042_0001.parquet → part-00042
            return name.rsplit("/", 1)[-1].split(".")[0].split("_")[0] in wanted

        progress = self.files.listing(f"{PROGRESS_DIR}/")
        self.files.remove_files([self._progress_name(i) for i in sorted(indices) if self._progress_name(i) in progress])
        self.files.remove_files(sorted(name for name in self._shard_listing(self._stage_folders()) if ours(name)))
        for entry in (self.path / TMP_DIR).glob("part-*"):
            if ours(entry.name) and not _writer_alive(entry.name):
                entry.unlink(missing_ok=True)
        self.files.abort_unfinished("", ours)

    def publish(self, local: Path, rows: int, name: str | None = None) -> ShardInfo:
        """Move a complete shard from its temporary place to its final ``name`` (rename, or upload)."""
        name = name or local.name
        checksum = file_checksum(local)
        size = self.files.publish(local, name)
        return ShardInfo(name, rows, size, checksum)

    # -- finishing -------------------------------------------------------------------------------------
    def finalize(self, plan: dict, records: list[UnitRecord], command: list[str], seconds: float,
                 extra: dict | None = None) -> dict:
        """Write manifest, stats and errors once every unit is finished; return the aggregated stats
        (the units' counters summed, then ``extra``: what the stage's own reduction adds)."""
        stats: dict = {}
        errors: list[dict] = []
        for record in records:
            merge_counters(stats, record.stats)
            errors.extend(record.errors)
        stats.update(extra or {})
        stats = {"stage": plan["stage"], **stats, "wall_seconds": round(seconds, 3)}
        manifest = {
            "curate_version": curate.__version__,
            "stage": plan["stage"],
            "command": command,
            "parameters": plan["parameters"],
            "inputs": plan["inputs"],
            "shards": [_shard_json(s) for r in records for s in r.shards],
            "rows": sum(s.rows for r in records for s in r.shards),
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if errors:
            self.files.write_text(ERRORS, "".join(json.dumps(e, sort_keys=True) + "\n" for e in errors))
        self.files.write_text(STATS, json_text(stats))
        self.files.write_text(MANIFEST, json_text(manifest))
        with contextlib.suppress(OSError):  # not empty: a concurrent writer's file, or another run's leftover
            (self.path / TMP_DIR).rmdir()
        return stats

    def all_records(self, unit_count: int) -> list[UnitRecord] | None:
        """Every unit's record in order, or None while some unit is not finished."""
        records = self.finished_units(range(unit_count))
        return [records[i] for i in range(unit_count)] if len(records) == unit_count else None


def _record_json(record: UnitRecord) -> dict:
    return {
        "unit": record.unit,
        "shards": [_shard_json(s) for s in record.shards],
        "stats": record.stats,
        "errors": record.errors,
    }


def _shard_json(shard: ShardInfo) -> dict:
    return {"name": shard.name, "rows": shard.rows, "bytes": shard.bytes, "checksum": shard.checksum}


def _comparable(plan: dict) -> dict:
    return {k: plan.get(k) for k in ("stage", "parameters", "inputs", "units")}


def _difference(old: dict, new: dict) -> str:
    if old.get("stage") != new.get("stage"):
        return f"stage {old.get('stage')} instead of {new.get('stage')}"
    old_params, new_params = _flat(old.get("parameters", {})), _flat(new.get("parameters", {}))
    changed = sorted(k for k in set(old_params) | set(new_params) if old_params.get(k) != new_params.get(k))
    if changed:
        return "different parameters: " + ", ".join(
            f"{k}={old_params.get(k)!r} there, {new_params.get(k)!r} now" for k in changed[:4]
        )
    if old.get("inputs") != new.get("inputs"):
        before = {i["path"]: i for i in old.get("inputs", [])}
        after = {i["path"]: i for i in new.get("inputs", [])}
        changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
        if changed:
            return f"input {changed[0]} changed since (size or modification time){_more(changed)}"
        added, removed = sorted(after.keys() - before.keys()), sorted(before.keys() - after.keys())
        if added:
            return f"input {added[0]} is new{_more(added)}"
        return f"input {removed[0]} is gone{_more(removed)}"
    return "a different plan"


def _flat(parameters: dict) -> dict:
    """{"io": {"on_error": "skip"}} → {"on_error": "skip"}: a difference names the flag, not a whole group."""
    flat: dict = {}
    for key, value in parameters.items():
        if isinstance(value, dict) and key == "io":
            flat.update(_flat(value))
        else:
            flat[key] = value
    return flat


def _more(items: list) -> str:
    return f" (and {len(items) - 1} more)" if len(items) > 1 else ""


class ShardWriter:
    """Writes one unit's rows as zstd Parquet shards under temporary names; ``commit`` renames them into place.

    Row groups hold ROW_GROUP_ROWS rows (or fewer when they pass ROW_GROUP_BYTES), whatever the batches
    look like, so the bytes written depend only on the data: resumed, parallel and serial runs agree.
    """

    def __init__(self, out: OutputDir, unit_index: int, max_rows: int):
        self.out, self.unit_index, self.max_rows = out, unit_index, max_rows
        self.schema: pa.Schema | None = None
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._piece_rows = 0
        self._pieces: list[tuple[Path, int]] = []  # (temporary path, rows); piece i becomes shard_name(unit, i)

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        with self._writing():
            self._write(batch)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A failed write (full disk, quota) names the shard being written, and exits 4."""
        try:
            yield
        except OSError as exc:
            shard = self.out.path / shard_name(self.unit_index, max(len(self._pieces) - 1, 0))
            raise output_os_error(exc, str(shard)) or OutputError(f"{shard}: cannot write ({exc})") from None

    def _write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if self.schema is None:
            self.schema = batch.schema
        elif batch.schema != self.schema:
            batch = batch.cast(self.schema) if batch.schema.names == self.schema.names else batch
            if batch.schema != self.schema:
                raise OutputError(
                    f"shard {shard_name(self.unit_index)}: batch schema changed within one output "
                    f"({batch.schema} vs {self.schema})"
                )
        batches = batch.to_batches() if isinstance(batch, pa.Table) else [batch]
        for part in batches:
            if part.num_rows == 0:
                continue
            self._pending.append(part)
            self._pending_rows += part.num_rows
            self._pending_bytes += part.nbytes
            while self._pending_rows >= self._row_group_target():
                self._flush(self._row_group_target())

    def _row_group_target(self) -> int:
        room = self.max_rows - self._piece_rows
        target = min(ROW_GROUP_ROWS, room)
        if self._pending_bytes > ROW_GROUP_BYTES and self._pending_rows:
            per_row = self._pending_bytes / self._pending_rows
            target = max(1, min(target, int(ROW_GROUP_BYTES / per_row)))
        return target

    def _flush(self, rows: int) -> None:
        table = pa.Table.from_batches(self._pending, schema=self.schema)
        # one chunk per row group: Parquet pages are cut per chunk, so batch boundaries would show in the bytes
        head, rest = table.slice(0, rows).combine_chunks(), table.slice(rows)
        if self._writer is None:
            self._open_piece()
        assert self._writer is not None
        self._writer.write_table(head, row_group_size=rows)
        self._piece_rows += head.num_rows
        self._pending = rest.combine_chunks().to_batches() if rest.num_rows else []
        self._pending_rows = rest.num_rows
        self._pending_bytes = rest.nbytes if rest.num_rows else 0
        if self._piece_rows >= self.max_rows:
            self._close_piece()

    def _open_piece(self) -> None:
        tmp = self.out.path / TMP_DIR / temp_name(shard_name(self.unit_index, len(self._pieces)))
        try:
            tmp.parent.mkdir(exist_ok=True)  # removed by whoever finished the output last
            self._writer = pq.ParquetWriter(tmp, self.schema, compression=COMPRESSION)
        except OSError as exc:
            raise OutputError(f"{tmp}: cannot write ({exc})") from None
        self._pieces.append((tmp, 0))
        self._piece_rows = 0

    def _close_piece(self) -> None:
        assert self._writer is not None
        self._writer.close()
        self._writer = None
        path, _ = self._pieces[-1]
        self._pieces[-1] = (path, self._piece_rows)
        self._piece_rows = 0

    def commit(self) -> list[ShardInfo]:
        """Flush, close and rename every piece into place; returns the shards with their checksums."""
        with self._writing():
            return self._commit()

    def _commit(self) -> list[ShardInfo]:
        if self._pending_rows:
            self._flush(self._pending_rows)
        if self._writer is not None:
            self._close_piece()
        if not self._pieces and self.schema is not None:
            self._open_piece()  # a unit whose rows were all removed still gets its (empty) shard
            self._close_piece()
        return [
            self.out.publish(tmp, rows, shard_name(self.unit_index, piece))
            for piece, (tmp, rows) in enumerate(self._pieces)
        ]

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for tmp, _ in self._pieces:
            tmp.unlink(missing_ok=True)


class JsonlStdoutWriter:
    """``-o -``: JSON lines on stdout for shell pipelines (no shards, no manifest, no resume)."""

    def __init__(self) -> None:
        import polars as pl

        self._pl = pl
        self._out = sys.stdout.buffer

    def write(self, batch: pa.RecordBatch | pa.Table) -> None:
        if batch.num_rows:
            frame = self._pl.from_arrow(batch)
            try:
                frame.write_ndjson(self._out)  # type: ignore[union-attr]
                self._out.flush()
            except OSError as exc:  # polars reports a closed pipe as a bare OSError: make it the usual kind
                if isinstance(exc, BrokenPipeError) or "os error 32" not in str(exc):
                    raise
                raise BrokenPipeError(errno.EPIPE, "stdout closed by its reader") from None


def input_descriptions(files: Iterable[Any]) -> list[dict]:
    """How a plan records its inputs: real path, size and modification time (a rewrite of the same size shows)."""
    return [{"path": f.path, "size": f.size, "mtime_ns": getattr(f, "mtime_ns", None)} for f in files]
