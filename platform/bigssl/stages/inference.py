"""Checkpoint inference over shards on a Ray Data actor pool: the engine of evaluate and label.

Design decisions:
- The unit of work, output and restart is the input shard, as in featurize: a
  replica reads one shard, featurizes and decodes it in duration-bucketed
  batches, and writes that shard's table, its quarantine and a done marker last.
  A re-run skips shards whose marker names the same checkpoint, so a killed run
  finishes the rest with no duplicates and no gaps.
- Replicas are a callable class on an actor pool: each loads the checkpoint once.
  ``num_gpus=1`` per replica where the cluster has GPUs; on CPU a fractional CPU
  request lets the pool fill the machine without starving Ray Data's scheduler.
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from bigssl import storage
from bigssl.config import Config, check
from bigssl.data.features import shard_stem
from bigssl.data.quarantine import Quarantine
from bigssl.decoding.recognizer import DecodeConfig, Recognizer
from bigssl.stages.runtime import init_ray, no_op_reservation


@dataclass
class PoolConfig(Config):
    replicas: int = 2  # model replicas (actors); on GPU nodes one per GPU
    cpus_per_replica: float = 1.0  # CPU request per replica (fractions allowed)
    gpus_per_replica: float = -1  # -1: 1 when the cluster has GPUs, else 0
    threads_per_replica: int = 1  # torch intra-op threads per replica on CPU

    def validate(self) -> None:
        check(self.replicas >= 1, "replicas", "must be >= 1")
        check(self.cpus_per_replica > 0, "cpus_per_replica", "must be > 0")
        check(self.threads_per_replica >= 1, "threads_per_replica", "must be >= 1")


def manifest_work(manifest: str) -> dict[str, list[str]]:
    """Shard URI -> ids, for the rows of a manifest (shard paths are relative to its folder)."""
    table = storage.read_parquet(manifest)
    base = manifest.rsplit("/", 1)[0] if "/" in manifest else "."
    work: dict[str, list[str]] = {}
    for uid, shard in zip(
        table.column("id").to_pylist(), table.column("shard").to_pylist(), strict=True
    ):
        uri = _join_relative(base, shard)
        work.setdefault(uri, []).append(uid)
    return work


def _join_relative(base: str, relative: str) -> str:
    if "://" in base:
        scheme, path = base.split("://", 1)
        return f"{scheme}://{posixpath.normpath(posixpath.join(path, relative))}"
    return posixpath.normpath(posixpath.join(base, relative))


class ShardWorker:
    """Ray Data actor: ``__call__({"shard", "ids"})`` runs ``handler`` on one shard."""

    def __init__(
        self,
        checkpoint: str,
        decode: dict,
        out: str,
        handler: Callable[..., dict[str, Any]],
        threads: int,
    ):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cpu":
            torch.set_num_threads(threads)
        self.decode = DecodeConfig.from_dict(decode).to_dict()  # as is_done compares it
        self.recognizer = Recognizer(checkpoint, DecodeConfig.from_dict(decode), device)
        self.out, self.handler, self.checkpoint = out, handler, checkpoint

    def __call__(self, item: dict[str, Any]) -> dict[str, Any]:
        start = time.perf_counter()
        ids = set(item["ids"]) if item.get("ids") else None
        rows, failed, read = self.recognizer.shard_rows(item["shard"], ids)
        results = self.recognizer.transcribe(rows)
        quarantine = Quarantine(getattr(self.handler, "stage", None) or self.handler.__name__)
        for f in failed:
            quarantine.add(f.id, item["shard"], f.reason)
        stem = shard_stem(item["shard"])
        counts = self.handler(stem, results, quarantine, self.out, self.recognizer)
        counts.update(
            shard=stem,
            read=read,
            quarantined=counts.get("quarantined", 0) + len(failed),
            seconds=sum(r["duration_s"] for r in rows),
            checkpoint=self.checkpoint,
            decode=self.decode,
            wall_s=time.perf_counter() - start,
        )
        quarantine.write(storage.join(self.out, "quarantine", f"{stem}.parquet"))
        storage.write_json(done_path(self.out, stem), counts)
        return {"shard": stem}


def done_path(out: str, stem: str) -> str:
    return storage.join(out, "done", f"{stem}.json")


def is_done(out: str, stem: str, checkpoint: str, decode: dict | None = None) -> bool:
    """A shard is done only for the checkpoint *and* decode settings its marker records:
    a re-run with another decoder (or beam, or LM) redoes it instead of returning the
    old hypotheses."""
    path = done_path(out, stem)
    if not storage.exists(path):
        return False
    marker = storage.read_json(path)
    return marker.get("checkpoint") == checkpoint and marker.get("decode") == decode


def infer_shards(
    work: dict[str, list[str] | None],
    checkpoint: str,
    decode: DecodeConfig,
    pool: PoolConfig,
    out: str,
    handler: Callable[..., dict[str, Any]],
    ray_address: str | None = None,
) -> list[dict[str, Any]]:
    """Run ``handler`` over every shard not yet done for ``checkpoint``; returns all markers."""
    todo = [
        {"shard": uri, "ids": ids}
        for uri, ids in sorted(work.items())
        if not is_done(out, shard_stem(uri), checkpoint, decode.to_dict())
    ]
    if todo:
        import ray.data

        init_ray(ray_address)
        gpus = pool.gpus_per_replica
        if gpus < 0:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        ds = ray.data.from_items(todo, override_num_blocks=len(todo))
        ds = ds.map(
            ShardWorker,
            fn_constructor_kwargs={
                "checkpoint": checkpoint,
                "decode": decode.to_dict(),
                "out": out,
                "handler": handler,
                "threads": pool.threads_per_replica,
            },
            compute=ray.data.ActorPoolStrategy(size=min(pool.replicas, len(todo))),
            num_cpus=pool.cpus_per_replica,
            num_gpus=gpus,
        )
        with no_op_reservation():
            for _ in ds.iter_rows():  # drives the pipeline; results are the done markers
                pass
    return [storage.read_json(done_path(out, shard_stem(uri))) for uri in sorted(work)]


def read_parts(out: str, folder: str) -> pa.Table | None:
    files = storage.list_files(storage.join(out, folder), ".parquet")
    tables = [storage.read_parquet(f) for f in files]
    tables = [t for t in tables if t.num_rows]
    return pa.concat_tables(tables) if tables else None
