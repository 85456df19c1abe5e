"""A test hook of the training loop: SIGKILL a worker at a chosen step."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

from bigssl import storage
from bigssl.training.checkpoint import COMMITTED

# A test hook, not a setting: a test that needs a worker killed at a given step writes
# {"run_dir", "step", "rank", "at"} into the JSON file this variable names. Why a variable
# naming a file, not a config field or the spec in the variable itself: a config field
# ships a kill switch in every user's config; and the Ray tests share one local Ray whose
# processes took their environment when it started (tests/conftest.py sets the variable
# before that), so a test can change a file's content but not the workers' environment.
# A ``bigssl`` subprocess with its own Ray inherits the variable the same way.
TEST_FAULT_FILE = "BIGSSL_TEST_FAULT_FILE"


def fault_hook(run_dir: str, rank: int, resumed: bool) -> Callable[[int, str], None]:
    """``kill(step, at)``: SIGKILLs this worker (no cleanup, no report) where the test hook's
    file says, in this run's first attempt only (a restart restores a checkpoint). ``at`` is
    "step" (after the optimizer step) or "report" (right after this rank's report of the
    step's checkpoint returns, before Ray Train can register it). With ``after_committed``
    N in the file, the kill waits (up to 120 s) until the driver has marked checkpoint N
    committed, so the restart restores it whatever the controller's poll timing."""
    path = os.environ.get(TEST_FAULT_FILE, "")
    spec = storage.read_json(path) if path and os.path.exists(path) else {}
    if resumed or spec.get("run_dir", "").rstrip("/") != run_dir.rstrip("/"):
        return lambda step, at: None

    def kill(step: int, at: str) -> None:
        if (step, at, rank) == (spec["step"], spec.get("at", "step"), spec.get("rank", 0)):
            if spec.get("after_committed"):
                name = f"checkpoint_{spec['after_committed']:09d}"
                marker = storage.join(run_dir, name, COMMITTED)
                deadline = time.monotonic() + 120
                while not storage.exists(marker) and time.monotonic() < deadline:
                    time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGKILL)

    return kill
