"""Where a timed run's cores went: CPU seconds per process group between two snapshots.

A parallel-efficiency figure says how much was lost, not where. Snapshotting every
process's CPU time before and after a run splits ``cores x wall`` into the workers
that did the stage's work, Ray's own processes (raylet, GCS, dashboard, log monitor,
the Data executor's actors), the driver (this process), everything else on the
machine, and idle cores. Two snapshots cost nothing during the run, unlike a sampler (see
``featurize.PeakRss``). Processes that start and end between the snapshots are missed:
Ray's are long-lived, and a run's workers are started before it is timed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

# Ray processes that run for Ray itself, not for the stage: the native daemons, the
# dashboard and its per-module subprocesses, and the Python helpers Ray starts.
_RAY_DAEMONS = (
    "raylet",
    "gcs_server",
    "dashboard",
    "log_monitor",
    "autoscaler",
    "runtime_env",
    "ray_client",
)


def snapshot() -> dict[int, tuple[str, float]]:
    """``{pid: (command line, user + system CPU seconds so far)}`` of every process we can read."""
    out = {}
    for proc in psutil.process_iter(["cmdline", "cpu_times"]):
        try:
            times = proc.info["cpu_times"]
            if times is not None:
                out[proc.pid] = (" ".join(proc.info["cmdline"] or []), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


@dataclass
class Ledger:
    """CPU seconds of one run by group; ``idle`` is what nobody used of ``cores x wall``."""

    workers: float
    ray: float
    driver: float
    other: float
    idle: float
    capacity: float

    def line(self, work_name: str) -> str:
        return (
            f"{work_name} {self.workers:.1f}, Ray's own {self.ray:.1f}, driver {self.driver:.1f}, "
            f"other {self.other:.1f}, idle {self.idle:.1f} of {self.capacity:.1f} core-s"
        )


def ledger(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    wall: float,
    cores: int,
    is_worker: Callable[[str], bool],
) -> Ledger:
    """Split the CPU used between ``before`` and ``after`` into groups.

    ``is_worker(cmdline)`` picks the processes that did the stage's work (Ray names a
    worker's process ``ray::<task or actor>``); other ``ray::`` processes and Ray's
    daemons count as Ray's own; this process is the driver.
    """
    groups = {"workers": 0.0, "ray": 0.0, "driver": 0.0, "other": 0.0}
    for pid, (cmd, cpu) in after.items():
        used = cpu - before.get(pid, (cmd, 0.0))[1]
        if used <= 0:
            continue
        if pid == os.getpid():
            groups["driver"] += used
        elif is_worker(cmd):
            groups["workers"] += used
        elif (
            cmd.startswith("ray::")
            or "ray-dashboard-" in cmd
            or ("/ray/" in cmd and any(name in cmd for name in _RAY_DAEMONS))
        ):
            groups["ray"] += used
        else:
            groups["other"] += used
    capacity = cores * wall
    return Ledger(**groups, idle=max(0.0, capacity - sum(groups.values())), capacity=capacity)
