"""Executors beyond this machine: Ray runs the same per-unit tasks as the local worker pool.

Each unit is one Ray task (``_process_unit``, as in a local worker), so the shards, progress records and
manifest are byte-identical to a local run; the output must be on storage every Ray node sees (a shared
file system, or an object store: ``-o s3://…``). Every stage command takes ``--executor ray``; Ray starts
once per process and serves every stage and pass of a recipe.
Install with ``pip install 'curate[ray]'``.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence
from typing import Any

from curate.io.errors import UsageError
from curate.io.progress import Progress
from curate.io.storage import configure
from curate.params import digest, fingerprint
from curate.runner import _Job, _process_unit
from curate.stages.base import WorkUnit

_READY: dict[str, _Job] = {}  # per Ray worker process: the job whose stage.setup() (model loading) ran
_STARTED: dict[tuple, RayExecutor] = {}


def _run_unit(job: _Job, unit: WorkUnit):
    """One unit in a Ray worker; the stage is set up once per worker process and job, not once per unit."""
    assert job.out is not None
    key = digest([job.out.location, job.stage.name, fingerprint(job.stage.params)])
    ready = _READY.get(key)
    if ready is None:
        configure(job.io.storage_options, job.io.retries)  # a Ray worker starts with default storage settings
        job.stage.setup()
        _READY.clear()
        ready = _READY[key] = job
    return _process_unit(ready, unit)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'curate[ray]'") from None
    return ray


def ray_executor(address: str | None, num_cpus: int | None) -> RayExecutor:
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

    def run(self, job: _Job, units: Sequence[WorkUnit], progress: Progress) -> None:
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
