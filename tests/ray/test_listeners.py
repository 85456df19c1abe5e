"""A local run exposes nothing beyond loopback: every socket its Ray processes listen on.

Runs in a subprocess so that ``init_ray`` starts a fresh local Ray the way every stage
does (the session's shared Ray is started by the test harness, not by bigssl). The child
starts Ray, makes it spawn workers (a task, an actor) and the dashboard, then lists the
listening TCP sockets of itself and every process it started (GCS, raylet, dashboard and
its agent, the workers) with psutil: what ``ss -ltnp`` shows, for this process tree only.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.ray

_PROBE = r"""
import json, time
import psutil, ray
from bigssl.stages.runtime import init_ray

init_ray(None, num_cpus=1)

@ray.remote(num_cpus=0.1)
def task():
    return 1

@ray.remote(num_cpus=0.1)
class Actor:
    def ping(self):
        return 1

assert ray.get(task.remote()) == 1
actor = Actor.remote()
assert ray.get(actor.ping.remote()) == 1
time.sleep(3)  # the dashboard agent and the runtime-env agent open their ports late
me = psutil.Process()
tree = [me, *me.children(recursive=True)]
listening = []
for proc in tree:
    try:
        conns = proc.net_connections(kind="inet")
        name = proc.name()
    except psutil.Error:
        continue
    listening += [
        {"pid": proc.pid, "name": name, "ip": c.laddr.ip, "port": c.laddr.port}
        for c in conns if c.status == psutil.CONN_LISTEN
    ]
print("LISTEN " + json.dumps({"processes": len(tree), "sockets": listening}))
ray.shutdown()
"""


def test_a_local_run_listens_on_loopback_only(tmp_path):
    ray_tmp = Path(tempfile.mkdtemp(prefix="bigssl-ls-", dir="/tmp"))  # short socket paths
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = str(ray_tmp)
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("LISTEN "))
    found = json.loads(line.removeprefix("LISTEN "))
    names = {s["name"] for s in found["sockets"]}
    # The probe sees the servers it must judge: GCS, the raylet and a worker at least.
    assert {"gcs_server", "raylet"} <= names, found
    assert len({s["pid"] for s in found["sockets"]}) >= 3, found
    exposed = [s for s in found["sockets"] if not _is_loopback(s["ip"])]
    assert exposed == [], exposed


def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, or IPv4 loopback mapped into IPv6 (gRPC's ``::ffff:127.0.0.1``)."""
    address = ipaddress.ip_address(ip)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def test_the_loopback_judge_tells_wildcards_and_routable_addresses_apart():
    assert all(map(_is_loopback, ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.0.1.1"]))
    assert not any(map(_is_loopback, ["0.0.0.0", "::", "192.0.2.2", "::ffff:10.0.0.1"]))
