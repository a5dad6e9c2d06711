"""s3:// inputs and outputs against a real S3-compatible server (moto in server mode) on loopback.

A small HTTP proxy sits in front of it for the tests that need to see or disturb the traffic: it counts
requests and answers 503 SlowDown to the ones chosen by a test.
"""

from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
import zstandard
from test_io import LengthParams, LengthStage, run, shard_checksums
from test_pipeline import ray_session  # noqa: F401  (one Ray instance for the whole test session)
from typer.testing import CliRunner

from curate.cli.main import app
from curate.io import storage
from curate.io.errors import OutputError, RemoteError, UsageError
from curate.io.inputs import resolve_inputs
from curate.io.output import file_checksum

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra installs it)")
s3fs = pytest.importorskip("s3fs", reason="needs s3fs (pip install 'curate[s3]')")

BUCKET = "corpus"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint():
    mp = pytest.MonkeyPatch()
    for key, value in CREDENTIALS.items():
        mp.setenv(key, value)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    # port 0: the system picks a free port as the server binds it (no window for another suite to take it)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    endpoint = "http://{}:{}".format(*server.get_host_and_port())
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)
    if not fs.exists(BUCKET):  # moto keeps one store per process: another module's server may have made it
        fs.mkdir(BUCKET)
    yield endpoint
    server.stop()
    mp.undo()


def _fs(endpoint: str):
    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True, use_listings_cache=False)


def _options(endpoint: str) -> str:
    return json.dumps({"endpoint_url": endpoint, "skip_instance_cache": True})


def _keys(endpoint: str, url: str) -> list[str]:
    prefix = url.removeprefix("s3://")
    return sorted(k[len(prefix) + 1 :] for k in _fs(endpoint).find(prefix))


@pytest.fixture
def remote_corpus(s3_endpoint, small_corpus, request):
    """The small corpus in the bucket: three Parquet files plus one JSON-lines .zst file (1,500 rows)."""
    fs = _fs(s3_endpoint)
    prefix = f"{BUCKET}/{request.node.name}/in"
    for path in sorted(small_corpus.glob("*.parquet")):
        fs.put_file(str(path), f"{prefix}/{path.name}")
    lines = b"".join(json.dumps({"id": f"j{i}", "text": "a line of text " * (i % 9 + 1), "weight": 0.5}).encode()
                     + b"\n" for i in range(300))
    fs.pipe_file(f"{prefix}/extra.jsonl.zst", zstandard.ZstdCompressor().compress(lines))
    return f"s3://{prefix}", f"s3://{BUCKET}/{request.node.name}/out"


def _download(endpoint: str, url: str, to: Path) -> Path:
    _fs(endpoint).get(url.removeprefix("s3://") + "/", str(to), recursive=True)
    return to


