"""Ray Train glue shared by pre-training and fine-tuning: the worker loop and checkpoints
(the driver side, `fit`, is :mod:`bigssl.stages.launch`).

Design decisions:
- Data reaches each worker through ``get_dataset_shard`` as duration-bucketed
  batches of the ``train`` and ``resume`` datasets (:mod:`bigssl.stages.training_data`);
  after the resumed epoch, workers go back to ``train``.
- Workers stop an epoch together: each step all-reduces "I still have a batch";
  bucketed batch counts differ across workers and a collective with one worker
  missing would hang.
- Metrics go to the run's own log (Arrow table, TensorBoard) every ``log_every``
  steps, but to ``ray.train.report`` at most once per Ray Train's health-check
  interval (2 s): each worker's result queue holds one report and the controller
  drains it once per poll, so a faster report blocked the step for up to 2 s
  (measured: 2.01 s per report in a 10-report loop; 40 steps with a report each
  took 109 s, with a report every 5th step 45 s). Rank 0 decides, so all workers
  report together (a report is a collective). Checkpoints are always reported. Each row
  also says where this attempt resumed from and how far through its epoch the run is
  (:class:`_Progress`): what a user reads to see what a restart restored and re-read.
- A checkpoint merges the workers' data positions, saves through DCP into a local
  temp folder on every rank (Ray merges the ranks' files) and reports it under a
  step-named folder; the driver marks it ``COMMITTED`` once Ray Train has registered
  it (:mod:`bigssl.stages.launch`), and retention runs there too, so it never lags a
  checkpoint behind (dev scores are written into the folder before the report). A
  restored checkpoint that is not the newest
  committed one (the driver died between the two) means the ``resume`` dataset was cut
  for another position: the worker then reads the whole ``train`` epoch, skipping the
  rows its own position has seen, rather than miss shards.
- With a dev set (fine-tuning: CTC loss and greedy WER/CER; pre-training: the
  objective's held-out loss), every ``eval_every`` steps each rank scores its share
  of it (Ray Train splits the ``dev`` dataset across workers), the counts are
  all-reduced, and a checkpoint is saved with the scores beside it; retention and early
  stopping read those scores (:mod:`bigssl.training.selection`). Ranks run the same
  number of dev batches (FSDP's forward is a collective): a rank with fewer repeats its
  last one uncounted.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint

from bigssl import storage
from bigssl.config import Config, check
from bigssl.data.bucketing import BucketConfig, bucket_batches, collate_features
from bigssl.stages.dev_set import DevSet
from bigssl.training import checkpoint as ckpt
from bigssl.training import selection as select
from bigssl.training.epoch_cache import EpochCache
from bigssl.training.metrics import MetricsLog
from bigssl.training.position import DataPosition
from bigssl.training.step import Stepper
from bigssl.training.validation import Scorer


@dataclass
class ScalingSettings(Config):
    num_workers: int = 2  # Ray Train workers (one per GPU on GPU nodes)
    use_gpu: bool = False
    strategy: Literal["fsdp", "ddp"] = (
        "fsdp"  # FSDP2 fully_shard per layer, or DDP for small models
    )
    cpus_per_worker: float = 1.0
    # torch intra-op threads per worker on CPU; 0 = the whole CPUs requested (at least 1).
    # A worker may use more threads than it reserves: on a 2-core laptop one worker with
    # 2 threads outruns two gloo-synchronised workers (Ray Data's feature reads are light).
    threads_per_worker: int = 0
    max_failures: int = 0  # worker-group restarts before the run fails

    def validate(self) -> None:
        check(self.num_workers >= 1, "num_workers", "must be >= 1")
        check(self.cpus_per_worker > 0, "cpus_per_worker", "must be > 0")
        check(self.threads_per_worker >= 0, "threads_per_worker", "must be >= 0 (0 = auto)")
        check(self.max_failures >= -1, "max_failures", "must be >= -1 (-1 = unlimited)")

    def torch_threads(self) -> int:
        return self.threads_per_worker or max(1, int(self.cpus_per_worker))


@dataclass
class LoopConfig(Config):
    max_steps: int = 100  # optimizer steps
    # Or the run's length in passes over its data (> 0 replaces max_steps; the steps are
    # counted from the selected rows' lengths and the bucketing before the run starts).
    max_epochs: float = 0.0
    log_every: int = 10  # steps between metric reports
    checkpoint_every: int = 50  # steps between checkpoints (and one at the end)
    eval_every: int = 0  # steps between dev-set scorings, each saved as a checkpoint (0 = at
    # every checkpoint); only runs given a dev set score
    keep_last: int = 3  # newest checkpoints kept besides the best scored (0 = keep all)
    seed: int = 0
    cache_epoch_mb: float = 512.0  # an epoch this small is served from worker memory after
    # its first pass (see bigssl.training.epoch_cache); 0 = always stream

    def validate(self) -> None:
        check(self.max_steps >= 1, "max_steps", "must be >= 1")
        check(self.log_every >= 1, "log_every", "must be >= 1")
        check(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        check(self.max_epochs >= 0, "max_epochs", "must be >= 0 (0 = use max_steps)")
        check(self.eval_every >= 0, "eval_every", "must be >= 0 (0 = at every checkpoint)")
        check(self.keep_last >= 0, "keep_last", "must be >= 0 (0 = keep every checkpoint)")


def _ray_report_interval_s() -> float:
    """Ray Train's controller poll interval: the fastest rate reports drain at."""
    return float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))


