"""What the benchmark scripts share: run the curate CLI as users do and measure it, compare outputs.

Scripts run as ``python scripts/bench_x.py``, so this module is importable by its name. The checkout the
script belongs to comes first on the path, for the script and for every curate process it starts, so a
worktree benchmarks its own code rather than whichever checkout the virtual environment installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from curate.io.output import file_checksum  # noqa: E402 - after the checkout is on the path

# curate's bookkeeping (timings, commands, progress records): everything else in an output must not depend on
# how the run was split
BOOKKEEPING = ("_manifest.json", "_stats.json", "_plan.json", "_progress", ".tmp", ".locks")
# Runs the command and writes its wall seconds and resource use (its waited workers included) to argv[1]. A
# process's peak RSS counts the memory of the process it was forked from, so the measured command is started
# from this small interpreter, not from a benchmark holding a corpus in memory.
_MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
code = subprocess.call(sys.argv[2:])
seconds = time.perf_counter() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(sys.argv[1], "w") as fh:
    json.dump([seconds, usage.ru_utime, usage.ru_stime, usage.ru_maxrss], fh)
sys.exit(code)
"""


@dataclass
class Measured:
    """One command: wall seconds, CPU seconds of the process and every process it waited for, peak RSS."""

    seconds: float
    user: float
    system: float
    peak_rss_kb: int  # of the largest single process among the command and its workers
    load: tuple[float, float, float]  # the machine's load average just before the command started
    stdout: str
    stderr: str
    returncode: int

    @property
    def cpu(self) -> float:
        return self.user + self.system


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for curate processes: this checkout first on PYTHONPATH."""
    env = dict(os.environ, **(extra or {}))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def curate_command(*args: str) -> list[str]:
    """``python -m curate ARGS`` with this interpreter: a fresh process, as users run it."""
    return [sys.executable, "-m", "curate", *args]


def run_measured(command: list[str], env: dict[str, str] | None = None, check: bool = True) -> Measured:
    """Run ``command`` and measure it: wall seconds, CPU seconds and peak RSS of it and its workers."""
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-run-") as tmp:
        out, err, usage = (Path(tmp) / name for name in ("stdout", "stderr", "usage.json"))
        with out.open("w") as stdout, err.open("w") as stderr:
            returncode = subprocess.call([sys.executable, "-c", _MEASURE, str(usage), *command], stdout=stdout,
                                         stderr=stderr, env=env or child_env())
        seconds, user, system, peak = json.loads(usage.read_text())
        result = Measured(seconds, user, system, peak, load, out.read_text(), err.read_text(), returncode)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return result


def json_summary(stdout: str):
    """The run summary a ``--json`` command prints last."""
    return json.loads(stdout.strip().splitlines()[-1])


def output_checksums(directory: Path) -> dict[str, str]:
    """Checksum of every file an output holds, curate's bookkeeping left out."""
    return {
        str(path.relative_to(directory)): file_checksum(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not any(part in BOOKKEEPING for part in path.relative_to(directory).parts)
    }
