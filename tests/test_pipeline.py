"""Pipelines at scale: shipped recipes, tool steps, Slurm array scripts run task by task (shuffled, one
failing and retried), `curate status`, SIGKILL at random points then resume, and the Ray executor."""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import write_parquet
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io.errors import UsageError
from curate.io.output import file_checksum
from curate.recipes import load_recipe, run_recipe

REPO = Path(__file__).resolve().parent.parent
RECIPES = sorted((REPO / "recipes").glob("*.yaml"))
SHIPPED = [p for p in RECIPES if "stages" in p.read_text()]


def invoke(*args: str, env: dict | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def checksums(work: Path) -> dict[str, str]:
    """Every shard of every stage (not metadata, whose timestamps differ)."""
    return {str(p.relative_to(work)): file_checksum(p) for p in sorted(work.glob("[0-9][0-9]-*/part-*.parquet"))}


def pipeline_recipe(tmp_path: Path, corpus: Path, name: str = "r.yaml") -> Path:
    recipe = tmp_path / name
    recipe.write_text(
        f"inputs: [{corpus}]\nio: {{max_rows_per_shard: 300, batch_size: 100}}\nstages:\n"
        "  - langid: {min_score: 0.5}\n  - quality: {}\n  - dedup-minhash: {threshold: 0.8}\n"
        "  - dedup-rehydrate: {}\n"
    )
    return recipe


@pytest.mark.parametrize("recipe", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_recipe_loads_and_dry_runs(recipe, tmp_path):
    result = invoke("run", str(recipe), "--work-dir", str(tmp_path / "w"), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.output)
    assert [row["stage"] for row in plan] == [s.name for s in load_recipe(recipe).stages]
    assert all(row["status"] != "done" for row in plan)


def test_shipped_recipes_cover_the_documented_pipelines():
    names = {p.stem for p in SHIPPED}
    assert {"demo", "fineweb-en", "multilingual", "regmix"} <= names
    demo = [s.name for s in load_recipe(REPO / "recipes" / "demo.yaml").stages]
    assert demo == ["langid", "quality", "dedup-minhash", "mix-apply", "pack"]
    regmix = [s.name for s in load_recipe(REPO / "recipes" / "regmix.yaml").stages]
    assert regmix[-5:] == ["mix-propose", "mix-proxy", "mix-fit", "mix-optimize", "mix-apply"]


def test_multilingual_and_regmix_recipes_run_on_the_sample(small_corpus, tmp_path):
    lingual = load_recipe(REPO / "recipes" / "multilingual.yaml", str(tmp_path / "ml"), {"quiet": True},
                          inputs=[str(small_corpus)])
    summaries = run_recipe(lingual)
    thresholds = (tmp_path / "ml" / "thresholds.yaml").read_text()
    assert "en:" in thresholds and summaries[2]["docs_out"] < summaries[2]["docs_in"]
    assert "repeat" in __import__("pyarrow.parquet").parquet.read_schema(
        next((tmp_path / "ml" / "06-dedup-rehydrate").glob("part-*.parquet"))).names
    mix = load_recipe(REPO / "recipes" / "regmix.yaml", str(tmp_path / "rm"), {"quiet": True},
                      inputs=[str(tmp_path / "ml" / "06-dedup-rehydrate")])
    first = run_recipe(mix)
    weights = (tmp_path / "rm" / "weights.yaml").read_text()
    assert "web:" in weights and (tmp_path / "rm" / "06-mix-apply" / "_manifest.json").exists()
    shards = checksums(tmp_path / "rm")
    again = run_recipe(mix)  # tools with the same fingerprint are skipped, the stage finds its output done
    assert all(s.get("skipped") == "done before" for s in again[:-1])
    assert again[-1]["docs_out"] == first[-1]["docs_out"] and checksums(tmp_path / "rm") == shards


def test_tool_step_errors_name_key_and_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("inputs: [x]\nstages:\n  - langid: {}\n  - mix-fit: {mixtures: m.csv, resuls: r.csv}\n")
    with pytest.raises(UsageError, match=r"line 4: mix-fit: unknown key\(s\) resuls"):
        load_recipe(recipe)
    recipe.write_text("inputs: [x]\nstages:\n  - langid-calibrate: {min_docs: 5}\n")
    with pytest.raises(UsageError, match=r"line 3: langid-calibrate: 'output' is required"):
        load_recipe(recipe)


def test_slurm_tasks_in_shuffled_order_with_a_failure_match_a_single_run(small_corpus, tmp_path, monkeypatch):
    from curate.stages.quality.heuristics import QualityStage

    recipe = pipeline_recipe(tmp_path, small_corpus)
    single = tmp_path / "single"
    assert invoke("run", str(recipe), "--work-dir", str(single), "-q").exit_code == 0

    work, slurm = tmp_path / "array", tmp_path / "slurm"
    result = invoke("run", str(recipe), "--work-dir", str(work), "--emit-slurm", str(slurm), "--tasks", "3",
                    "--sbatch-option=--partition=cpu")
    assert result.exit_code == 0, result.output
    submit = (slurm / "submit.sh").read_text()
    scripts = [slurm / name for name in re.findall(r'"\$dir"/([^)\s]+)\)', submit)]  # in submission order
    assert sorted(scripts) == sorted(slurm.glob("*.sbatch"))
    assert [s.stem for s in scripts] == [
        "01-langid", "02-quality", "03-dedup-minhash.signatures", "03-dedup-minhash.cluster",
        "03-dedup-minhash.filter", "04-dedup-rehydrate"]
    assert submit.count("sbatch --parsable $dependency") == len(scripts) and "afterok:$jid" in submit
    assert subprocess.run(["bash", "-n", str(slurm / "submit.sh")]).returncode == 0
    for script in scripts:
        text = script.read_text()
        assert "#SBATCH --array=0-2" in text and "#SBATCH --partition=cpu" in text
        assert '--shard-index "$SLURM_ARRAY_TASK_ID"' in text and "--num-shards 3" in text
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0

    original = QualityStage.process
    failing = {"left": 1}

    def crash_once(self, batch, columns):
        if os.environ.get("SLURM_ARRAY_TASK_ID") == "1" and failing["left"]:
            failing["left"] -= 1
            raise RuntimeError("node lost")
        return original(self, batch, columns)

    monkeypatch.setattr(QualityStage, "process", crash_once)
    rng = random.Random(3)
    for script in scripts:
        command = next(line for line in script.read_text().splitlines() if line.startswith("exec "))
        tasks = [0, 1, 2]
        rng.shuffle(tasks)
        for task in tasks:
            for name, value in (("SLURM_ARRAY_TASK_ID", task), ("SLURM_ARRAY_TASK_COUNT", 3), ("SLURM_ARRAY_JOB_ID", 77)):
                monkeypatch.setenv(name, str(value))
            argv = shlex.split(command.replace("$SLURM_ARRAY_TASK_ID", str(task)))[4:]  # after python -m curate
            result = invoke(*argv)
            if script.stem == "02-quality" and task == 1 and result.exit_code != 0:
                status = invoke("status", str(work), "--json")
                report = json.loads(status.output)
                quality = next(p for p in report["pieces"] if p["key"] == "02-quality")
                assert status.exit_code == 1 and quality["state"] == "failed"
                assert quality["failed"] == [1, 4] and quality["rerun_tasks"] == [1]
                assert "RuntimeError: node lost" in quality["errors"][0]
                assert report["resubmit"][0].startswith("jid=$(sbatch --parsable --array=1 ")
                assert report["resubmit"][0].endswith("02-quality.sbatch)")
                assert "--dependency=afterok:${jid%%;*}" in report["resubmit"][1]
                result = invoke(*argv)  # the retried task
            assert result.exit_code == 0, (script.stem, task, result.output)
    assert failing["left"] == 0
    assert checksums(work) == checksums(single) and len(checksums(single)) >= 12
    status = invoke("status", str(work))
    assert status.exit_code == 0 and "all complete" in status.output


def test_status_lists_missing_units_and_the_local_command(small_corpus, tmp_path):
    recipe = pipeline_recipe(tmp_path, small_corpus)
    work = tmp_path / "w"
    result = invoke("run", str(recipe), "--work-dir", str(work), "--stage", "1", "--shard-index", "0",
                    "--num-shards", "2", "-q")
    assert result.exit_code == 0, result.output
    report = json.loads(invoke("status", str(work), "--json").output)
    langid = report["pieces"][0]
    assert langid["units"] == 6 and langid["complete"] == 3 and langid["missing"] == [1, 3, 5]
    assert report["pieces"][1]["state"] == "waiting"
    assert report["resubmit"] == [shlex.join([sys.executable, "-m", "curate", "run", str(recipe.resolve()),
                                              "--work-dir", str(work.resolve())])]


def wait_for(condition, what: str, timeout: float = 60.0, interval: float = 0.02):
    """Poll ``condition`` until it returns something true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def progress_records(work: Path) -> list[Path]:
    """Finished units of every pass of every stage (each pass's ``_progress/`` folder). The run removes
    folders (``.tmp``) while this walks them: a walk that ignores vanished folders sees the rest."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(work)
                  if Path(folder).name == "_progress" for name in names if name.startswith("unit-"))


def visible_shards(work: Path) -> dict[str, Path]:
    """Every shard a reader can see: ``part-*`` files outside the hidden temporary folders."""
    return {str(p.relative_to(work)): p for p in sorted(work.glob("**/part-*"))
            if not any(part.startswith(".") for part in p.relative_to(work).parts)}


def session_processes(session: int) -> list[int]:
    """Processes of a session (the killed run and every process it started keep its session id)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited while we looked
            continue
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_after_units(command: list[str], work: Path, units: int) -> tuple[int, list[int]]:
    """Start ``command`` in its own session and SIGKILL it once ``units`` progress records exist; return its
    exit status and the processes it started that outlived it by 5 s (killed then: they could still write)."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    wait_for(lambda: len(progress_records(work)) >= units or process.poll() is not None,
             f"{units} progress records")
    process.send_signal(signal.SIGKILL)
    status = process.wait()
    deadline = time.monotonic() + 5
    while session_processes(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    orphans = session_processes(process.pid)
    for pid in orphans:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not session_processes(process.pid), "the killed run's processes to exit", 30)
    return status, orphans


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> tuple[Path, Path, dict[str, str], int]:
    """The 4-stage recipe run once, uninterrupted: its recipe, work dir, shard checksums and unit count."""

    from curate.sample import generate

    root = tmp_path_factory.mktemp("reference")
    table = generate(1_200, seed=7)
    for i, start in enumerate(range(0, table.num_rows, 400)):
        write_parquet(root / "corpus" / f"shard-{i}.parquet", table.slice(start, 400), row_group_size=150)
    recipe = pipeline_recipe(root, root / "corpus")
    work = root / "work"
    subprocess.run([sys.executable, "-m", "curate", "run", str(recipe), "-q", "--work-dir", str(work)],
                   check=True, timeout=300)
    expected = {name: file_checksum(path) for name, path in visible_shards(work).items()}
    return recipe, work, expected, len(progress_records(work))


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from /proc (Linux)")
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_after_n_units_leaves_clean_state_and_rerun_gives_identical_shards(reference_run, tmp_path,
                                                                                   workers):
    """Killed once a given number of units are finished: no unfinished pass has a manifest, every visible
    shard is complete and identical to the uninterrupted run's, no process of the killed run lives on, and
    a rerun completes it with identical shards."""
    recipe, reference, expected, total = reference_run
    assert total >= 20 and len(expected) >= 12
    killed_mid_run, orphaned = 0, []
    seeds = (1, 2) if workers == 1 else (3,)  # a pool costs seconds to start on every stage
    for seed in seeds:
        work = tmp_path / f"killed-{seed}"
        units = random.Random(seed).randint(1, total - 2)
        command = [sys.executable, "-m", "curate", "run", str(recipe), "-q", "--work-dir", str(work),
                   "--workers", str(workers)]
        status, orphans = kill_after_units(command, work, units)
        killed_mid_run += status == -signal.SIGKILL
        orphaned += orphans
        where = f"seed {seed}, killed after {units} of {total} units"
        for plan in work.glob("**/_plan.json"):
            finished = len(list((plan.parent / "_progress").glob("unit-*.json")))
            if finished < len(json.loads(plan.read_text())["units"]):
                assert not (plan.parent / "_manifest.json").exists(), f"{where}: {plan.parent.name}"
        for name, path in visible_shards(work).items():
            pq.read_table(path)  # readable: a complete footer
            assert file_checksum(path) == expected.get(name), f"{where}: {name}"
        subprocess.run(command, check=True, timeout=300)
        assert checksums(work) == checksums(reference), where
        assert {name: file_checksum(path) for name, path in visible_shards(work).items()} == expected, where
    assert killed_mid_run == len(seeds)
    assert not orphaned, f"{len(orphaned)} worker processes outlived the SIGKILLed run"


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for every Ray test of the session (starting one costs seconds and memory);
    RayExecutor joins it. Other test modules import this fixture."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (optional extra: pip install 'curate[ray]')")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


