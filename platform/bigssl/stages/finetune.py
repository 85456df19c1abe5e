"""Fine-tuning stage: a (pre-trained) Conformer becomes a CTC or RNN-T recogniser on a label budget.

``bigssl finetune --config configs/finetune-tiny.yaml --out runs/ft [key=value ...]``
with ``features=`` (a featurize output), ``manifest=`` (a label-budget manifest from
``bigssl split``), ``tokenizer=`` (``bigssl tokenizer``'s model) and optionally
``init=`` (a pre-training checkpoint or run folder; empty = from scratch).

Design decisions:
- The same Ray Train loop, checkpoints and resume as pre-training
  (:mod:`bigssl.stages.trainer`); the manifest selects rows of the shared feature
  pass, so every budget and every trial reuses one featurize output.
- ``head=ctc`` (default) or ``head=rnnt`` (the paper's decoder: prediction network +
  joiner, sized by ``rnnt.*``); both train, checkpoint, evaluate and pseudo-label
  through the same code.
- Encoder and head are separate parameter groups with their own peak LR and
  warm-up (BigSSL: encoder 3e-4 / 5 k, head 1e-3 / 1.5 k); the encoder can be
  frozen for the first ``freeze_encoder_steps``.
- Transcripts are normalised and tokenised on the workers; every checkpoint carries
  ``tokenizer.model`` and the feature config in ``meta.json``, so a checkpoint alone
  is enough to evaluate or pseudo-label.
- With ``dev=`` (the split's ``dev.parquet``) the run scores its dev set while it
  trains (loss, greedy WER/CER), keeps the ``select.keep_best`` checkpoints by
  ``select.metric``, may stop early, and ends by writing ``RUN/final``: the average
  of the k best (or the best one, when the average scores worse on dev), which
  ``init=``, ``bigssl evaluate`` and ``bigssl label`` take for the run folder.
- Ray Train is imported where it runs (the driver's ``fit``, the workers' loop), so the
  config loads without Ray: a sweep plans its trials from it (tests/unit).
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bigssl import storage
from bigssl.audio.features import FbankConfig
from bigssl.audio.perturb import speed_perturb
from bigssl.audio.specaugment import SpecAugmentConfig
from bigssl.config import Config, ConfigError, check, load_dict
from bigssl.data.bucketing import BucketConfig
from bigssl.models import (
    ConformerConfig,
    RNNTConfig,
    build_asr_model,
    count_parameters,
    expand_preset,
)
from bigssl.models.asr import Head
from bigssl.models.parallelize import build_parallel
from bigssl.stages.dev_set import DEV_COLUMNS, dev_batches, dev_selection, select_final
from bigssl.stages.labeled_rows import (
    select_rows,
    too_short_for_ctc,
    training_transcripts,
    vocabulary,
)
from bigssl.stages.runtime import init_ray
from bigssl.stages.training_data import (
    feature_rows,
    steps_per_epoch,
)
from bigssl.summary import StageSummary
from bigssl.text.tokenizer import Tokenizer
from bigssl.training import checkpoint as ckpt
from bigssl.training.loop import LoopConfig, ScalingSettings
from bigssl.training.optim import OptimConfig, build_optimizer, build_scheduler
from bigssl.training.selection import SelectConfig
from bigssl.training.step import Stepper
from bigssl.training.validation import ctc_scorer


def _finetune_optim() -> OptimConfig:
    return OptimConfig(peak_lr=3e-4, warmup_steps=5000, clip_norm=20.0)


@dataclass
class FinetuneConfig(Config):
    features: str = ""  # a `bigssl featurize` output folder (local or s3://)
    manifest: str = ""  # label-budget manifest (`bigssl split`): the labeled rows to train on
    tokenizer: str = ""  # `bigssl tokenizer` model file
    init: str = ""  # pre-training checkpoint or run folder; empty = train from scratch
    dev: str = ""  # dev manifest (`bigssl split`'s dev.parquet): scored while training
    pseudo_labels: str = ""  # a `bigssl label` partition (teacher=T/generation=G): noisy student
    pseudo_ratio: float = (
        9.0  # pseudo-labeled : labeled rows per batch, in expectation (BigSSL 9:1)
    )
    run_name: str = "finetune"  # run folder under --out; the same name resumes
    preset: str = ""  # encoder preset when training from scratch; encoder.* overrides it
    encoder: ConformerConfig = field(default_factory=ConformerConfig)  # from scratch only
    optim: OptimConfig = field(default_factory=_finetune_optim)  # encoder group (BigSSL)
    head: Head = "ctc"  # ctc (a linear layer) or rnnt (prediction network + joiner)
    rnnt: RNNTConfig = field(default_factory=RNNTConfig)  # sizes when head=rnnt
    head_lr: float = 1e-3  # peak LR of the head
    head_warmup_steps: int = 1500  # warm-up of the head
    freeze_encoder_steps: int = 0  # encoder gradients dropped for the first N steps
    specaugment: SpecAugmentConfig = field(default_factory=SpecAugmentConfig)
    # Speed factors drawn per training batch (e.g. [0.9, 1.0, 1.1]); empty = off.
    speed_perturb: list[float] = field(default_factory=list)
    select: SelectConfig = field(default_factory=SelectConfig)  # with dev=: model selection
    bucket: BucketConfig = field(default_factory=BucketConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    scaling: ScalingSettings = field(default_factory=ScalingSettings)

    def validate(self) -> None:
        check(
            bool(self.run_name) and "/" not in self.run_name, "run_name", "a non-empty folder name"
        )
        check(self.head_lr > 0, "head_lr", "must be > 0")
        check(self.head_warmup_steps >= 0, "head_warmup_steps", "must be >= 0")
        check(self.freeze_encoder_steps >= 0, "freeze_encoder_steps", "must be >= 0")
        check(self.pseudo_ratio > 0, "pseudo_ratio", "must be > 0")
        check(
            all(0.5 <= f <= 2.0 for f in self.speed_perturb),
            "speed_perturb",
            "factors must be in [0.5, 2.0]",
        )
        check(
            not (self.dev and self.head != "ctc"),
            "dev",
            "dev-set scoring is built for head=ctc (RNN-T runs: leave dev empty)",
        )

    @classmethod
    def load(
        cls, path: str | Path | None = None, overrides: list[str] | None = None
    ) -> FinetuneConfig:
        return cls.from_dict(expand_preset(load_dict(path, overrides)))


def init_encoder_config(init: str) -> ConformerConfig:
    meta = ckpt.read_meta(ckpt.resolve_checkpoint(init))
    model = meta["config"].get("model", {})
    encoder = model.get("encoder", meta["config"].get("encoder"))
    if encoder is None:
        raise ConfigError("init", f"{init} holds no encoder config in its meta.json")
    return ConformerConfig.from_dict(encoder)


def _targets(tokenizer: Tokenizer):
    def prepare(batch: dict) -> dict:
        if "text" not in batch:
            raise ValueError("a fine-tuning batch holds unlabeled rows (the manifest is labeled?)")
        encoded = [tokenizer.encode(t) for t in batch["text"]]
        lengths = np.array([len(e) for e in encoded], dtype=np.int64)
        targets = np.zeros((len(encoded), max(1, int(lengths.max()))), dtype=np.int64)
        for i, ids in enumerate(encoded):
            targets[i, : len(ids)] = ids
        return {**batch, "targets": targets, "target_lengths": lengths}

    return prepare


def _speed_augment(factors: list[float], seed: int):
    """A training-batch transform: one speed factor per batch, drawn from ``factors``."""
    rng = random.Random(seed)

    def augment(batch: dict) -> dict:
        factor = rng.choice(factors)
        feats, lengths = speed_perturb(batch["feats"], batch["lengths"], factor)
        return {**batch, "feats": feats, "lengths": lengths}

    return augment


def _train_worker(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train.torch

    from bigssl.stages.trainer import Run, worker_loop

    cfg = FinetuneConfig.from_dict(config["cfg"])
    encoder_cfg = ConformerConfig.from_dict(config["encoder"])
    tokenizer = Tokenizer.from_bytes(config["tokenizer_bytes"])
    rank = ray.train.get_context().get_world_rank()
    torch.manual_seed(cfg.train.seed + rank)
    device = ray.train.torch.get_device()
    torch.set_num_threads(cfg.scaling.torch_threads())
    init_checkpoint = config["init_checkpoint"]
    # Under FSDP built on the meta device and initialised shard by shard (same weights);
    # the pre-trained encoder then loads into this rank's shards.
    model = build_parallel(
        lambda: build_asr_model(
            encoder_cfg, tokenizer.vocab_size, cfg.head, cfg.rnnt, cfg.specaugment
        ),
        cfg.scaling.strategy,
        device,
        after_init=(lambda m: ckpt.load_encoder_weights(m.encoder, init_checkpoint))
        if init_checkpoint
        else None,
    )
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    optimizer = build_optimizer(
        [
            {"params": encoder_params, "lr": cfg.optim.peak_lr},
            {"params": list(model.head.parameters()), "lr": cfg.head_lr},
        ],
        cfg.optim,
    )
    scheduler = build_scheduler(
        optimizer,
        [cfg.optim.warmup_steps, cfg.head_warmup_steps],
        cfg.optim,
        cfg.train.max_steps,
    )
    run = Run(
        config["run_dir"],
        cfg.train,
        cfg.bucket,
        config["totals"],
        config["meta"],
        prepare_batch=_targets(tokenizer),
        files={"tokenizer.model": tokenizer.model_bytes, ckpt.WORDS_FILE: config["words"].encode()},
        augment=_speed_augment(cfg.speed_perturb, cfg.train.seed + rank)
        if cfg.speed_perturb
        else None,
        accumulation=cfg.optim.accumulation,
        select=cfg.select if cfg.dev else None,
        scorer=ctc_scorer(tokenizer.decode) if cfg.dev else None,
    )
    stepper = Stepper(
        model,
        optimizer,
        scheduler,
        cfg.optim,
        device,
        extra_keys=("targets", "target_lengths"),
        frozen=encoder_params,
        frozen_until=cfg.freeze_encoder_steps,
    )
    worker_loop(run, stepper)


def fbank_config(features: str) -> dict[str, Any]:
    """The feature settings a featurize output was made with (defaults for older outputs)."""
    path = storage.join(features, "featurize_config.json")
    if storage.exists(path):
        return storage.read_json(path)["fbank"]
    return FbankConfig().to_dict()


def run_finetune(cfg: FinetuneConfig, out: str, ray_address: str | None = None) -> StageSummary:
    for name in ("features", "manifest", "tokenizer"):
        if not getattr(cfg, name):
            raise ConfigError(name, "required (a path or s3:// URI)")
    tokenizer = Tokenizer.load(cfg.tokenizer)
    init_checkpoint = ckpt.resolve_checkpoint(cfg.init) if cfg.init else ""
    encoder_cfg = init_encoder_config(init_checkpoint) if init_checkpoint else cfg.encoder
    selection, totals, hours = select_rows(
        cfg.features, cfg.manifest, cfg.pseudo_labels, cfg.pseudo_ratio
    )
    dev = dev_selection(cfg.features, cfg.dev) if cfg.dev else None
    transcripts = training_transcripts(cfg.features, selection)
    too_short = (
        too_short_for_ctc(transcripts, tokenizer, encoder_cfg) if cfg.head == "ctc" else None
    )
    epoch_steps = steps_per_epoch(
        cfg.features, selection, cfg.bucket, cfg.scaling.num_workers, cfg.optim.accumulation
    )
    if cfg.train.max_epochs:
        cfg.train.max_steps = max(1, round(cfg.train.max_epochs * epoch_steps))
    meta = {
        "stage": "finetune",
        "config": cfg.to_dict(),
        "encoder": encoder_cfg.to_dict(),
        "vocab_size": tokenizer.vocab_size,
        "head": cfg.head,
        "rnnt": cfg.rnnt.to_dict(),
        "fbank": fbank_config(cfg.features),
        "init": init_checkpoint,
        "labeled_hours": hours,
        "steps_per_epoch": epoch_steps,
    }
    from bigssl.stages.launch import fit

    init_ray(ray_address)
    start = time.perf_counter()
    result = fit(
        _train_worker,
        {
            "cfg": cfg.to_dict(),
            "encoder": encoder_cfg.to_dict(),
            "tokenizer_bytes": tokenizer.model_bytes,
            "init_checkpoint": init_checkpoint,
            "totals": totals,
            "meta": meta,
            "words": vocabulary(transcripts),
        },
        cfg.scaling,
        cfg.features,
        out,
        cfg.run_name,
        selection,
        dev,
    )
    run_dir = storage.join(storage.absolute(out), cfg.run_name)
    chosen = {}
    if dev is not None:
        rows = feature_rows(cfg.features, dev, DEV_COLUMNS)
        batches = dev_batches(rows, cfg.bucket.max_frames * 2, _targets(tokenizer))
        chosen = select_final(cfg.select, run_dir, batches, tokenizer)
    wall = time.perf_counter() - start
    metrics = result.metrics or {}
    with torch.device("meta"):
        params = count_parameters(
            build_asr_model(encoder_cfg, tokenizer.vocab_size, cfg.head, cfg.rnnt)
        )
    rows = len(selection.ids)
    return StageSummary(
        "finetune" if not cfg.pseudo_labels else "student",
        read=rows + selection.skipped,
        used=rows,
        quarantined=selection.skipped,  # rows featurize quarantined, listed with reasons there
        hours=hours,
        extra={
            "steps": int(metrics.get("step", 0)),
            "loss": metrics.get("loss"),
            "init": init_checkpoint or "scratch",
            "head": cfg.head,
            "labeled_rows": rows - len(selection.pseudo),
            "pseudo_rows": len(selection.pseudo),
            "repeats": [selection.repeat_labeled, selection.repeat_pseudo],
            "params": params,
            "vocab_size": tokenizer.vocab_size,
            "wall_s": round(wall, 1),
            "epochs": round(int(metrics.get("step", 0)) / epoch_steps, 2),
            "checkpoint": storage.join(run_dir, ckpt.FINAL)
            if chosen
            else ckpt.registered_uri(run_dir, result.checkpoint),
            "selected": chosen or None,
            "too_short_for_ctc": too_short,
            "run_dir": storage.join(out, cfg.run_name),
        },
    )


def finetune_main(
    config: str | None, overrides: list[str], out: str, ray_address: str | None = None
) -> dict:
    cfg = FinetuneConfig.load(config, overrides)
    summary = run_finetune(cfg, out, ray_address)
    return summary.finish(storage.join(out, cfg.run_name))
