"""Optimizers and the Transformer learning-rate schedule.

BigSSL XL pre-training: Adam, peak 2e-3, 25 k warm-up then inverse square root,
gradient clipping at 20. Fine-tuning gives encoder and head their own peaks and
warm-ups, so the schedule works per parameter group.
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


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmups: list[int]
) -> torch.optim.lr_scheduler.LambdaLR:
    """One Transformer schedule per parameter group, each with its own warm-up."""
    if len(warmups) != len(optimizer.param_groups):
        raise ValueError(
            f"{len(warmups)} warm-ups for {len(optimizer.param_groups)} parameter groups"
        )
    lambdas = [lambda step, w=w: transformer_lr_factor(step, w) for w in warmups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)
