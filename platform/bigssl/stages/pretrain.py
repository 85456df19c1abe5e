"""Pre-training stage: a Conformer learns from unlabeled features (wav2vec2 or BEST-RQ) on Ray Train.

``bigssl pretrain --config configs/tiny.yaml --out runs/pt [key=value ...]``. The
run folder ``OUT/RUN_NAME`` holds step-named checkpoints, ``metrics.parquet``,
TensorBoard events and ``summary.json``. Re-running the same name resumes from
its newest checkpoint.

With ``dev=`` (a manifest of held-out utterances, e.g. the split's ``dev.parquet``;
transcripts are not needed) every ``train.eval_every`` steps the run scores its
objective on that audio (``dev_loss``, ``dev_accuracy``: masked-frame weighted, fixed
masks) into ``metrics.parquet``, TensorBoard and Ray Train; retention then keeps the
``select.keep_best`` checkpoints with the lowest ``dev_loss`` besides the newest
``train.keep_last``, ``select.patience`` stops a run that has stopped improving, and the
summary names the best checkpoint.

Ray Train is imported where it runs (the driver's ``fit``, the workers' loop), so the
config loads without Ray: a sweep plans its trials from it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from bigssl import storage
from bigssl.config import Config, ConfigError, check, load_dict
from bigssl.data.bucketing import BucketConfig
from bigssl.models import SSLConfig, build_ssl_model_from_config, count_parameters, expand_preset
from bigssl.models.parallelize import build_parallel
from bigssl.stages.runtime import init_ray
from bigssl.stages.training_data import (
    feature_hours,
    pool_selection,
    quarantined_ids,
    shard_totals,
    steps_per_epoch,
)
from bigssl.summary import StageSummary
from bigssl.training import checkpoint as ckpt
from bigssl.training.loop import LoopConfig, ScalingSettings
from bigssl.training.optim import OptimConfig, build_optimizer, build_scheduler
from bigssl.training.selection import SelectConfig, best, scored_checkpoints
from bigssl.training.step import Stepper
from bigssl.training.validation import SSL_SCORER


@dataclass
class PretrainSelectConfig(SelectConfig):
    """Selection without transcripts: the held-out pre-training loss, one best kept."""

    metric: Literal["dev_wer", "dev_cer", "dev_loss"] = "dev_loss"
    keep_best: int = 1

    def validate(self) -> None:
        super().validate()
        check(
            self.metric == "dev_loss",
            "metric",
            f"pre-training scores only dev_loss (no transcripts), got {self.metric!r}",
        )


@dataclass
class PretrainConfig(Config):
    features: str = ""  # a `bigssl featurize` output folder (local or s3://)
    # Optional: only the utterances this manifest lists (a split's unlabeled.parquet: the
    # training pool, so pre-training never hears dev/test audio). Empty: every feature row.
    manifest: str = ""
    # Optional: held-out utterances (a split's dev.parquet) whose pre-training loss is
    # scored every train.eval_every steps. Empty: no held-out scoring.
    dev: str = ""
    run_name: str = "pretrain"  # run folder under --out; the same name resumes
    preset: str = ""  # encoder size preset (tiny, s, m, xl, xxl, g); model.encoder.* overrides it
    model: SSLConfig = field(default_factory=SSLConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    bucket: BucketConfig = field(default_factory=BucketConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)
    # With dev=: retention keeps the keep_best lowest dev_loss; patience stops early.
    select: PretrainSelectConfig = field(default_factory=PretrainSelectConfig)

    def validate(self) -> None:
        check(
            bool(self.run_name) and "/" not in self.run_name, "run_name", "a non-empty folder name"
        )

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: list[str] | None = None
    ) -> PretrainConfig:
        return cls.from_dict(expand_preset(load_dict(path, overrides), ("model", "encoder")))


def _train_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train.torch

    from bigssl.stages.trainer import Run, worker_loop

    cfg = PretrainConfig.from_dict(config["cfg"])
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(cfg.train.seed + rank)
    device = ray.train.torch.get_device()
    torch.set_num_threads(cfg.scaling.torch_threads())
    # Under FSDP built on the meta device and initialised shard by shard (same weights).
    model = build_parallel(
        lambda: build_ssl_model_from_config(cfg.model), cfg.scaling.strategy, device
    )
    optimizer = build_optimizer(
        [{"params": [p for p in model.parameters() if p.requires_grad]}], cfg.optim
    )
    scheduler = build_scheduler(optimizer, [cfg.optim.warmup_steps], cfg.optim, cfg.train.max_steps)
    meta = {"stage": "pretrain", "config": config["cfg"], "objective": cfg.model.objective}
    run = Run(
        config["run_dir"],
        cfg.train,
        cfg.bucket,
        config["totals"],
        meta,
        accumulation=cfg.optim.accumulation,
        select=cfg.select if cfg.dev else None,
        scorer=SSL_SCORER if cfg.dev else None,
    )
    worker_loop(run, Stepper(model, optimizer, scheduler, cfg.optim, device))


def run_pretrain(cfg: PretrainConfig, out: str, ray_address: str | None = None) -> StageSummary:
    if not cfg.features:
        raise FileNotFoundError("features: no featurize output given (features=DIR)")
    if cfg.manifest:
        selection, totals, hours = pool_selection(cfg.features, cfg.manifest)
    else:
        selection, totals, hours = None, shard_totals(cfg.features), feature_hours(cfg.features)
    if cfg.train.max_epochs:
        epoch_steps = steps_per_epoch(
            cfg.features, selection, cfg.bucket, cfg.scaling.num_workers, cfg.optim.accumulation
        )
        cfg.train.max_steps = max(1, round(cfg.train.max_epochs * epoch_steps))
    dev = pool_selection(cfg.features, cfg.dev)[0] if cfg.dev else None
    if dev is not None and selection is not None and set(dev.ids) & set(selection.ids):
        raise ConfigError("dev", f"{cfg.dev} shares utterances with manifest {cfg.manifest}")
    from bigssl.stages.launch import fit

    init_ray(ray_address)
    start = time.perf_counter()
    result = fit(
        _train_worker,
        {"cfg": cfg.to_dict(), "totals": totals},
        cfg.scaling,
        cfg.features,
        out,
        cfg.run_name,
        selection,
        dev,
    )
    wall = time.perf_counter() - start
    metrics = result.metrics or {}
    rows = sum(totals.values())
    # featurize's quarantined utterances: of the manifest's, or of the whole featurize output
    skipped = selection.skipped if selection else len(quarantined_ids(cfg.features))
    with torch.device("meta"):
        params = count_parameters(build_ssl_model_from_config(cfg.model).encoder)
    run_dir = storage.join(storage.absolute(out), cfg.run_name)
    scored = scored_checkpoints(run_dir) if dev is not None else []
    top = best(scored, "dev_loss", 1) if scored else []
    return StageSummary(
        "pretrain",
        read=rows + skipped,
        used=rows,
        quarantined=skipped,  # listed with their reasons in the features' quarantine/
        hours=hours,
        extra={
            "steps": int(metrics.get("step", 0)),
            "loss": metrics.get("loss"),
            "accuracy": metrics.get("accuracy"),
            "code_perplexity": metrics.get("code_perplexity"),
            "encoder_params": params,
            "wall_s": round(wall, 1),
            "checkpoint": ckpt.registered_uri(run_dir, result.checkpoint),
            "dev_loss": metrics.get("dev_loss"),
            "dev_accuracy": metrics.get("dev_accuracy"),
            "best_checkpoint": (
                {"step": top[0].step, "path": top[0].path, "dev_loss": top[0].scores["dev_loss"]}
                if top
                else None
            ),
            "run_dir": storage.join(out, cfg.run_name),
        },
    )


def pretrain_main(
    config: str | None, overrides: list[str], out: str, ray_address: str | None = None
) -> dict:
    cfg = PretrainConfig.load(config, overrides)
    summary = run_pretrain(cfg, out, ray_address)
    return summary.finish(storage.join(out, cfg.run_name))
