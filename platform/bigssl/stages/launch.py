"""The driver side of a training run: start the Ray Train worker group, turn a failure
into one line.

Design decisions:
- The workers' loop lives in :mod:`bigssl.stages.trainer`; this module only runs on the
  driver. Before starting, it checks the workers leave Ray Data a CPU (a run that takes
  them all hangs reading).
- Ray Train V2 raises a failed run's error from ``fit()``. The user gets one line: the
  rank whose process died (the other ranks' collectives fail with it and are counted,
  not quoted), and the checkpoint a re-run of the same command resumes from. A config
  error raised inside a worker stays a :class:`ConfigError` (exit 2).
"""

from __future__ import annotations

from collections.abc import Callable

import ray
import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from bigssl import storage
from bigssl.config import ConfigError
from bigssl.stages.trainer import ScalingSettings
from bigssl.stages.training_data import Selection, make_datasets
from bigssl.summary import TrainingFailed
from bigssl.training import checkpoint as ckpt


def check_data_has_cpu(scaling: ScalingSettings) -> None:
    """Training workers that take every CPU leave none for Ray Data's reads: the run would hang."""
    total = ray.cluster_resources().get("CPU", 0.0)
    left = total - scaling.num_workers * scaling.cpus_per_worker
    if left < 1.0:  # Ray Data's file listing asks for one whole CPU
        raise ConfigError(
            "scaling.cpus_per_worker",
            f"{scaling.num_workers} workers x {scaling.cpus_per_worker} CPU leave {left:g} of the cluster's "
            f"{total:g} CPUs for Ray Data, which then cannot read; lower cpus_per_worker or num_workers",
        )


def fit(
    train_fn: Callable[[dict], None],
    config: dict,
    scaling: ScalingSettings,
    features: str,
    out: str,
    run_name: str,
    selection: Selection | None = None,
    dev: Selection | None = None,
) -> ray.train.Result:
    """Run ``train_fn`` on a Ray Train worker group; re-running the same name resumes."""
    check_data_has_cpu(scaling)
    out = storage.absolute(out)  # Ray wants absolute paths
    run_dir = storage.join(out, run_name)
    trainer = TorchTrainer(
        train_fn,
        train_loop_config={**config, "run_dir": run_dir},
        scaling_config=ScalingConfig(
            num_workers=scaling.num_workers,
            use_gpu=scaling.use_gpu,
            resources_per_worker={"CPU": scaling.cpus_per_worker},
        ),
        run_config=RunConfig(
            name=run_name,
            storage_path=out,
            failure_config=FailureConfig(max_failures=scaling.max_failures),
        ),
        datasets=make_datasets(features, run_dir, selection, dev),
    )
    try:
        result = trainer.fit()  # Ray Train V2 raises a failed run's error here
    except ray.train.TrainingFailedError as err:
        raise_training_failure(run_name, err, run_dir)
    if result.error:
        raise_training_failure(run_name, result.error, run_dir)
    return result


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    text = lines[-1] if lines and ":" in lines[-1] else (lines[0] if lines else "")
    return f"{type(error).__name__}: {text[:160]}" if text else type(error).__name__


def raise_training_failure(run_name: str, error: BaseException, run_dir: str) -> None:
    """One line instead of Ray's traceback: what failed on which rank, where a re-run
    resumes. A config error raised inside a worker stays a :class:`ConfigError`."""
    failures = getattr(error, "worker_failures", None) or {}
    for failure in failures.values():
        cause = getattr(failure, "cause", None)
        if isinstance(cause, ConfigError) or isinstance(failure, ConfigError):
            raise cause if isinstance(cause, ConfigError) else failure
    # A rank whose process died is the cause; the others' collectives then fail with it.
    died = {
        rank: f
        for rank, f in failures.items()
        if type(f).__name__ in ("WorkerHealthCheckFailedError", "ActorDiedError")
    }
    causes = "; ".join(
        f"rank {rank}: {_first_line(failure)}"
        for rank, failure in sorted((died or failures).items())
    ) or _first_line(error)
    if died and len(failures) > len(died):
        causes += f"; {len(failures) - len(died)} other rank(s) stopped with it"
    latest = ckpt.latest_checkpoint(run_dir)
    resume = (
        f"re-running the same command resumes from {latest.name}"
        if latest is not None
        else "no checkpoint was committed: re-running starts from step 0"
    )
    raise TrainingFailed(f"training run {run_name!r} failed ({causes}); {resume}") from error
