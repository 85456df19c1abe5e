"""s3:// end to end against moto's S3 server: storage, retries, and featurize in and out of a bucket.

Credentials reach the code only as environment variables (a distinctive fake pair), and
the tests prove they are written nowhere: not into an object in the bucket, not into a
file under the test's folder (outputs, the CLI's log, the Ray session's logs).

Why featurize runs in a ``bigssl featurize`` subprocess and not on the session's Ray:
Ray worker processes inherit the environment of the process that *started* Ray, and the
session's Ray started before this test set the S3 endpoint and credentials. The CLI
starts its own local Ray from the environment it is given, which is the user's path too
(on a cluster the nodes' environment, or the instance role, plays that part).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pytest

from bigssl import storage
from corpora import sample_fields, write_tar

pytestmark = pytest.mark.ray

BUCKET = "bigssl-test"
ACCESS_KEY = "AKIABIGSSL" + uuid.uuid4().hex[:10].upper()
SECRET_KEY = "bigssl-fake-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def moto_endpoint():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch):
    """Fake credentials and the endpoint, as environment variables only; a fresh bucket."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # never ask an instance role
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    import boto3

    client = boto3.client("s3", endpoint_url=moto_endpoint)
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    prefix = f"t-{uuid.uuid4().hex[:8]}"
    return client, f"s3://{BUCKET}/{prefix}"


def _all_objects(client) -> dict[str, bytes]:
    keys = [
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    return {k: client.get_object(Bucket=BUCKET, Key=k)["Body"].read() for k in keys}


def _assert_no_secrets(blobs: dict[str, bytes]) -> None:
    for name, data in blobs.items():
        for secret in (SECRET_KEY, ACCESS_KEY):
            assert secret.encode() not in data, f"{secret[:6]}... leaked into {name}"


def _local_files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def test_storage_round_trip_in_a_bucket(s3_env):
    _, base = s3_env
    storage.write_json(storage.join(base, "a", "x.json"), {"n": 1})
    storage.write_parquet(pa.table({"id": ["u1", "u2"]}), storage.join(base, "a", "t.parquet"))
    with storage.atomic_output(storage.join(base, "a", "raw.bin")) as f:
        f.write(b"\x00" * 1000)
    assert storage.exists(storage.join(base, "a", "x.json"))
    assert not storage.exists(storage.join(base, "a", "missing.json"))
    assert storage.read_json(storage.join(base, "a", "x.json")) == {"n": 1}
    assert storage.read_parquet(storage.join(base, "a/t.parquet")).column("id").to_pylist() == [
        "u1",
        "u2",
    ]
    assert [u.rsplit("/", 1)[1] for u in storage.list_files(storage.join(base, "a"))] == [
        "raw.bin",
        "t.parquet",
        "x.json",
    ]
    assert storage.list_files(storage.join(base, "nothing-here")) == []
    fs, path = storage.resolve(base + "/a/x.json")
    assert path == base[len("s3://") :] + "/a/x.json"
    assert fs.type_name == "s3"


class _FlakyProxy(BaseHTTPRequestHandler):
    """Answers 503 SlowDown to the first ``failures`` requests, then forwards to ``target``."""

    target = ""
    failures = 0
    seen = 0
    lock = threading.Lock()

    def _handle(self) -> None:
        with self.lock:
            type(self).seen += 1
            fail = type(self).seen <= self.failures
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if fail:
            payload = b"<Error><Code>SlowDown</Code><Message>Reduce your rate</Message></Error>"
            self.send_response(503)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        host, port = self.target.split("://")[1].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request(self.command, self.path, body=body, headers=dict(self.headers))
        response = conn.getresponse()
        data = response.read()
        self.send_response(response.status)
        for key, value in response.getheaders():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "date"):
                self.send_header(key, value)
        # A HEAD answer carries the object's length, not the (empty) body's.
        length = response.getheader("Content-Length") if self.command == "HEAD" else len(data)
        self.send_header("Content-Length", str(length or 0))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


def test_transient_s3_errors_are_retried(s3_env, moto_endpoint, monkeypatch):
    _, base = s3_env
    storage.write_bytes(storage.join(base, "r.txt"), b"payload")
    handler = type("Flaky", (_FlakyProxy,), {"target": moto_endpoint, "failures": 0, "seen": 0})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{proxy.server_address[1]}")
        monkeypatch.setenv("BIGSSL_S3_MAX_ATTEMPTS", "1")  # no retries: the 503 surfaces
        handler.failures, handler.seen = 1, 0
        with pytest.raises(OSError):
            storage.read_bytes(storage.join(base, "r.txt"))
        monkeypatch.setenv("BIGSSL_S3_MAX_ATTEMPTS", "3")  # two 503s in a row, then through
        handler.failures, handler.seen = 2, 0
        assert storage.read_bytes(storage.join(base, "r.txt")) == b"payload"
        assert handler.seen >= 3
    finally:
        proxy.shutdown()