def _all_have(has_batch: bool, device: torch.device) -> bool:
    if not dist.is_initialized():
        return has_batch
    flag = torch.tensor([1 if has_batch else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _synchronized(batches: Iterator[dict], device: torch.device) -> Iterator[dict]:
    while True:
        batch = next(batches, None)
        if not _all_have(batch is not None, device):
            return
        yield batch


def _epoch_batches(
    position: DataPosition, rows: Iterator[dict], bucket: BucketConfig, progress: _Progress
) -> Iterator[dict]:
    def unseen() -> Iterator[dict]:
        for row in rows:
            if position.seen(row["shard"], row["id"]):
                progress.skipped += 1
            else:
                yield row

    for batch in bucket_batches(
        unseen(), lambda r: int(r["num_frames"]), bucket, epoch=position.epoch
    ):
        collated = collate_features(batch)
        collated["shards"] = [r["shard"] for r in batch]
        yield collated


def _gather_position(position: DataPosition, totals: dict[str, int]) -> DataPosition:
    if not dist.is_initialized():
        return DataPosition.merge([position], totals)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, position.state_dict())
    return DataPosition.merge([DataPosition.from_state_dict(g) for g in gathered], totals)


@dataclass
class Run:
    """What the worker loop needs besides the model; built from the train_loop_config dict."""

    run_dir: str
    loop: LoopConfig
    bucket: BucketConfig
    totals: dict[str, int]
    meta: dict[str, Any]
    prepare_batch: Callable[[dict], dict] | None = None  # e.g. tokenize transcripts -> targets
    files: dict[str, bytes] | None = None  # written into every checkpoint (e.g. the tokenizer)
    augment: Callable[[dict], dict] | None = None  # training batches only (speed perturbation)
    accumulation: int = 1  # batches per optimizer step
    select: select.SelectConfig | None = None  # with a dev set: its metric, k best, patience
    scorer: Scorer | None = None  # with a dev set: what it is scored with (CTC or SSL)

    @property
    def scores_dev(self) -> bool:
        return self.select is not None and self.scorer is not None

    def eval_due(self, step: int) -> bool:
        every = self.loop.eval_every or self.loop.checkpoint_every
        return self.scores_dev and (step % every == 0 or step == self.loop.max_steps)

    def checkpoint_due(self, step: int) -> bool:
        return (
            step % self.loop.checkpoint_every == 0
            or step == self.loop.max_steps
            or self.eval_due(step)
        )


def save(
    run: Run,
    stepper: Stepper,
    step: int,
    position: DataPosition,
    metrics: dict[str, float],
    scores: dict[str, float] | None = None,
) -> DataPosition:
    merged = _gather_position(position, run.totals)
    name = f"checkpoint_{step:09d}"
    with tempfile.TemporaryDirectory() as tmp:
        if ray.train.get_context().get_world_rank() == 0:
            for file_name, data in (run.files or {}).items():
                with open(os.path.join(tmp, file_name), "wb") as f:
                    f.write(data)
            if scores is not None:  # in the folder before it is registered (retention reads it)
                select.write_scores(tmp, step, scores)
        ckpt.save_checkpoint(
            tmp,
            stepper.model,
            stepper.optimizer,
            stepper.scheduler,
            step,
            merged.state_dict(),
            run.meta,
        )
        ray.train.report(
            metrics, checkpoint=Checkpoint.from_directory(tmp), checkpoint_dir_name=name
        )
    return merged


def _stop_early(run: Run, history: list[select.Scored]) -> bool:
    patience = run.select.patience if run.select else 0
    return bool(patience) and select.evaluations_since_best(history, run.select.metric) >= patience


def worker_loop(run: Run, stepper: Stepper) -> None:
    """Steps until ``run.loop.max_steps`` (or early stopping), resuming model, schedule, RNG
    and data position; scores the dev set when the run has one."""
    rank = ray.train.get_context().get_world_rank()
    step, position, source = 0, DataPosition(), "train"
    restored = ray.train.get_checkpoint()
    if restored is not None:
        with restored.as_directory() as directory:
            state = ckpt.load_checkpoint(
                directory, stepper.model, stepper.optimizer, stepper.scheduler
            )
        step, position, source = (
            state["step"],
            DataPosition.from_state_dict(state["position"]),
            "resume",
        )
        if position.consumed >= set(run.totals):  # the epoch was complete: start the next one
            position, source = DataPosition(epoch=position.epoch + 1), "train"
        elif not _resume_matches(run.run_dir, restored.path):
            source = "train"
    log = MetricsLog(run.run_dir, resume_step=step) if rank == 0 else None
    progress = _Progress(step, position.epoch, position.num_trained(run.totals))
    kill = _test_fault(run.run_dir, rank, resumed=restored is not None)
    window = _Window()
    last_report = time.monotonic() - _ray_report_interval_s()  # the first report is free
    cache = EpochCache(run.loop.cache_epoch_mb, seed=run.loop.seed + rank)
    dev = (
        DevSet(
            run.scorer,
            run.bucket.max_frames * 2,
            run.prepare_batch,
            int(run.meta.get("fbank", {}).get("num_mel_bins", 80)),
        )
        if run.scores_dev
        else None
    )
    started = time.perf_counter()  # the dev curve's clock: seconds of training so far
    history = [s for s in select.scored_checkpoints(run.run_dir) if s.step <= step] if dev else []
    stopped = _stop_early(run, history)
    while step < run.loop.max_steps and not stopped:
        stream = ray.train.get_dataset_shard(source).iter_rows()
        # A resumed epoch is partial: never cache it.
        rows = cache.epoch_rows(stream, position.epoch) if source == "train" else iter(stream)
        batches = _synchronized(
            _epoch_batches(position, rows, run.bucket, progress), stepper.device
        )
        for batch in _accumulated(batches, run.accumulation):
            micro = [_prepared(run, b) for b in batch]
            metrics = stepper.step(micro)
            for b in micro:
                position.record(b["shards"], b["ids"].tolist())
                progress.trained += len(b["ids"])
            step += 1
            window.add(metrics)
            kill(step, "step")
            if step % run.loop.log_every == 0 or run.checkpoint_due(step):
                due = rank == 0 and time.monotonic() - last_report >= _ray_report_interval_s()
                report, due = window.report(step, stepper.device, due, progress)
                scores = dev.score(stepper) if dev is not None and run.eval_due(step) else None
                if scores is not None:
                    elapsed = time.perf_counter() - started
                    report = {**report, **scores, "train_s": elapsed}
                if log:
                    log.log(step, report)
                if run.checkpoint_due(step):
                    position = save(run, stepper, step, position, report, scores)
                    kill(step, "report")
                    last_report = time.monotonic()
                    if log:
                        log.flush()
                elif due:
                    ray.train.report(report)
                    last_report = time.monotonic()
                if scores is not None:
                    path = storage.join(run.run_dir, f"checkpoint_{step:09d}")
                    history.append(select.Scored(step, path, scores))
                    stopped = _stop_early(run, history)
            if step >= run.loop.max_steps or stopped:
                break
        else:
            for _ in rows:  # the rows of batches another worker's end cut off: completes the cache
                pass
            position, source = DataPosition(epoch=position.epoch + 1), "train"
            progress.next_epoch()
    if log:
        log.close()


def _accumulated(batches: Iterator[dict], size: int) -> Iterator[list[dict]]:
    """Groups of ``size`` batches, one per optimizer step (an epoch's last may be smaller)."""
    group: list[dict] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


def _prepared(run: Run, batch: dict) -> dict:
    if run.augment is not None:
        batch = run.augment(batch)
    if run.prepare_batch is not None:
        batch = run.prepare_batch(batch)
    return batch


class _Window:
    """Metrics between two reports: means per step, audio seconds summed over workers."""

    def __init__(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, float]) -> None:
        self.steps += 1
        for k, v in metrics.items():
            self.sums[k] = self.sums.get(k, 0.0) + v

    def report(
        self, step: int, device: torch.device, due: bool, progress: _Progress
    ) -> tuple[dict[str, float], bool]:
        """The window's metrics and the data progress, and whether any rank (rank 0) found a
        Ray report due. One all-reduce carries every sum."""
        local = [self.sums.pop("audio_s", 0.0), float(due), progress.trained, progress.skipped]
        totals = torch.tensor(local, dtype=torch.float64, device=device)
        if dist.is_initialized():
            dist.all_reduce(totals)
        audio, any_due, trained, skipped = (float(t) for t in totals.tolist())
        wall = time.perf_counter() - self.start
        out = {k: v / max(self.steps, 1) for k, v in self.sums.items()}
        out.update(
            step=step,
            audio_s=audio,
            audio_hours_per_s=audio / 3600 / wall,
            **progress.metrics(int(trained), int(skipped)),
        )
        self.__init__()
        return out, any_due > 0


