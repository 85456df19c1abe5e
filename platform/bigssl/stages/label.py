"""Pseudo-labeling stage: a teacher checkpoint transcribes unlabeled shards into a ledger.

``bigssl label --teacher CKPT --shards DIR --out DIR [key=value ...]`` (or
``--manifest M`` to label only a manifest's rows, e.g. the unlabeled pool view).
Inference is the actor pool of :mod:`bigssl.stages.inference`: one teacher replica
per actor (a GPU each where the cluster has them), duration-bucketed batches.

The ledger's layout, one partition per (teacher, generation), and its filters are
:mod:`bigssl.data.ledger`. A killed run re-run finishes the shards without a done
marker and rewrites nothing else; the run-wide top-fraction filter is recomputed from
``raw/`` each time, so it is idempotent too.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from bigssl import storage
from bigssl.config import Config, ConfigError, check
from bigssl.data.features import shard_stem
from bigssl.data.ledger import FilterConfig, finalize, partition, rule_reason, write_raw
from bigssl.data.quarantine import Quarantine
from bigssl.decoding.recognizer import DecodeConfig, Recognizer
from bigssl.stages.featurize import list_shards
from bigssl.stages.inference import PoolConfig, infer_shards, manifest_work
from bigssl.summary import StageSummary
from bigssl.training import checkpoint as ckpt


@dataclass
class LabelConfig(Config):
    teacher_name: str = ""  # ledger name of the teacher (default: its run folder and step)
    generation: int = 1  # noisy-student generation these labels feed
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    exclude: str = ""  # manifest whose ids are not labeled (e.g. the labeled budget itself)

    def validate(self) -> None:
        check(self.generation >= 1, "generation", "must be >= 1")
        check(
            not self.teacher_name
            or re.fullmatch(r"[A-Za-z0-9_.@-]+", self.teacher_name) is not None,
            "teacher_name",
            "letters, digits and _ . @ - only (it names a folder)",
        )


def default_teacher_name(checkpoint: str) -> str:
    meta = ckpt.read_meta(checkpoint)
    run = str(meta.get("config", {}).get("run_name", "teacher"))
    return f"{run}@{int(meta.get('step', 0))}"


class LabelShard:
    """Per-shard handler on the teacher replicas: hypotheses -> raw ledger rows."""

    stage = "label"

    def __init__(self, teacher: str, generation: int, cfg: FilterConfig):
        self.teacher, self.generation, self.cfg = teacher, generation, cfg

    def __call__(
        self, stem: str, results: list, quarantine: Quarantine, out: str, recognizer: Recognizer
    ) -> dict[str, Any]:
        rows = []
        for row, hyp, text in results:
            entry = {
                "id": row["id"],
                "shard": stem,
                "teacher": self.teacher,
                "generation": self.generation,
                "text": text,
                "num_tokens": len(hyp.tokens),
                "num_frames": int(row["num_frames"]),
                "duration_s": float(row["duration_s"]),
                "avg_logprob": float(hyp.avg_logprob) if hyp.frames else float("-inf"),
                "mean_max_prob": float(hyp.mean_max_prob) if hyp.frames else 0.0,
            }
            reason = rule_reason(entry, self.cfg)
            rows.append({**entry, "kept": reason is None, "reason": reason})
        write_raw(out, stem, rows)
        return {"used": len(rows), "kept_by_rules": sum(r["kept"] for r in rows)}


def run_label(
    teacher: str,
    out: str,
    cfg: LabelConfig,
    shards: str | None = None,
    manifest: str | None = None,
    ray_address: str | None = None,
) -> StageSummary:
    if bool(shards) == bool(manifest):
        raise ConfigError("shards", "give exactly one of --shards DIR or --manifest M")
    checkpoint = ckpt.resolve_checkpoint(teacher)
    name = cfg.teacher_name or default_teacher_name(checkpoint)
    part = partition(out, name, cfg.generation)
    if manifest:
        work: dict[str, list[str] | None] = dict(manifest_work(manifest))
    else:
        work = {uri: None for uri in list_shards(shards)}
    if cfg.exclude:
        excluded = set(storage.read_parquet(cfg.exclude).column("id").to_pylist())
        if manifest:
            work = {u: [i for i in ids if i not in excluded] for u, ids in work.items()}
            work = {u: ids for u, ids in work.items() if ids}
        else:
            raise ConfigError("exclude", "only with --manifest (shards are labeled whole)")
    start = time.perf_counter()
    handler = LabelShard(name, cfg.generation, cfg.filter)
    markers = infer_shards(work, checkpoint, cfg.decode, cfg.pool, part, handler, ray_address)
    stems = [shard_stem(u) for u in sorted(work)]
    final = finalize(part, stems, cfg.filter)
    summary = StageSummary(
        "label",
        read=sum(m["read"] for m in markers),
        used=sum(m["used"] for m in markers),
        quarantined=sum(m["quarantined"] for m in markers),
        hours=sum(m["seconds"] for m in markers) / 3600,
        extra={
            "teacher": name,
            "generation": cfg.generation,
            "kept": final["kept"],
            "kept_fraction": round(final["kept"] / max(1, final["labeled"]), 4),
            "cutoff": final["cutoff"],
            "checkpoint": checkpoint,
            "ledger": storage.join(part, "ledger"),
            "decoder": markers[0]["decoder"]
            if markers and "decoder" in markers[0]
            else cfg.decode.decoder,
            "wall_s": round(time.perf_counter() - start, 1),
        },
    )
    storage.write_json(storage.join(part, "summary.json"), summary.to_dict())
    return summary


def label_main(
    teacher: str,
    out: str,
    config: str | None,
    overrides: list[str],
    shards: str | None = None,
    manifest: str | None = None,
    ray_address: str | None = None,
) -> dict:
    cfg = LabelConfig.load(config, overrides)
    return run_label(teacher, out, cfg, shards, manifest, ray_address).finish(out)
