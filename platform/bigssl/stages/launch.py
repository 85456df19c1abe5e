"""The driver side of a training run: start the Ray Train worker group, turn a failure
into one line.

Design decisions:
- The workers' loop lives in :mod:`bigssl.stages.trainer`; this module only runs on the
  driver. Before starting, it checks the workers leave Ray Data a CPU (a run that takes
  them all hangs reading).
- A checkpoint is ``COMMITTED`` only once Ray Train has registered it: the marker is
  written by a controller callback that runs after the checkpoint manager's own, so
  what the driver resumes from (the ``resume`` dataset's data position, the checkpoint
  a failure line names) is what Ray Train restores. A rank's ``report`` returning
  proves only that its own files were uploaded: a kill before the controller collects
  the other ranks' reports leaves a folder that Ray Train never restores.
- Re-running a ``run_name`` resumes it, so the config must be the one its checkpoints
  were made with: a difference in what the run learns from or how (model, optimiser,
  data, augmentation, seed) is a ConfigError naming the field. How it runs and for how
  long (scaling, step counts, logging, checkpoint cadence, retention) may change.
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
from bigssl.stages.training_data import Selection, make_datasets
from bigssl.summary import TrainingFailed
from bigssl.training import checkpoint as ckpt
from bigssl.training import selection as select
from bigssl.training.loop import ScalingSettings


class _CommitRegistered(ray.train.UserCallback):
    """Marks each checkpoint ``COMMITTED`` once the controller has registered it, then
    applies retention (the ``keep_last`` newest and the ``keep_best`` best by ``metric``)."""

    def __init__(self, run_dir: str, keep_last: int, metric: str, keep_best: int):
        self.run_dir, self.keep_last, self.metric, self.keep_best = (
            run_dir, keep_last, metric, keep_best
        )  # fmt: skip

    def after_report(self, run_context, metrics, checkpoint) -> None:  # noqa: ARG002
        if checkpoint is None:
            return
        with checkpoint.filesystem.open_output_stream(f"{checkpoint.path}/{ckpt.COMMITTED}") as f:
            f.write(b"")
        select.retain(self.run_dir, self.keep_last, self.metric, self.keep_best)


# Config fields a resumed run may change: how it runs and for how long, not what it learns.
RESUMABLE = (
    "scaling.",
    "select.",
    "train.max_steps",
    "train.max_epochs",
    "train.log_every",
    "train.checkpoint_every",
    "train.eval_every",
    "train.keep_last",
    "train.cache_epoch_mb",
    # Memory, not maths: the same gradients with or without; and absent from the configs
    # of checkpoints saved before the key existed, which must still resume.
    "model.encoder.activation_checkpointing",  # pre-training
    "encoder.activation_checkpointing",  # fine-tuning
    # Gone from LoopConfig (tests kill workers through a fixture now), but checkpoints saved
    # before that carry train.fault_step / fault_rank / fault_at: they must still resume.
    "train.fault_",
)


def _flat(config: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume(run_dir: str, run_name: str, config: dict) -> None:
    """Refuse to resume ``run_name`` with a config that differs from its checkpoints' in
    anything but :data:`RESUMABLE` fields (ConfigError naming the first such field)."""
    latest = ckpt.latest_checkpoint(run_dir)
    saved = ckpt.read_meta(latest).get("config") if latest is not None else None
    if not saved:
        return
    before, now = _flat(saved), _flat(config)
    differ = [
        k
        for k in sorted(before.keys() | now.keys())
        if not k.startswith(RESUMABLE) and before.get(k) != now.get(k)
    ]
    if differ:
        more = f" (and {', '.join(differ[1:])})" if differ[1:] else ""
        raise ConfigError(
            differ[0],
            f"run {run_name!r} was checkpointed with {before.get(differ[0])!r}, this run sets "
            f"{now.get(differ[0])!r}{more}; resuming would mix two configs: use another "
            f"run_name, or move {run_dir} away to start over",
        )


# Ray Train's record of a run's checkpoints (ray.train.v2._internal.constants; private).
SNAPSHOT = "checkpoint_manager_snapshot.json"


def forget_deleted_checkpoints(run_dir: str) -> list[str]:
    """Drops from Ray Train's snapshot of ``run_dir`` the checkpoints retention deleted;
    returns their folder names.

    Why by hand: Ray's own retention (``CheckpointConfig.num_to_keep``) keeps the best by one
    score plus the latest, not the ``keep_last`` newest and the ``keep_best`` best, so
    :func:`bigssl.training.selection.retain` deletes checkpoints itself, and the controller's
    snapshot keeps naming them. A new ``fit()`` of the run (re-running the command after a
    crash) refuses a snapshot naming a missing folder ("corrupted run directory").
    Every list the snapshot keys by checkpoint is filtered the same way; the latest is
    never deleted (retention keeps the newest).
    """
    path = storage.join(run_dir, SNAPSHOT)
    if not storage.exists(path):
        return []
    state = storage.read_json(path)
    results = state.get("checkpoint_results", [])
    gone = [
        r["checkpoint_dir_name"]
        for r in results
        if not storage.exists(storage.join(run_dir, r["checkpoint_dir_name"]))
    ]
    if not gone:
        return []
    indices = state.get("checkpoint_report_indices", [None] * len(results))
    kept = [
        (r, i)
        for r, i in zip(results, indices, strict=True)
        if r["checkpoint_dir_name"] not in gone
    ]
    state["checkpoint_results"] = [r for r, _ in kept]
    if "checkpoint_report_indices" in state:
        state["checkpoint_report_indices"] = [i for _, i in kept]
    for key in (
        "validated_checkpoint_dir_names",
        "timed_out_validation_checkpoint_dir_names",
        "failed_validation_checkpoint_dir_names",
    ):
        if key in state:
            state[key] = [name for name in state[key] if name not in gone]
    storage.write_json(path, state)
    return gone


def _retention(cfg: dict, scored: bool) -> tuple[int, str, int]:
    """(keep_last, metric, keep_best) of a stage config; the best count only with dev scores."""
    chosen = cfg.get("select") or {}
    if not scored or not chosen:
        return cfg["train"]["keep_last"], "", 0
    return cfg["train"]["keep_last"], chosen["metric"], chosen["keep_best"]


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
    check_resume(run_dir, run_name, config["cfg"])
    forget_deleted_checkpoints(run_dir)
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
            callbacks=[_CommitRegistered(run_dir, *_retention(config["cfg"], dev is not None))],
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
        f"re-running the same command resumes from {latest.rsplit('/', 1)[-1]}"
        if latest is not None
        else "no checkpoint was committed: re-running starts from step 0"
    )
    raise TrainingFailed(f"training run {run_name!r} failed ({causes}); {resume}") from error