def _resume_matches(run_dir: str, restored: str) -> bool:
    """Whether the ``resume`` dataset was cut for the restored checkpoint: the driver
    cuts it from the newest committed one."""
    latest = ckpt.latest_checkpoint(run_dir)
    return (
        latest is not None and latest.rsplit("/", 1)[-1] == restored.rstrip("/").rsplit("/", 1)[-1]
    )


@dataclass
class _Progress:
    """Where this attempt (re)started and where it is in the data: the columns a user reads
    in ``metrics.parquet`` to see what a resumed run restored and read again.

    ``epoch_rows`` counts the rows of the epoch trained so far on all workers, the restored
    checkpoint's included (a resumed epoch that skipped unread shards ends short of the
    epoch's rows). ``skipped_rows`` counts the rows this attempt's workers were given again
    and skipped because the restored checkpoint had trained them: after a resume, the
    trained rows of its partial shards (consumed shards are not read); the whole trained
    part of the epoch when the ``resume`` dataset was cut for another checkpoint (see the
    module doc). Rows another worker's end of epoch cut off count in neither.
    """

    resumed_from_step: int  # the restored checkpoint's step; 0 = started fresh
    epoch: int
    restored_rows: int  # rows of ``epoch`` the restored checkpoint had trained
    trained: int = 0  # rows this worker trained in ``epoch`` since the (re)start
    skipped: int = 0  # rows this worker skipped since the (re)start (see above)

    def next_epoch(self) -> None:
        self.epoch, self.restored_rows, self.trained = self.epoch + 1, 0, 0

    def metrics(self, trained: int, skipped: int) -> dict[str, int]:
        """The columns, given ``trained`` and ``skipped`` summed over the workers."""
        return {
            "epoch": self.epoch,
            "epoch_rows": self.restored_rows + trained,
            "skipped_rows": skipped,
            "resumed_from_step": self.resumed_from_step,
        }


