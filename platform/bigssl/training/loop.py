"""The training loop's Ray-free parts: its settings (what a config holds), the epoch's
collective stop, optimizer-step grouping and the metric window (what a report carries).
Stage configs import the settings from here, so a config and a sweep plan load without Ray;
the loop that drives them under Ray Train is :mod:`bigssl.stages.trainer`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist

from bigssl.config import Config, check


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


def all_have(has_batch: bool, device: torch.device) -> bool:
    if not dist.is_initialized():
        return has_batch
    flag = torch.tensor([1 if has_batch else 0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def synchronized(batches: Iterator[dict], device: torch.device) -> Iterator[dict]:
    while True:
        batch = next(batches, None)
        if not all_have(batch is not None, device):
            return
        yield batch


def accumulated(batches: Iterator[dict], size: int) -> Iterator[list[dict]]:
    """Groups of ``size`` batches, one per optimizer step (an epoch's last may be smaller)."""
    group: list[dict] = []
    for batch in batches:
        group.append(batch)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


@dataclass
class Progress:
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


class Window:
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
        self, step: int, device: torch.device, due: bool, progress: Progress
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
