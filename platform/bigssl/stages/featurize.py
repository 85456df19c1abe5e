"""Featurize stage: shards -> log-mel feature parquet, one shard per Ray Data task.

Why per shard: the shard is the unit of restart (a done marker per shard) and of
quarantine (a damaged tar spoils only its own remainder), and shards are
independent, so throughput scales with cores. ``override_num_blocks`` makes one
block per shard; without it Ray packed a few shards into one read task and ran
them serially. Why tasks, not an actor pool: task workers stay warm
across runs (an actor pool pays ~2.8 s of torch import per run on 2 cores), and
with Ray Data's per-operator reservation off (``runtime.no_op_reservation``) launches
are not throttled. What remains is the executor's polling: it checks its tasks every
0.1 s. Tasks yield their row first (``_featurize_batch``), so a core idles ~0.05 s
between shards rather than ~0.17 s, plus ~1 s before the second task starts (Ray
Data learns the cluster's CPUs asynchronously). A shard should still carry seconds
of work, as ``bigssl prepare``'s 500 utterances do (~1.5 s per core here).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from bigssl import storage
from bigssl.config import ConfigError
from bigssl.data.bucketing import BucketConfig, bucket_batches, collate_features
from bigssl.data.features import (
    FeaturizeConfig,
    done_marker,
    drop_cross_shard_duplicates,
    featurize_shard,
)
from bigssl.stages.runtime import init_ray, no_op_reservation, one_row_blocks
from bigssl.summary import StageSummary

if TYPE_CHECKING:
    import ray.data


def list_shards(shards: str) -> list[str]:
    """Shard URIs under ``shards`` (a folder of .tar files, or a prepare output holding shards/)."""
    found = storage.list_files(shards, ".tar")
    if not found and storage.exists(storage.join(shards, "shards")):
        found = storage.list_files(storage.join(shards, "shards"), ".tar")
    if not found:
        raise FileNotFoundError(f"no .tar shards in {shards} (nor in {shards}/shards)")
    return found


def _featurize_batch(
    batch: dict[str, Any], out: str, cfg: FeaturizeConfig
) -> Iterator[dict[str, list[str]]]:
    """Featurize the batch's shard(s), yielding each shard's row *before* its work.

    Ray Data's executor polls its tasks every 0.1 s. A task that yields its only row
    when it ends needs two polls (the row, then the end of its output stream) before
    the next shard is launched: ~0.17 s of idle core per shard. Yielding first, with
    one-row blocks (``runtime.one_row_blocks``), leaves one poll: ~0.05 s. The rows carry
    nothing the stage reads; a failure after the yield still fails the task.
    """
    import torch

    torch.set_num_threads(1)  # one core per task: parallelism comes from tasks
    for shard in batch["shard"]:
        yield {"shard": [shard]}
        featurize_shard(shard, out, cfg)


# Settings that change what is written; the others (strict, CPUs per task, row-group
# size) may differ between a run and its re-run.
_OUTPUT_SETTINGS = ("fbank", "audio_key", "min_duration_s", "max_duration_s")


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _refuse_other_features(out: str, previous: dict, current: dict) -> None:
    """A re-run into an output made with other feature settings would mix two kinds of
    rows (or, with every shard done, do nothing and say the new settings): refused."""
    old = _flatten({k: previous.get(k) for k in _OUTPUT_SETTINGS})
    new = _flatten({k: current.get(k) for k in _OUTPUT_SETTINGS})
    differ = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
    if differ:
        field = differ[0]
        said = ", ".join(f"{k}={old.get(k)!r} (now {new.get(k)!r})" for k in differ)
        raise ConfigError(field, f"{out} holds features made with {said}; use a new --out")


def run_featurize(
    shards: str, out: str, cfg: FeaturizeConfig, ray_address: str | None = None
) -> StageSummary:
    """Featurize every shard not yet done into ``out``; returns the whole output's summary."""
    shard_uris = list_shards(shards)
    # Training records these in its checkpoints, so inference computes the same features.
    config_uri = storage.join(out, "featurize_config.json")
    if storage.exists(config_uri):
        _refuse_other_features(out, storage.read_json(config_uri), cfg.to_dict())
    storage.write_json(config_uri, cfg.to_dict())
    todo = [s for s in shard_uris if not storage.exists(done_marker(out, s))]
    if todo:
        import ray.data

        init_ray(ray_address)
        with no_op_reservation(), one_row_blocks():
            ds = ray.data.from_items([{"shard": s} for s in todo], override_num_blocks=len(todo))
            ds = ds.map_batches(
                functools.partial(_featurize_batch, out=out, cfg=cfg),
                batch_size=1,
                num_cpus=cfg.num_cpus_per_task,
            )
            for _ in ds.iter_rows():  # drives the pipeline; results are the done markers
                pass
    duplicates = drop_cross_shard_duplicates(out, shard_uris, cfg.rows_per_group)
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
            "duplicates_dropped_this_run": duplicates,
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
    import ray.data

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
