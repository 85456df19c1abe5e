"""Shared fixtures. One local Ray per test session: its start-up is the slowest thing here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def fault_file(tmp_path_factory) -> Path:
    """The file the training loop's test hook reads (``bigssl.training.fault.TEST_FAULT_FILE``),
    named in the environment before the session's Ray starts: its processes, and every
    ``bigssl`` subprocess a test starts, inherit the name; only the content changes per test.
    One per session (pytest's per-session temp folder): sessions running side by side never
    read each other's."""
    from bigssl.training.fault import TEST_FAULT_FILE

    path = tmp_path_factory.getbasetemp() / "test-fault.json"
    os.environ[TEST_FAULT_FILE] = str(path)
    return path


@pytest.fixture
def kill_worker(fault_file):
    """``kill_worker(run_dir, step, rank=0, at="step")``: the training run in ``run_dir``
    SIGKILLs worker ``rank`` at ``step`` in its first attempt ("report": right after that
    rank's report of the step's checkpoint returns); ``after_committed=N``: not before the
    driver has committed checkpoint N (the restart then restores it, whatever the timing).
    Fault injection lives here, not in the users' configs."""

    def kill(
        run_dir: str | Path,
        step: int,
        rank: int = 0,
        at: str = "step",
        after_committed: int | None = None,
    ) -> None:
        spec = {"run_dir": str(run_dir), "step": step, "rank": rank, "at": at}
        if after_committed is not None:
            spec["after_committed"] = after_committed
        fault_file.write_text(json.dumps(spec))

    yield kill
    fault_file.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def ray_session(fault_file):
    """A local Ray with 2 CPUs owned by this test session; only it is stopped afterwards."""
    import ray

    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    # Ray Train on one local node, set before Ray starts so its processes inherit them:
    # no preemption-watcher actor per run (nothing here is preempted), and the
    # controller polls its workers every 0.5 s instead of 2 s. Measured on
    # tests/ray/test_pretrain.py (same machine, back to back): 147 s with, 169 s without.
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    if not ray.is_initialized():
        # address="local" always starts a fresh Ray: never attach to a cluster
        # someone else started on this machine.
        from bigssl.stages.runtime import loopback_node

        with loopback_node():  # as every local run: servers on loopback only
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is absent (a user's fresh clone does not have it)")
    return SHARED_DATA
