"""Optimizers and learning-rate schedules: Transformer (inverse square root) and tri-stage.

BigSSL XL pre-training: Adam, peak 2e-3, 25 k warm-up then inverse square root,
gradient clipping at 20. Fine-tuning gives encoder and head their own peaks and
warm-ups, so the schedule works per parameter group.

wav2vec 2.0 fine-tuning uses the tri-stage schedule instead: linear warm-up, hold at
the peak, exponential decay to ``final_lr_scale`` of the peak, with the stages as
fractions of the run (10 / 40 / 50 %). A run that is sized in epochs only knows its
length in steps once its data is counted, so ``warmup_fraction`` (and the tri-stage
fractions) resolve against ``total_steps`` when the scheduler is built.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from bigssl.config import Config, check


@dataclass
class OptimConfig(Config):
    name: Literal["adam", "adamw", "adafactor"] = (
        "adam"  # Adafactor saves optimizer memory at g scale
    )
    peak_lr: float = 2e-3  # learning rate at the end of warm-up
    warmup_steps: int = 25000  # linear warm-up, then inverse square root decay
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # Adam betas
    weight_decay: float = 0.0
    clip_norm: float = 20.0  # max global gradient norm (0 = off)
    accumulation: int = 1  # micro-batches per optimizer step
    schedule: Literal["transformer", "tri_stage"] = "transformer"
    # Warm-up as a fraction of the run's steps (> 0 replaces warmup_steps, in every group).
    warmup_fraction: float = 0.0
    hold_fraction: float = 0.4  # tri_stage: steps at the peak, as a fraction of the run
    final_lr_scale: float = 0.05  # tri_stage: the last step's LR over the peak
    # The forward's precision: "auto" = bf16 autocast on CUDA, float32 on CPU; "bf16"
    # autocasts on CPU too (bench/cpu_step.py: 0.65-0.73 of the fp32 step time on this
    # AVX512-BF16 CPU, same loss to 0.01 %); "fp32" never autocasts. CTC loss stays float32.
    precision: Literal["auto", "bf16", "fp32"] = "auto"

    def validate(self) -> None:
        check(self.peak_lr > 0, "peak_lr", "must be > 0")
        check(self.warmup_steps >= 0, "warmup_steps", "must be >= 0")
        check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "betas",
            "two values in [0, 1)",
        )
        check(self.clip_norm >= 0, "clip_norm", "must be >= 0")
        check(self.accumulation >= 1, "accumulation", "must be >= 1")
        check(0 <= self.warmup_fraction < 1, "warmup_fraction", "must be in [0, 1)")
        check(
            0 <= self.hold_fraction and self.warmup_fraction + self.hold_fraction <= 1,
            "hold_fraction",
            "must be >= 0, with warmup_fraction + hold_fraction <= 1",
        )
        check(0 < self.final_lr_scale <= 1, "final_lr_scale", "must be in (0, 1]")


def transformer_lr_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up, then sqrt(warmup / step)."""
    step = max(step, 1)
    if warmup_steps == 0:
        return 1.0
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


def build_optimizer(param_groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    """``param_groups`` may set their own ``lr`` (peak); others get ``cfg.peak_lr``."""
    for group in param_groups:
        group.setdefault("lr", cfg.peak_lr)
        group["peak_lr"] = group["lr"]
    if cfg.name == "adafactor":
        return torch.optim.Adafactor(param_groups, lr=cfg.peak_lr, weight_decay=cfg.weight_decay)
    optimizer = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return optimizer(
        param_groups, lr=cfg.peak_lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )


def tri_stage_lr_factor(
    step: int, warmup_steps: int, hold_steps: int, total_steps: int, final_scale: float
) -> float:
    """Multiplier of the peak LR at ``step``: linear warm-up from 0, hold at 1, then
    exponential decay reaching ``final_scale`` at ``total_steps`` (and staying there)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if step < warmup_steps + hold_steps:
        return 1.0
    decay_steps = max(total_steps - warmup_steps - hold_steps, 1)
    progress = min((step - warmup_steps - hold_steps) / decay_steps, 1.0)
    return math.exp(math.log(final_scale) * progress)


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    warmups: list[int],
    cfg: OptimConfig | None = None,
    total_steps: int = 0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """One schedule per parameter group, each with its own warm-up (``cfg.warmup_fraction``
    of ``total_steps`` replaces them all when set)."""
    if len(warmups) != len(optimizer.param_groups):
        raise ValueError(
            f"{len(warmups)} warm-ups for {len(optimizer.param_groups)} parameter groups"
        )
    cfg = cfg or OptimConfig()
    if cfg.warmup_fraction or cfg.schedule == "tri_stage":
        if total_steps < 1:
            raise ValueError(f"schedule {cfg.schedule!r} with fractions needs total_steps >= 1")
    if cfg.warmup_fraction:
        warmups = [round(cfg.warmup_fraction * total_steps)] * len(warmups)
    if cfg.schedule == "tri_stage":
        hold = round(cfg.hold_fraction * total_steps)
        lambdas = [
            lambda step, w=w: tri_stage_lr_factor(step, w, hold, total_steps, cfg.final_lr_scale)
            for w in warmups
        ]
    else:
        lambdas = [lambda step, w=w: transformer_lr_factor(step, w) for w in warmups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