def test_ray_executor_gives_the_local_output(small_corpus, tmp_path, ray_session):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{small_corpus}]\nio: {{max_rows_per_shard: 300}}\nstages:\n"
                      "  - langid: {}\n  - dedup-minhash: {}\n")
    local = invoke("run", str(recipe), "--work-dir", str(tmp_path / "local"), "-q", "--workers", "2")
    assert local.exit_code == 0, local.output
    ray = invoke("run", str(recipe), "--work-dir", str(tmp_path / "ray"), "--json", "--executor", "ray",
                 "--workers", "2")
    assert ray.exit_code == 0, ray.output
    summaries = json.loads(ray.output.strip().splitlines()[-1])
    assert summaries[0]["units_processed"] == 6 and summaries[0]["complete"]
    assert checksums(tmp_path / "ray") == checksums(tmp_path / "local")


def test_emitted_scripts_run_nothing_hidden_in_paths(small_corpus, tmp_path, monkeypatch):
    """Paths with shell syntax (a work dir named ``w$(touch PWNED)``) stay data in submit.sh and every sbatch
    script: running them with a stub sbatch creates no PWNED file anywhere."""
    hostile = "$(touch PWNED)`touch PWNED`"
    root = tmp_path / f"d{hostile}"
    root.mkdir()
    recipe = root / f"r{hostile}.yaml"
    recipe.write_text(f"inputs: [{small_corpus}]\nio: {{max_rows_per_shard: 600}}\nstages:\n  - langid: {{}}\n")
    work, slurm = root / f"w{hostile}", root / f"s{hostile}"
    monkeypatch.chdir(root)
    result = invoke("run", str(recipe), "--work-dir", str(work), "--emit-slurm", str(slurm), "--tasks", "1")
    assert result.exit_code == 0, result.output
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "sbatch").write_text("#!/bin/sh\necho \"$@\" >> \"$(dirname \"$0\")/calls\"\necho '4242;cluster'\n")
    (stubs / "sbatch").chmod(0o755)
    env = {**os.environ, "PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}"}
    submitted = subprocess.run(["bash", str(slurm / "submit.sh")], cwd=root, env=env, capture_output=True,
                               text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    assert shlex.quote(str(work.resolve())) in submitted.stdout and "01-langid: job 4242" in submitted.stdout
    assert str(slurm.resolve() / "01-langid.sbatch") in (stubs / "calls").read_text()
    assert not list(tmp_path.rglob("PWNED"))
    for script in sorted(slurm.glob("*.sbatch")):
        log = next(line for line in script.read_text().splitlines() if line.startswith("#SBATCH --output="))
        assert log.split("=", 1)[1] == f'"{slurm.resolve()}/logs/{script.stem}-%A_%a.log"'  # sbatch strips quotes
        ran = subprocess.run(["bash", str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                             env={**env, "SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "1"})
        assert ran.returncode == 0, (script.name, ran.stderr)
        assert not list(tmp_path.rglob("PWNED")), script.name
    assert (work / "01-langid" / "_manifest.json").exists()
    smuggled = invoke("run", str(recipe), "--work-dir", str(work), "--emit-slurm", str(slurm), "--tasks", "1",
                      "--sbatch-option=--partition=cpu\ntouch PWNED")  # a line break would start a command
    assert smuggled.exit_code == 2 and "without line breaks" in smuggled.output


def test_a_stage_that_keeps_nothing_passes_through_as_empty(small_corpus, tmp_path):
    """langid keeps a language absent from the input: every later step passes the empty data through with a
    warning (no exit 3 on curate's own output), `curate status` says complete, and a rerun is a no-op."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"inputs: [{small_corpus}]\nio: {{max_rows_per_shard: 600}}\nstages:\n"
                      "  - langid: {keep: [is], min_score: 0.99}\n  - quality: {}\n"
                      "  - langid-calibrate: {output: '${work_dir}/thresholds.yaml'}\n"
                      "  - dedup-minhash: {}\n  - dedup-rehydrate: {}\n")
    work = tmp_path / "w"
    command = [sys.executable, "-m", "curate", "run", str(recipe), "--work-dir", str(work), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summaries = json.loads(result.stdout.strip().splitlines()[-1])
    assert [s["docs_out"] for s in summaries if "docs_out" in s] == [0, 0, 0, 0]
    for key in ("02-quality", "03-langid-calibrate", "04-dedup-minhash", "05-dedup-rehydrate"):
        assert f"warning: {key}: its input holds no documents" in result.stderr, key
    for key in ("01-langid", "02-quality", "04-dedup-minhash", "05-dedup-rehydrate"):
        manifest = json.loads((work / key / "_manifest.json").read_text())
        assert manifest["rows"] == 0, key
    assert not (work / "thresholds.yaml").exists()
    status = invoke("status", str(work))
    assert status.exit_code == 0 and "all complete" in status.output, status.output
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert {name.split("/")[0] for name in checksums(work)} == {"01-langid"}  # empty steps write no shard