# A test hook, not a setting: a test that needs a worker killed at a given step writes
# {"run_dir", "step", "rank", "at"} into the JSON file this variable names. Why a variable
# naming a file, not a config field or the spec in the variable itself: a config field
# ships a kill switch in every user's config; and the Ray tests share one local Ray whose
# processes took their environment when it started (tests/conftest.py sets the variable
# before that), so a test can change a file's content but not the workers' environment.
# A ``bigssl`` subprocess with its own Ray inherits the variable the same way.
TEST_FAULT_FILE = "BIGSSL_TEST_FAULT_FILE"


def _test_fault(run_dir: str, rank: int, resumed: bool) -> Callable[[int, str], None]:
    """``kill(step, at)``: SIGKILLs this worker (no cleanup, no report) where the test hook's
    file says, in this run's first attempt only (a restart restores a checkpoint). ``at`` is
    "step" (after the optimizer step) or "report" (right after this rank's report of the
    step's checkpoint returns, before Ray Train can register it)."""
    path = os.environ.get(TEST_FAULT_FILE, "")
    spec = storage.read_json(path) if path and os.path.exists(path) else {}
    if resumed or spec.get("run_dir", "").rstrip("/") != run_dir.rstrip("/"):
        return lambda step, at: None

    def kill(step: int, at: str) -> None:
        if (step, at, rank) == (spec["step"], spec.get("at", "step"), spec.get("rank", 0)):
            os.kill(os.getpid(), signal.SIGKILL)

    return kill