def test_read_and_write_s3_like_local_disk(s3_endpoint, remote_corpus, tmp_path):
    source, out = remote_corpus
    summary = run([source], out, max_rows_per_shard=250, storage_options=_options(s3_endpoint))
    assert summary["complete"] and summary["docs_in"] == 1500 and summary["output"] == out
    local_copy = _download(s3_endpoint, source, tmp_path / "in")
    run([local_copy], tmp_path / "local", max_rows_per_shard=250)
    remote_copy = _download(s3_endpoint, out, tmp_path / "out")
    assert shard_checksums(remote_copy) == shard_checksums(tmp_path / "local")  # byte for byte
    manifest = json.loads((remote_copy / "_manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == sorted(shard_checksums(remote_copy))
    assert [i["path"].rsplit("/", 1)[-1] for i in manifest["inputs"]] == [
        "extra.jsonl.zst", "shard-0.parquet", "shard-1.parquet", "shard-2.parquet"]
    # nothing but shards, completion records and metadata: no temporary keys
    assert all(k.startswith(("part-", "_progress/unit-", "_plan", "_manifest", "_stats")) for k in _keys(s3_endpoint, out))


def test_two_array_tasks_share_one_prefix(s3_endpoint, remote_corpus, tmp_path):
    source, out = remote_corpus
    first = run([source], out, max_rows_per_shard=250, storage_options=_options(s3_endpoint), shard_index=1, num_shards=2)
    assert not first["complete"] and "_manifest.json" not in _keys(s3_endpoint, out)
    second = run([source], out, max_rows_per_shard=250, storage_options=_options(s3_endpoint), shard_index=0, num_shards=2)
    assert second["complete"] and (first["units_processed"], second["units_processed"]) == (3, 4)  # 7 units
    run([_download(s3_endpoint, source, tmp_path / "in")], tmp_path / "local", max_rows_per_shard=250)
    assert shard_checksums(_download(s3_endpoint, out, tmp_path / "out")) == shard_checksums(tmp_path / "local")
    # another run into the same prefix is refused; --overwrite replaces it and leaves nothing stale behind
    single = f"{source}/shard-1.parquet"  # one object as INPUT
    with pytest.raises(OutputError, match="holds the output of a different run"):
        run([single], out, storage_options=_options(s3_endpoint))
    replaced = run([single], out, storage_options=_options(s3_endpoint), overwrite=True)
    assert replaced["complete"] and replaced["docs_in"] == 400
    assert [k for k in _keys(s3_endpoint, out) if k.startswith("part-")] == ["part-00000.parquet"]


def test_crash_then_resume_aborts_the_killed_upload(s3_endpoint, remote_corpus, tmp_path, capsys):
    source, out = remote_corpus
    options = _options(s3_endpoint)
    crashing = LengthStage(LengthParams())
    crashing.fail_after_batches = 5
    LengthStage.seen = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([source], out, max_rows_per_shard=250, batch_size=100, stage=crashing, storage_options=options)
    keys = _keys(s3_endpoint, out)
    assert "_manifest.json" not in keys and all(k.startswith(("part-", "_progress/unit-", "_plan")) for k in keys)
    # what a kill -9 during a large shard's upload leaves: a multipart upload never completed (invisible parts)
    fs = _fs(s3_endpoint)
    killed_key = f"{out.removeprefix('s3://' + BUCKET + '/')}/part-00006.parquet"
    upload = fs.call_s3("create_multipart_upload", Bucket=BUCKET, Key=killed_key)
    fs.call_s3("upload_part", Bucket=BUCKET, Key=killed_key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 100)
    capsys.readouterr()

    summary = run([source], out, max_rows_per_shard=250, batch_size=100, storage_options=options)
    assert summary["units_already_done"] >= 1 and summary["complete"]
    assert "aborted 1 unfinished upload(s)" in capsys.readouterr().err
    assert fs.call_s3("list_multipart_uploads", Bucket=BUCKET, Prefix=killed_key).get("Uploads", []) == []
    run([_download(s3_endpoint, source, tmp_path / "in")], tmp_path / "reference", max_rows_per_shard=250)
    assert shard_checksums(_download(s3_endpoint, out, tmp_path / "out")) == shard_checksums(tmp_path / "reference")


def _cli_env(endpoint: str) -> dict:
    return {**os.environ, **CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_output(s3_endpoint, remote_corpus, tmp_path):
    """A real process killed with SIGKILL while it writes to S3; the rerun skips what finished."""
    source, out = remote_corpus
    command = [str(Path(sys.executable).with_name("curate")), "langid", source, "-o", out, "--max-rows-per-shard", "30",
               "--batch-size", "20", "--quiet", "--json"]
    env = _cli_env(s3_endpoint)  # endpoint from the environment, as AWS tools read it
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    prefix = out.removeprefix("s3://") + "/_progress"
    fs, deadline = _fs(s3_endpoint), time.monotonic() + 120
    while process.poll() is None and len(fs.find(prefix)) < 3:  # an observable point: 3 finished units
        assert time.monotonic() < deadline, "no 3 progress records after 120 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run ended before it could be killed"
    assert "_manifest.json" not in _keys(s3_endpoint, out)

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    summary = json.loads(rerun.stdout)
    assert summary["complete"] and summary["units_already_done"] >= 3
    reference = subprocess.run([*command[:2], str(_download(s3_endpoint, source, tmp_path / "in")), "-o",
                                str(tmp_path / "reference"), *command[5:]], env=env, capture_output=True, text=True)
    assert reference.returncode == 0, reference.stderr
    assert shard_checksums(_download(s3_endpoint, out, tmp_path / "out")) == shard_checksums(tmp_path / "reference")


# -- listing ---------------------------------------------------------------------------------------------------
class _Proxy(http.server.ThreadingHTTPServer):
    """In front of the S3 server: records every request, answers 503 SlowDown to the first ``failures``
    requests that ``refuse_when(method, path, headers)`` picks."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.failures, self.refused = 0, 0
        self.refuse_when: Callable[[str, str, dict], bool] = lambda method, path, headers: True
        self.requests: list[tuple[str, str]] = []
        self.refused_at: list[int] = []  # indices in ``requests`` of the refused ones
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _Proxy
    protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue", as S3 clients ask before a PUT body

    def log_message(self, *args) -> None:
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while (size := int(self.rfile.readline().split(b";")[0], 16)) > 0:
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def _handle(self) -> None:
        body = self._body()
        with self.server.lock:
            self.server.requests.append((self.command, self.path))
            refuse = self.server.refused < self.server.failures and self.server.refuse_when(
                self.command, self.path, dict(self.headers))
            self.server.refused += refuse
            if refuse:
                self.server.refused_at.append(len(self.server.requests) - 1)
        if refuse:
            payload = b"<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "transfer-encoding", "expect", "content-length")}
        headers["Host"] = f"127.0.0.1:{self.server.upstream_port}"
        upstream.request(self.command, self.path, body=body, headers=headers)
        response = upstream.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(key, value)
        # a HEAD answer has no body but keeps the object's length (what a size check reads)
        length = response.getheader("Content-Length") if self.command == "HEAD" else None
        self.send_header("Content-Length", length or str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


@pytest.fixture
def proxy(s3_endpoint, monkeypatch):
    monkeypatch.setattr(storage.SETTINGS, "backoff_seconds", 0.01)
    server = _Proxy(int(s3_endpoint.rsplit(":", 1)[1]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_large_prefix_is_listed_once_in_pages_in_a_stable_order(s3_endpoint, proxy, tmp_path):
    fs = _fs(s3_endpoint)
    prefix = f"{BUCKET}/many"
    names = [f"dump-{i % 7}/part-{i:04d}.jsonl" for i in range(1_050)]
    fs.pipe({f"{prefix}/{n}": b'{"text": "x"}\n' for n in names}
            | {f"{prefix}/_SUCCESS.jsonl": b"", f"{prefix}/.tmp/x.jsonl": b"", f"{prefix}/notes.txt": b""})
    storage.configure(_options(proxy.endpoint), 5)
    files = resolve_inputs([f"s3://{prefix}"])
    assert [f.path for f in files] == [f"s3://{prefix}/{n}" for n in sorted(names)]  # hidden and other files skipped
    lists = [p for m, p in proxy.requests if m == "GET" and "list-type=2" in p]
    assert len(lists) == 2 and len(proxy.requests) == 2  # 1,050 keys: two pages, no request per object
    local = tmp_path / "many"
    for n in names[:40]:
        (local / n).parent.mkdir(parents=True, exist_ok=True)
        (local / n).write_text('{"text": "x"}\n')
    # the same relative order as the same files on a local disk: the task assignment (unit i → task i % N) agrees
    remote_order = [f.path.split("/many/")[1] for f in resolve_inputs([f"s3://{prefix}/dump-[0-9]/part-00[0-3]*"])]
    assert remote_order == [str(Path(f.path).relative_to(local)) for f in resolve_inputs([str(local)])]


# -- throttling ------------------------------------------------------------------------------------------------
def test_slowdown_is_retried_with_backoff(s3_endpoint, remote_corpus, proxy):
    source, out = remote_corpus
    options = _options(proxy.endpoint)
    proxy.failures = 6  # the first six requests, whatever they are (listing, footers, uploads)
    retried_before = storage.SETTINGS.retried
    summary = run([source], out, storage_options=options, retries=8)
    assert summary["complete"] and proxy.refused == 6
    # each refused request was sent again (only the refusals are counted: a slow machine may add timeouts,
    # which are retried too, so the retry counter is a lower bound)
    for index in proxy.refused_at:
        assert proxy.requests[index] in proxy.requests[index + 1:], proxy.requests[index]
    assert storage.SETTINGS.retried - retried_before >= 6

    # reads inside a Parquet file (ranged GETs that pyarrow makes lazily) and uploads (PUT) are retried too
    proxy.failures, proxy.refused = 4, 0
    proxy.refuse_when = lambda method, path, headers: (method == "GET" and "Range" in headers) or method == "PUT"
    summary = run([source], out + "-2", storage_options=options, retries=3)
    assert summary["complete"] and proxy.refused == 4


def test_slowdown_after_the_last_retry_names_the_key_and_exits_5(s3_endpoint, remote_corpus, proxy):
    source, out = remote_corpus
    proxy.failures = 10**9
    with pytest.raises(RemoteError, match=rf"{source}: still failing after 2 retries .*reduce your request rate"):
        run([source], out, storage_options=_options(proxy.endpoint), retries=2)
    proxy.refuse_when = lambda method, path, headers: method == "PUT"  # reads pass, every upload is refused
    result = CliRunner().invoke(app, ["quality", source, "-o", out, "--storage-options", _options(proxy.endpoint),
                                      "--retries", "1", "--quiet"], env=CREDENTIALS)
    assert result.exit_code == 5, result.output
    assert f"error: {out}/_plan.json: still failing after 1 retries" in result.output


# -- every stage -----------------------------------------------------------------------------------------------
def test_every_stage_reads_and_writes_s3(s3_endpoint, remote_corpus, shared_data, tmp_path, monkeypatch):
    source, out = remote_corpus
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    common = ["--storage-options", _options(s3_endpoint), "--quiet", "--json"]

    def invoke(*args: str) -> dict:
        result = runner.invoke(app, [*args, *common], env=CREDENTIALS)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    langid = invoke("langid", source, "-o", f"{out}/langid", "--workers", "2")  # spawned workers reach S3 too
    assert langid["complete"] and langid["docs_out"] == 1500
    quality = invoke("quality", f"{out}/langid", "-o", f"{out}/quality", "--rejected", f"{out}/rejected")
    assert quality["complete"] and quality["docs_out"] < 1500
    dedup = invoke("dedup", "minhash", f"{out}/quality", "-o", f"{out}/dedup")
    assert dedup["complete"] and (tmp_path / "curate-work").is_dir()  # intermediates beside, on a file system
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({"web": 0.6, "books": 0.4}))
    mixed = invoke("mix", "apply", f"{source}/shard-*.parquet", "-o", f"{out}/mix", "--domain-column", "source",
                   "--weights", str(tmp_path / "w.yaml"), "--tokens", "20000")
    assert mixed["max_abs_share_error"] < 0.05
    tokenizer = str(shared_data / "tokenizers" / "gpt2.json")
    packed = invoke("pack", f"{out}/dedup", "-o", f"{out}/pack", "--tokenizer", tokenizer, "--format", "megatron")
    assert packed["complete"]
    pack_copy = _download(s3_endpoint, f"{out}/pack", tmp_path / "pack")
    pack_shards = json.loads((pack_copy / "_manifest.json").read_text())["shards"]
    assert {Path(s["name"]).suffix for s in pack_shards} == {".bin", ".idx"}
    assert all(file_checksum(pack_copy / s["name"]) == s["checksum"] for s in pack_shards)
    again = invoke("pack", f"{out}/dedup", "-o", f"{out}/pack", "--tokenizer", tokenizer, "--format", "megatron")
    assert again["already_done"]

    local = tmp_path / "copy"
    for name in ("quality", "rejected", "dedup", "mix"):
        folder = _download(s3_endpoint, f"{out}/{name}", local / name)
        manifest = json.loads((folder / "_manifest.json").read_text())
        assert manifest["rows"] == sum(pq.read_metadata(folder / s["name"]).num_rows for s in manifest["shards"])
    validate = runner.invoke(app, ["validate", f"{out}/dedup", "--storage-options", _options(s3_endpoint)],
                             env=CREDENTIALS)
    assert validate.exit_code == 0, validate.output

    # commands that write one file, and the report over a run "directory" that is a prefix
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}
    for args in (["sample", "-o", f"{out}/sample", "--docs", "50"],
                 ["langid", "calibrate", source, "-o", f"{out}/files/thresholds.yaml"],
                 ["tokenizer", "train", source, "-o", f"{out}/files/tokenizer.json", "--vocab-size", "300"],
                 ["report", out, "-o", f"{out}/files/report.html"]):
        result = runner.invoke(app, args, env=env)
        assert result.exit_code == 0, result.output
    fs = _fs(s3_endpoint)
    assert "part-00000.parquet" in _keys(s3_endpoint, f"{out}/sample")
    assert _keys(s3_endpoint, f"{out}/files") == ["report.html", "thresholds.yaml", "tokenizer.json"]
    report = fs.cat_file(f"{out.removeprefix('s3://')}/files/report.html").decode()
    assert all(f">{stage}<" in report for stage in ("langid", "quality", "dedup minhash", "pack"))


def test_paths_that_must_stay_on_a_file_system_say_so(s3_endpoint, remote_corpus):
    source, out = remote_corpus
    with pytest.raises(UsageError, match="--work-dir: s3://b/w: must be a local or shared-filesystem path"):
        storage.require_local("s3://b/w", "--work-dir")
    result = CliRunner().invoke(app, ["dedup", "minhash", source, "-o", out, "--work-dir", "s3://b/w",
                                      "--storage-options", _options(s3_endpoint)], env=CREDENTIALS)
    assert result.exit_code == 2 and "must be a local or shared-filesystem path" in result.output
    result = CliRunner().invoke(app, ["langid", "s3://no-such-bucket/x", "-o", out,
                                      "--storage-options", _options(s3_endpoint)], env=CREDENTIALS)
    assert result.exit_code == 3 and "s3://no-such-bucket/x" in result.output


@pytest.mark.usefixtures("ray_session")
def test_ray_workers_write_to_s3(s3_endpoint, remote_corpus, tmp_path):
    """Ray tasks run in worker processes that start with default storage settings: they must reach the
    endpoint given on the command line, and give the local output."""
    from curate.io.options import IOOptions
    from curate.runner import run_map_stage
    from curate.stages.langid import LangidParams, LangidStage

    def langid(source: str, out: str, **more) -> dict:
        io = IOOptions(inputs=[source], output=out, quiet=True, max_rows_per_shard=250, **more)
        return run_map_stage(LangidStage(LangidParams()), io)

    source, out = remote_corpus
    # credentials in the options too: the shared Ray instance may have started before this module set them
    options = json.dumps({**json.loads(_options(s3_endpoint)), "key": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          "secret": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]})
    summary = langid(source, out, storage_options=options, executor="ray", workers=2)
    assert summary["complete"] and summary["units_processed"] == 7
    langid(str(_download(s3_endpoint, source, tmp_path / "in")), str(tmp_path / "local"))
    assert shard_checksums(_download(s3_endpoint, out, tmp_path / "out")) == shard_checksums(tmp_path / "local")


def test_any_fsspec_url_works_like_s3(small_corpus, tmp_path):
    """A store without S3's extras (no server-side prefix listing, no multipart uploads): fsspec's memory://."""
    import fsspec

    memory = fsspec.filesystem("memory")
    for path in sorted(small_corpus.glob("*.parquet")):
        memory.put_file(str(path), f"/corpus/in/{path.name}")
    crashing = LengthStage(LengthParams())
    crashing.fail_after_batches = 4
    LengthStage.seen = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(["memory://corpus/in"], "memory://corpus/out", max_rows_per_shard=250, batch_size=100, stage=crashing)
    summary = run(["memory://corpus/in"], "memory://corpus/out", max_rows_per_shard=250, batch_size=100)
    assert summary["complete"] and summary["units_already_done"] >= 1
    memory.get("/corpus/out/", str(tmp_path / "out"), recursive=True)
    run([small_corpus], tmp_path / "local", max_rows_per_shard=250)
    assert shard_checksums(tmp_path / "out") == shard_checksums(tmp_path / "local")


def test_extract_reads_warc_from_s3_like_local_disk(s3_endpoint, shared_data, tmp_path):
    """A WARC file (the crawl's first 120 records) read from s3:// gives the shards it gives on local disk."""
    from test_extract import members

    local = tmp_path / "crawl.warc.gz"
    local.write_bytes(b"".join(members(shared_data / "web" / "pages.warc.gz", 120)))
    _fs(s3_endpoint).put_file(str(local), f"{BUCKET}/warc/crawl.warc.gz")
    runner = CliRunner()
    options = ["--storage-options", _options(s3_endpoint), "--quiet"]
    result = runner.invoke(app, ["extract", f"s3://{BUCKET}/warc/", "-o", f"s3://{BUCKET}/extracted", *options],
                           env=CREDENTIALS)
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["extract", str(local), "-o", str(tmp_path / "local"), "--quiet"])
    assert result.exit_code == 0, result.output
    remote = pq.read_table(_download(s3_endpoint, f"s3://{BUCKET}/extracted", tmp_path / "remote"))
    here = pq.read_table(tmp_path / "local")
    assert remote.num_rows == here.num_rows > 50
    assert remote.drop_columns(["source"]).equals(here.drop_columns(["source"]))
    assert set(remote["source"].to_pylist()) == {f"s3://{BUCKET}/warc/crawl.warc.gz"}
