"""s3:// inputs and outputs against a real S3-compatible server (moto in server mode) on loopback."""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
from pathlib import Path

import pytest
import zstandard
from test_io import LengthParams, LengthStage, run, shard_checksums

from curate.io import storage
from curate.io.errors import RemoteError

moto_server = pytest.importorskip("moto.server", reason="needs moto[server] (the dev extra installs it)")
s3fs = pytest.importorskip("s3fs", reason="needs s3fs (pip install 'curate[s3]')")

BUCKET = "corpus"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    mp = pytest.MonkeyPatch()
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                       "AWS_DEFAULT_REGION": "us-east-1"}.items():
        mp.setenv(key, value)
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3fs.S3FileSystem(endpoint_url=endpoint).mkdir(BUCKET)
    yield endpoint
    server.stop()
    mp.undo()


def _fs(endpoint: str):
    return s3fs.S3FileSystem(endpoint_url=endpoint, skip_instance_cache=True)


def _options(endpoint: str, **more) -> str:
    return json.dumps({"endpoint_url": endpoint, "skip_instance_cache": True, **more})


@pytest.fixture
def remote_corpus(s3_endpoint, small_corpus, request):
    """The small corpus in the bucket: Parquet files plus one JSON-lines .zst file."""
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
    assert summary["complete"] and summary["docs_in"] == 1500
    local_copy = _download(s3_endpoint, source, tmp_path / "in")
    run([local_copy], tmp_path / "local", max_rows_per_shard=250)
    remote_copy = _download(s3_endpoint, out, tmp_path / "out")
    assert shard_checksums(remote_copy) == shard_checksums(tmp_path / "local")
    manifest = json.loads((remote_copy / "_manifest.json").read_text())
    assert [s["name"] for s in manifest["shards"]] == sorted(shard_checksums(remote_copy))


def test_crash_and_resume_on_s3_leaves_no_orphans(s3_endpoint, remote_corpus, tmp_path):
    source, out = remote_corpus
    options = _options(s3_endpoint)
    crashing = LengthStage(LengthParams())
    crashing.fail_after_batches = 5
    LengthStage.seen = 0
    with pytest.raises(RuntimeError, match="simulated crash"):
        run([source], out, max_rows_per_shard=250, batch_size=100, stage=crashing, storage_options=options)
    keys = [k.rsplit("/", 1)[-1] for k in _fs(s3_endpoint).find(out.removeprefix("s3://"))]
    assert "_manifest.json" not in keys and all(k.startswith(("part-", "unit-", "_plan")) for k in keys)
    summary = run([source], out, max_rows_per_shard=250, batch_size=100, storage_options=options)
    assert summary["units_already_done"] >= 1 and summary["complete"]
    run([_download(s3_endpoint, source, tmp_path / "in")], tmp_path / "reference", max_rows_per_shard=250)
    assert shard_checksums(_download(s3_endpoint, out, tmp_path / "out")) == shard_checksums(tmp_path / "reference")


class _Throttling(http.server.ThreadingHTTPServer):
    """A proxy in front of the S3 server that answers 503 SlowDown to the first ``failures`` requests."""

    def __init__(self, upstream_port: int, failures: int):
        self.upstream_port, self.failures, self.refused = upstream_port, failures, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ThrottlingHandler)


class _ThrottlingHandler(http.server.BaseHTTPRequestHandler):
    server: _Throttling
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
            refuse = self.server.refused < self.server.failures
            self.server.refused += refuse
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
def throttled(s3_endpoint):
    proxy = _Throttling(int(s3_endpoint.rsplit(":", 1)[1]), failures=0)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    yield proxy
    proxy.shutdown()


def test_slowdown_is_retried_then_reported_by_key(s3_endpoint, remote_corpus, throttled, monkeypatch):
    source, out = remote_corpus
    monkeypatch.setattr(storage.SETTINGS, "backoff_seconds", 0.01)
    endpoint = f"http://127.0.0.1:{throttled.server_address[1]}"
    # botocore's own retries off: what is measured is curate's backoff
    options = _options(endpoint, config_kwargs={"retries": {"max_attempts": 1}})
    throttled.failures = 6
    summary = run([source], out, storage_options=options, retries=8)
    assert summary["complete"] and throttled.refused == 6
    throttled.failures, throttled.refused = 10_000, 0
    with pytest.raises(RemoteError, match=r"s3://corpus/.*still failing after 2 retries"):
        run([source], out + "-2", storage_options=options, retries=2)