def _upload_corpus(client, local: Path, base: str) -> int:
    """Two good shards and a truncated one, uploaded under ``base``/shards; returns good samples."""
    write_tar(local / "s0.tar", [(f"s0u{i}", sample_fields(f"s0u{i}", 0.6)) for i in range(3)])
    write_tar(local / "s1.tar", [(f"s1u{i}", sample_fields(f"s1u{i}", 0.4)) for i in range(2)])
    data = write_tar(local / "bad.tar", [("b0", sample_fields("b0", 2.0))]).read_bytes()
    (local / "bad.tar").write_bytes(data[: len(data) // 3])
    prefix = base[len(f"s3://{BUCKET}/") :]
    for tar in sorted(local.glob("*.tar")):
        client.upload_file(str(tar), BUCKET, f"{prefix}/shards/{tar.name}")
    return 5


@pytest.mark.slow
def test_featurize_reads_and_writes_a_bucket(s3_env, tmp_path):
    client, base = s3_env
    good = _upload_corpus(client, tmp_path / "local-shards", base)
    out = f"{base}/features"
    # A short Ray temp dir of its own (unix socket paths are limited to 107 bytes), inside
    # the test's folder so its logs are scanned for secrets below.
    ray_tmp = Path(tempfile.mkdtemp(prefix="bigssl-s3-", dir="/tmp"))
    log = tmp_path / "featurize.log"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    try:
        with open(log, "wb") as sink:
            result = subprocess.run(
                [sys.executable, "-m", "bigssl.cli", "featurize", "--shards", base, "--out", out],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=300,
            )
        assert result.returncode == 0, log.read_text()[-4000:]
        summary = storage.read_json(f"{out}/summary.json")
        assert summary["used"] == good and summary["quarantined"] == 1 and summary["shards"] == 3
        table = storage.read_parquet(f"{out}/features/s0.parquet")
        assert sorted(table.column("id").to_pylist()) == ["s0u0", "s0u1", "s0u2"]
        assert set(table.column("num_mel_bins").to_pylist()) == {80}
        rows = storage.read_parquet(f"{out}/quarantine/bad.parquet").to_pylist()
        assert len(rows) == 1 and "truncated" in rows[0]["reason"]
        assert rows[0]["source"] == f"{base}/shards/bad.tar"
        assert storage.read_json(f"{out}/done/s1.json")["used"] == 2
        objects = _all_objects(client)
        assert any(k.endswith("/features/summary.json") for k in objects)
        _assert_no_secrets(objects)
        _assert_no_secrets(_local_files(tmp_path))
        ray_logs = _local_files(ray_tmp)
        assert any("/logs/" in name for name in ray_logs), "no Ray session logs to scan"
        _assert_no_secrets(ray_logs)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_checkpoints_are_found_read_and_loaded_from_a_bucket(s3_env, tmp_path):
    """Checkpoint I/O goes through bigssl.storage: a run folder in a bucket yields its newest
    committed checkpoint, its meta and its weights (``finetune --init``, ``evaluate`` and
    ``label`` take such URIs), and an uncommitted newer folder is not taken."""
    import torch

    from bigssl.models import build_ctc_model
    from bigssl.models.presets import tiny
    from bigssl.training import checkpoint as ckpt
    from bigssl.training.checkpoint import load_encoder_weights, resolve_checkpoint

    _, base = s3_env
    torch.manual_seed(0)
    model = build_ctc_model(tiny(), vocab_size=12)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    local = tmp_path / "ckpt"
    ckpt.save_checkpoint(local, model, optimizer, scheduler, 5, {}, {"stage": "finetune"})
    run = f"{base}/runs/ft"
    for step in (5, 9):  # 9 was uploaded but never registered: no COMMITTED
        folder = f"{run}/checkpoint_{step:09d}"
        for f in local.iterdir():
            storage.write_bytes(f"{folder}/{f.name}", f.read_bytes())
    storage.write_bytes(f"{run}/checkpoint_000000005/{ckpt.COMMITTED}", b"")
    assert ckpt.latest_checkpoint(run) == f"{run}/checkpoint_000000005"
    assert resolve_checkpoint(run) == f"{run}/checkpoint_000000005"
    assert ckpt.read_meta(resolve_checkpoint(run))["step"] == 5
    fresh = build_ctc_model(tiny(), vocab_size=12)
    ckpt.load_model_weights(resolve_checkpoint(run), fresh)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    encoder = build_ctc_model(tiny(), vocab_size=12).encoder  # finetune --init s3://...
    load_encoder_weights(encoder, resolve_checkpoint(run))
    for name, value in model.encoder.state_dict().items():
        assert torch.equal(encoder.state_dict()[name], value), name
    assert ckpt.latest_checkpoint(f"{base}/runs/none") is None


# The whole recipe against the bucket, in one subprocess with its own local Ray (started
# from the environment that holds the endpoint and the fake keys; see the module doc):
# the pipeline (prepare -> split -> featurize -> pretrain -> finetune --init -> evaluate ->
# label -> student, as a sweep: its ssl+nst trial labels with an s3:// teacher and trains the
# student), then `finetune --init s3://...` with a worker killed after a checkpoint (resumed
# from the bucket by Ray Train). Sized for CI: the steps are a handful, not a recipe.
_RECIPE_ON_S3 = r"""
import json, sys
from bigssl import storage
from bigssl.cli import main
from bigssl.stages.demo import CONFIGS

base = sys.argv[1]
out = base + "/demo"
quick = [
    "split.fractions=0.5", "grid.nst_budgets=50pct", "split.test_hours=0.01",
    "pretrain.train.max_steps=6", "finetune.train.max_steps=16", "finetune.train.log_every=8",
    "student=train.max_steps=8,train.checkpoint_every=8",
]
codes = {"pipeline": main(["pipeline", "--tts-hours", "0.08", "--out", out,
                           "--config", str(CONFIGS / "sweep-demo.yaml"), *quick])}
cache = out + "/sweep/cache"
found = {d.rsplit("/", 1)[1].split("-")[0]: d for d in storage.list_dirs(cache)}
split, features = found["split"], found["featurize"]
tokenizer = found["tokenizer"] + "/tokenizer.model"
(pretrained,) = [d for d in storage.list_dirs(cache) if "/pretrain-" in d]
rows = [storage.read_json(t + "/row.json") for t in storage.list_dirs(out + "/sweep/trials")]
teacher = next(r["checkpoint"] for r in rows if r["recipe"] == "scratch")
codes["finetune"] = main([
    "finetune", "--features", features, "--manifest", split + "/labeled_50pct.parquet",
    "--tokenizer", tokenizer, "--init", pretrained + "/pretrain", "--out", base + "/ft",
    "train.max_steps=8", "train.checkpoint_every=4", "train.log_every=4",
    "scaling.max_failures=1", "scaling.num_workers=1",
])
print("RESULT " + json.dumps({"codes": codes, "split": split, "teacher": teacher}))
"""


@pytest.mark.e2e  # 403 s on 2 cores: `make test-e2e`, not in `make test`
def test_the_whole_recipe_runs_on_a_bucket_and_resumes_there(s3_env, tmp_path, kill_worker):
    client, base = s3_env
    # The subprocess's Ray inherits the hook's file. Killed only once checkpoint 4 is
    # committed: its Ray polls every 2 s, and a kill two steps after the report once came
    # before registration, so the restart began from scratch and the hook fired again.
    kill_worker(f"{base}/ft/finetune", step=6, after_committed=4)
    ray_tmp = Path(tempfile.mkdtemp(prefix="bigssl-s3-", dir="/tmp"))
    cwd = tmp_path / "cwd"  # nothing may land here: every output is under s3://
    cwd.mkdir()
    log = tmp_path / "recipe.log"
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    try:
        with open(log, "wb") as sink:
            done = subprocess.run(
                [sys.executable, "-c", _RECIPE_ON_S3, base],
                env=env,
                cwd=cwd,
                stdout=sink,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        text = log.read_text()
        assert done.returncode == 0, text[-4000:]
        result = json.loads(text[text.rindex("RESULT ") + len("RESULT ") :].splitlines()[0])
        assert result["codes"] == {"pipeline": 0, "finetune": 0}, text[-4000:]
        assert result["teacher"].startswith(f"{base}/demo/sweep/trials/")
        table = storage.read_parquet(f"{base}/demo/sweep/results.parquet")
        assert sorted(table.column("recipe").to_pylist()) == ["scratch", "ssl", "ssl+nst"]
        stages = {s for row in table.column("stages").to_pylist() for s in row}
        assert stages == {"pretrain", "finetune", "label", "student", "evaluate"}
        assert all(c.startswith(f"{base}/") for c in table.column("checkpoint").to_pylist())
        (pretrained,) = [
            d for d in storage.list_dirs(f"{base}/demo/sweep/cache") if "pretrain-" in d
        ]
        assert storage.read_json(f"{pretrained}/CACHED.json")["result"]["checkpoint"].startswith(
            f"{pretrained}/pretrain/checkpoint_"
        )  # a URI in the bucket, not the scheme-less path Ray Train reports
        # The killed worker's run resumed from its checkpoint in the bucket, then finished:
        # step 4 logged by the first attempt, step 8 by the one that restored step 4.
        ft = f"{base}/ft/finetune"
        metrics = storage.read_parquet(f"{ft}/metrics.parquet").to_pylist()
        resumed = {r["step"]: r["resumed_from_step"] for r in metrics}
        assert resumed == {4: 0, 8: 4}, metrics
        summary = storage.read_json(f"{ft}/summary.json")
        assert summary["steps"] == 8, summary
        assert storage.exists(f"{base}/demo/pipeline.json")
        assert list(cwd.iterdir()) == []
        _assert_no_secrets(_all_objects(client))
        _assert_no_secrets(_local_files(tmp_path))
        _assert_no_secrets(_local_files(ray_tmp))
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
