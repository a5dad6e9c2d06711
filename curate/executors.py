"""Who runs a stage's units: this process, a pool of worker processes on this machine, or Ray.

Every executor runs each unit through ``_process_unit``, so the shards, progress records and manifest do not
depend on the executor. Ray runs one task per unit on the cluster at ``--ray-address`` (or a local instance,
started once per process and shared by every stage and pass of a recipe); the output must be on storage
every Ray node sees (a shared file system, or an object store: ``-o s3://…``). Install with
``pip install 'curate[ray]'``.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import ctypes
import multiprocessing
import os
import queue
import secrets
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from curate.io.errors import UsageError
from curate.io.inputs import BadRows
from curate.io.options import IOOptions
from curate.io.output import OutputDir, UnitRecord
from curate.io.progress import Progress
from curate.io.storage import configure
from curate.params import digest
from curate.stages.base import UnitContext, UnitStage, WorkUnit


@dataclass
class Job:
    """Everything a worker needs besides the unit (picklable; sent with each unit, set up once per worker)."""

    stage: UnitStage
    io: IOOptions
    out: OutputDir | None
    rejected: OutputDir | None
    token: str = field(default_factory=lambda: secrets.token_hex(8))  # one per pass run: what workers cache


_READY: dict[str, Job] = {}  # per worker process: the job whose stage.setup() (model loading) ran


def _ready(job: Job) -> Job:
    """The worker's set-up copy of ``job``: storage configured and the stage set up once per worker and job,
    not once per unit (a worker serves the passes and stages of a whole run)."""
    ready = _READY.get(job.token)
    if ready is None:
        configure(job.io.storage_options, job.io.retries)  # a new process starts with default storage settings
        job.stage.setup()
        _READY.clear()
        ready = _READY[job.token] = job
    return ready


def _process_unit(job: Job, unit: WorkUnit, report: Callable[[int, int], None] | None = None) -> UnitRecord:
    assert job.out is not None
    context = UnitContext(job.io, job.out, job.rejected, report, BadRows(skip=job.io.on_error == "skip"))
    started = time.perf_counter()
    file = getattr(unit, "file", None)
    job.stage.source = file.path if file is not None else ""
    shards, stats = job.stage.run_unit(unit, context)
    record = UnitRecord(unit.index, shards, stats, context.bad.records)
    record.stats["seconds"] = round(time.perf_counter() - started, 3)
    record.stats["units"] = 1
    job.out.mark_finished(record)
    return record


# -- worker processes -------------------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_WORKER_JOB: Job | None = None
_WORKER_QUEUE = None


def _die_with_parent(parent: int) -> None:
    """End this worker when the run that started it dies (even by kill -9), instead of finishing its units.

    Linux delivers SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG: strictly, the death of the thread
    that started the worker, which is the one that submits units and outlives the pool); elsewhere a thread
    watches the parent.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # it died before the request took effect
            os._exit(1)
        return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="curate-parent-watch").start()


