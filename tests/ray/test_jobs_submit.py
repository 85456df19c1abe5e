"""``ray job submit`` of a stage's job file to a Ray head of the test's own, with token auth.

The head is a separate cluster from the session's Ray (its own ports, ``--temp-dir`` and
process group), started the way a cluster's head is (``ray start --head --block``), and
stopped by killing exactly its process group; never ``ray stop``, which would kill every
Ray on the machine. Token auth as on a real cluster: ``RAY_AUTH_MODE=token`` and a token
file of the test's own (``RAY_AUTH_TOKEN_PATH``) for the head and for the client alike,
so ``~/.ray/auth_token`` is neither read nor written.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    url: str  # the dashboard / job submission address
    env: dict[str, str]  # what a client needs: RAY_AUTH_MODE and the token's path
    unauthenticated_status: int  # the dashboard's answer to a request without the token


def _processes_of(token_path: str) -> list[psutil.Process]:
    """Every process of our head: each inherits the token path from `ray start`'s environment."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.environ().get("RAY_AUTH_TOKEN_PATH") == token_path:
                found.append(proc)
        except (psutil.Error, OSError):
            continue
    return found


def _wait_for_dashboard(url: str, proc: subprocess.Popen, log: Path) -> int:
    """The HTTP status of an unauthenticated request, once the dashboard answers."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as err:
            return err.code
        except OSError:
            time.sleep(0.3)
    pytest.fail(f"dashboard did not come up:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def head():
    # Short, own temp dir: unix socket paths under it must stay below 107 bytes.
    root = Path(tempfile.mkdtemp(prefix="bigssl-head-", dir="/tmp"))
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
    env.update(
        RAY_AUTH_MODE="token",
        RAY_AUTH_TOKEN_PATH=str(token),
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # the job's `python` is this venv's
    )
    dashboard_port = _free_port()
    command = [
        str(BIN / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(_free_port()),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(_free_port()),
        "--dashboard-agent-listen-port", str(_free_port()),
        "--num-cpus", "2", "--temp-dir", str(root / "ray"),
    ]  # fmt: skip
    log = root / "head.log"
    with open(log, "wb") as sink:
        proc = subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{dashboard_port}"
    try:
        yield Head(url, env, _wait_for_dashboard(url, proc, log))
    finally:
        # Our process group only: `ray start --block` leads it and every Ray process of this
        # head is in it. SIGKILL, not SIGTERM: a head drains for up to 30 s on SIGTERM, and
        # this throwaway one has nothing to drain.
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and _processes_of(str(token)):
            time.sleep(0.2)
        leftovers = _processes_of(str(token))
        for leftover in leftovers:  # by pid, only processes carrying our token path
            leftover.kill()
        shutil.rmtree(root, ignore_errors=True)
        assert not leftovers, f"head processes outlived their group: {leftovers}"


def _ray(head: Head, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args],
        cwd=REPO,
        env=head.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(head: Head, job_id: str, *entrypoint: str) -> subprocess.CompletedProcess:
    return _ray(
        head,
        "job", "submit", "--address", head.url, "--submission-id", job_id,
        "--working-dir", ".", "--runtime-env", "jobs/runtime_env.yaml",
        "--", "python", *entrypoint,
    )  # fmt: skip


def _job_info(head: Head, job_id: str) -> dict:
    """The job's record from the Jobs REST API, authenticated the way every client is."""
    token = Path(head.env["RAY_AUTH_TOKEN_PATH"]).read_text().strip()
    request = urllib.request.Request(
        f"{head.url}/api/jobs/{job_id}", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory) -> tuple[Path, int]:
    from bigssl.stages.prepare import prepare_tts

    out = tmp_path_factory.mktemp("jobs") / "corpus"
    summary = prepare_tts(
        str(out), None, ["tts.hours=0.005", "tts.seed=3", "utterances_per_shard=4"]
    )
    return out, summary["used"]


def test_featurize_job_succeeds_on_a_token_authenticated_head(head, tiny_corpus, tmp_path):
    corpus, prepared = tiny_corpus
    out = tmp_path / "features"
    job = f"bigssl-featurize-{secrets.token_hex(4)}"
    result = _submit(head, job, "jobs/featurize.py", "--shards", str(corpus), "--out", str(out))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert _job_info(head, job)["status"] == "SUCCEEDED"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["used"] == prepared > 0 and summary["quarantined"] == 0
    assert summary["shards"] == len(list((corpus / "shards").glob("*.tar")))
    assert f"summary at {out}/summary.json" in result.stdout  # the job says where its result is


def test_a_failing_job_fails_with_the_stage_exit_code(head, tmp_path):
    job = f"bigssl-missing-{secrets.token_hex(4)}"
    missing = tmp_path / "no-such-corpus"
    result = _submit(head, job, "jobs/featurize.py", "--shards", str(missing), "--out", "x")
    assert result.returncode != 0
    info = _job_info(head, job)
    assert info["status"] == "FAILED" and "exit code 3" in info["message"], info["message"]


def test_the_head_refuses_requests_without_the_token(head):
    assert head.unauthenticated_status == 401
