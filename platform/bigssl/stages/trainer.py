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
  (:class:`bigssl.training.loop.Progress`): what a user reads to see what a restart restored and re-read.
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
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import ray.train
import torch.distributed as dist
from ray.train import Checkpoint

from bigssl import storage
from bigssl.data.bucketing import BucketConfig, bucket_batches, collate_features
from bigssl.stages.dev_set import DevSet
from bigssl.training import checkpoint as ckpt
from bigssl.training import selection as select
from bigssl.training.epoch_cache import EpochCache
from bigssl.training.fault import fault_hook
from bigssl.training.loop import LoopConfig, Progress, Window, accumulated, synchronized
from bigssl.training.metrics import MetricsLog
from bigssl.training.position import DataPosition
from bigssl.training.step import Stepper
from bigssl.training.validation import Scorer


def _ray_report_interval_s() -> float:
    """Ray Train's controller poll interval: the fastest rate reports drain at."""
    return float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2.0"))


def _epoch_batches(
    position: DataPosition, rows: Iterator[dict], bucket: BucketConfig, progress: Progress
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
    progress = Progress(step, position.epoch, position.num_trained(run.totals))
    kill = fault_hook(run.run_dir, rank, resumed=restored is not None)
    window = Window()
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
        batches = synchronized(_epoch_batches(position, rows, run.bucket, progress), stepper.device)
        for batch in accumulated(batches, run.accumulation):
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


def _prepared(run: Run, batch: dict) -> dict:
    if run.augment is not None:
        batch = run.augment(batch)
    if run.prepare_batch is not None:
        batch = run.prepare_batch(batch)
    return batch


def _resume_matches(run_dir: str, restored: str) -> bool:
    """Whether the ``resume`` dataset was cut for the restored checkpoint: the driver
    cuts it from the newest committed one."""
    latest = ckpt.latest_checkpoint(run_dir)
    return (
        latest is not None and latest.rsplit("/", 1)[-1] == restored.rstrip("/").rsplit("/", 1)[-1]
    )