def _threads_each(processes: int) -> int:
    """Threads for each of ``processes`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // processes)


@contextlib.contextmanager
def sharing_cores(processes: int) -> Iterator[None]:
    """Limit this process's compute threads (numba kernels, Arrow) to its share of the cores while it is one
    of ``processes`` processes working at once: N workers each running a kernel on every core would fight
    over the cores. A lone process keeps every core."""
    before = _set_threads(_threads_each(processes))
    try:
        yield
    finally:
        _set_threads(*before)


def _set_threads(numba_threads: int, arrow_threads: int | None = None) -> tuple[int, int]:
    """Set the threads of numba's parallel kernels (for the calling thread) and of Arrow's compute pool;
    returns what they were."""
    import numba
    import pyarrow as pa

    before = numba.get_num_threads(), pa.cpu_count()
    numba.set_num_threads(min(numba_threads, numba.config.NUMBA_NUM_THREADS))
    pa.set_cpu_count(arrow_threads or numba_threads)
    return before


def _init_worker(progress_queue, parent: int, processes: int) -> None:
    global _WORKER_QUEUE
    _die_with_parent(parent)
    _WORKER_QUEUE = progress_queue
    threads = str(_threads_each(processes))
    for variable in ("POLARS_MAX_THREADS", "RAYON_NUM_THREADS"):  # read when polars and tokenizers load
        os.environ.setdefault(variable, threads)
    _set_threads(int(threads))  # for the worker's life


def _worker_report(docs: int, nbytes: int) -> None:
    if _WORKER_QUEUE is not None:
        _WORKER_QUEUE.put((docs, nbytes))


def _worker_unit(job: Job, unit: WorkUnit) -> UnitRecord:
    return _process_unit(_ready(job), unit, _worker_report)


_POOL: dict[tuple[int, str], tuple[ProcessPoolExecutor, Any]] = {}  # (workers, environment) → (pool, queue)


def _started() -> None:
    """Nothing: submitted once per worker when a pool starts, so that every worker process is started now."""


def _pool(workers: int) -> tuple[ProcessPoolExecutor, Any]:
    """This process's pool of ``workers`` spawned processes, started once and kept for every later pass and
    stage (starting one costs an interpreter, imports and model loads per worker: seconds).

    Every worker is started here, by the calling (main) thread: a worker dies with the thread that started
    it (see ``_die_with_parent``), and the threads that later hand it units end with each pass. A process
    whose environment changed since (credentials, settings) gets new workers that see it.
    """
    key = (workers, digest(sorted(os.environ.items())))
    if key not in _POOL:
        for pool, _ in _POOL.values():
            pool.shutdown(wait=False, cancel_futures=True)
        _POOL.clear()
        context = multiprocessing.get_context("spawn")
        progress_queue = context.Queue()
        pool = ProcessPoolExecutor(workers, context, initializer=_init_worker,
                                   initargs=(progress_queue, os.getpid(), workers + 1))
        for _ in range(workers):  # a submit starts a process while none is idle
            pool.submit(_started)
        _POOL[key] = (pool, progress_queue)
    return _POOL[key]


def _close_pools() -> None:
    for pool, _ in _POOL.values():
        pool.shutdown(wait=True, cancel_futures=True)
    _POOL.clear()


atexit.register(_close_pools)


def _run_parallel(job: Job, units: Sequence[WorkUnit], progress: Progress) -> None:
    """``--workers N``: this process and N - 1 pool workers take units from one list, largest first (the last
    unit to finish is then a small one; the output does not depend on who does which)."""
    todo = deque(sorted(units, key=lambda unit: -(unit.rows or 0)))
    lock = threading.Lock()
    stop = threading.Event()
    failures: list[BaseException] = []

    def claim() -> WorkUnit | None:
        with lock:
            return todo.popleft() if todo and not stop.is_set() else None

    pool, progress_queue = _pool(job.io.workers - 1)
    local = replace(job, stage=copy.deepcopy(job.stage))  # set up here; the pool's copy goes out as it is

    def feed() -> None:
        """Hand one pool worker one unit at a time, so that no unit waits behind a busy worker."""
        while (unit := claim()) is not None:
            try:
                pool.submit(_worker_unit, job, unit).result()
            except BaseException as exc:  # handed to the main thread, raised there
                failures.append(exc)
                stop.set()
                return
            progress.update(units=1)

    feeders = [threading.Thread(target=feed, daemon=True, name="curate-feed") for _ in range(job.io.workers - 1)]
    for thread in feeders:
        thread.start()
    try:
        local.stage.setup()
        with sharing_cores(job.io.workers):
            while (unit := claim()) is not None:
                _process_unit(local, unit, progress.update)
                progress.update(units=1)
        while any(thread.is_alive() for thread in feeders):
            _drain(progress_queue, progress)
            for thread in feeders:
                thread.join(timeout=0.25 / len(feeders))
    except BaseException:  # a failed unit, Ctrl-C: the pool's work stops with the run
        stop.set()
        pool.shutdown(wait=False, cancel_futures=True)
        _POOL.clear()
        raise
    _drain(progress_queue, progress)
    if failures:
        pool.shutdown(wait=False, cancel_futures=True)
        _POOL.clear()
        raise failures[0]


def _drain(progress_queue, progress: Progress) -> None:
    while True:
        try:
            docs, nbytes = progress_queue.get_nowait()
        except queue.Empty:
            return
        progress.update(docs, nbytes)


# -- executors: who runs a stage's units -------------------------------------------------------------------
class Executor(Protocol):
    """Runs ``units`` of ``job`` (each through ``_process_unit``); output never depends on the executor."""

    def run(self, job: Job, units: Sequence[WorkUnit], progress: Progress) -> None: ...


class LocalExecutor:
    """This process (``--workers 1``), or this process and ``--workers`` - 1 spawned ones on this machine."""

    def run(self, job: Job, units: Sequence[WorkUnit], progress: Progress) -> None:
        if job.io.workers > 1 and len(units) > 1:
            _run_parallel(job, units, progress)
        elif units:
            job.stage.setup()
            for unit in units:
                _process_unit(job, unit, progress.update)
                progress.update(units=1)


def executor_for(io: IOOptions) -> Executor:
    """``--executor``: this machine's processes, or Ray (started once per process, shared by every stage)."""
    if io.executor == "ray":
        return _ray_executor(io.ray_address, io.workers if io.ray_address is None else None)
    return LocalExecutor()



# -- Ray ------------------------------------------------------------------------------------------------------
_STARTED: dict[tuple, RayExecutor] = {}


def _run_unit(job: Job, unit: WorkUnit):
    """One unit in a Ray worker; the stage is set up once per worker process and job, not once per unit."""
    return _process_unit(_ready(job), unit)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'curate[ray]'") from None
    return ray


def _ray_executor(address: str | None, num_cpus: int | None) -> RayExecutor:
    """The Ray executor of this process: Ray is started (or joined) on first use and shut down at exit."""
    key = (address, num_cpus)
    if key not in _STARTED:
        _STARTED[key] = RayExecutor(address, num_cpus).start()
    return _STARTED[key]


class RayExecutor:
    """Runs units as Ray tasks (one CPU each) on the cluster at ``address``, or on a local Ray instance."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None):
        self.address, self.num_cpus = address, num_cpus

    def start(self) -> RayExecutor:
        ray = _ray()
        if not ray.is_initialized():
            local = self.address is None
            ray.init(address=self.address, num_cpus=self.num_cpus if local else None, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            atexit.register(ray.shutdown)
        return self

    def run(self, job: Job, units: Sequence[WorkUnit], progress: Progress) -> None:
        ray = _ray()
        task = ray.remote(num_cpus=1, max_retries=0)(_run_unit)
        job_ref = ray.put(job)
        pending = [task.remote(job_ref, unit) for unit in units]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1, timeout=0.25)
                for ref in done:
                    ray.get(ref)
                    progress.update(units=1)
        except ray.exceptions.RayTaskError as exc:
            raise exc.as_instanceof_cause() from None
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)
