"""Featurize stage: shards -> log-mel feature parquet, one shard per call on a Ray Data actor pool.

Why per shard: the shard is the unit of restart (a done marker per shard) and of
quarantine (a damaged tar spoils only its own remainder), and shards are
independent, so throughput scales with cores. ``override_num_blocks`` makes one
block per shard; without it Ray packed a few shards into one read task and ran
them serially. Why actors, not tasks: with one task per shard the driver
launched the next task ~0.17 s after the last ended (on 2 cores it competes with
the workers for CPU); an actor pool keeps several shards queued per actor, so
workers never wait, and each actor keeps its warm state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import ray

from bigssl import storage
from bigssl.data.bucketing import BucketConfig, bucket_batches, collate_features
from bigssl.data.features import FeaturizeConfig, done_marker, featurize_shard
from bigssl.stages.runtime import init_ray
from bigssl.summary import StageSummary


def list_shards(shards: str) -> list[str]:
    """Shard URIs under ``shards`` (a folder of .tar files, or a prepare output holding shards/)."""
    found = storage.list_files(shards, ".tar")
    if not found and storage.exists(storage.join(shards, "shards")):
        found = storage.list_files(storage.join(shards, "shards"), ".tar")
    if not found:
        raise FileNotFoundError(f"no .tar shards in {shards} (nor in {shards}/shards)")
    return found


class _ShardFeaturizer:
    """One actor per CPU slot; Ray Data keeps several shards in flight per actor."""

    def __init__(self, out: str, cfg: FeaturizeConfig):
        import torch

        torch.set_num_threads(1)  # one core per actor: parallelism comes from actors
        self.out, self.cfg = out, cfg

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        return featurize_shard(row["shard"], self.out, self.cfg)


def _pool_size(cfg: FeaturizeConfig, num_shards: int) -> int | tuple[int, int]:
    if cfg.max_actors:  # an autoscaling cluster grows the pool up to this size
        return (1, min(cfg.max_actors, num_shards))
    slots = int(ray.cluster_resources().get("CPU", 1) // cfg.num_cpus_per_task)
    return max(1, min(slots, num_shards))


def run_featurize(
    shards: str, out: str, cfg: FeaturizeConfig, ray_address: str | None = None
) -> StageSummary:
    """Featurize every shard not yet done into ``out``; returns the whole output's summary."""
    shard_uris = list_shards(shards)
    todo = [s for s in shard_uris if not storage.exists(done_marker(out, s))]
    if todo:
        init_ray(ray_address)
        ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
        ds = ds.map(
            _ShardFeaturizer,
            fn_constructor_kwargs={"out": out, "cfg": cfg},
            num_cpus=cfg.num_cpus_per_task,
            concurrency=_pool_size(cfg, len(todo)),
        )
        for _ in ds.iter_rows():  # drives the pipeline; results are the done markers
            pass
    counts = [storage.read_json(done_marker(out, s)) for s in shard_uris]
    seconds = sum(c["seconds"] for c in counts)
    return StageSummary(
        "featurize",
        read=sum(c["read"] for c in counts),
        used=sum(c["used"] for c in counts),
        quarantined=sum(c["quarantined"] for c in counts),
        hours=seconds / 3600,
        extra={
            "shards": len(shard_uris),
            "shards_this_run": len(todo),
            "frames": sum(c["frames"] for c in counts),
            "num_mel_bins": cfg.fbank.num_mel_bins,
        },
    )


def feature_dataset(features: str) -> ray.data.Dataset:
    """The featurize output as a streaming Ray Dataset of feature rows (nothing materialised)."""
    files = storage.list_files(
        storage.join(features, "features"), ".parquet"
    ) or storage.list_files(features, ".parquet")
    if not files:
        raise FileNotFoundError(f"no feature parquet in {features}")
    return ray.data.read_parquet(files, override_num_blocks=len(files))


def iter_bucketed(
    iterator: Any, cfg: BucketConfig, epoch: int = 0
) -> Iterator[dict[str, np.ndarray]]:
    """Padded (B, T, F) batches under ``cfg.max_frames`` from a Ray Dataset or DataIterator.

    Works on ``ray.train.get_dataset_shard(...)`` in a training worker: Ray streams
    and prefetches rows with backpressure; the bucketing window sorts them by length.
    """
    rows = iterator.iter_rows() if hasattr(iterator, "iter_rows") else iterator
    for batch in bucket_batches(rows, lambda r: int(r["num_frames"]), cfg, epoch=epoch):
        yield collate_features(batch)


def featurize_main(
    shards: str, out: str, config: str | None, overrides: list[str], ray_address: str | None = None
) -> dict:
    """CLI/job entry: load the config, run, write the summary."""
    cfg = FeaturizeConfig.load(config, overrides)
    summary = run_featurize(shards, out, cfg, ray_address)
    return summary.finish(out, strict=cfg.strict)
