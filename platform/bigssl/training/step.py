"""One optimizer step over micro-batches: the math every trainer shares (plain loop or Ray Train).

Batches are dicts from ``bigssl.data.bucketing.collate_features``:
``feats`` (B, T, F) float32, ``lengths`` (B,) int64, plus any ``extra_keys``
(CTC fine-tuning passes ``targets`` and ``target_lengths``) given to the model as
keyword arguments. The model returns a dict with ``loss`` plus scalar metrics.
The forward runs under bf16 autocast on CUDA, and on CPU with ``optim.precision=bf16``
(:func:`autocast_for`).

``frozen`` parameters (the encoder during fine-tuning's first steps) get their
gradients dropped before the update while ``scheduler.last_epoch < frozen_until``;
Adam skips parameters without a gradient, so their moments stay untouched.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from bigssl.models.parallelize import unwrap
from bigssl.training.optim import OptimConfig

FRAME_SECONDS = 0.01  # 10 ms fbank hop: frames -> audio seconds


def to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    feats = torch.as_tensor(batch["feats"]).to(device, non_blocking=True)
    lengths = torch.as_tensor(batch["lengths"]).to(device, non_blocking=True)
    return feats, lengths


def _sync_context(model: nn.Module, sync: bool):
    """Skip the gradient all-reduce on all but the last micro-batch."""
    if isinstance(model, nn.parallel.DistributedDataParallel) and not sync:
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        model.set_requires_gradient_sync(sync)
    return nullcontext()


def autocast_for(device: torch.device | str, precision: str = "auto"):
    """The autocast context of a forward on ``device`` at ``precision`` (auto|bf16|fp32)."""
    device = torch.device(device)
    if precision == "fp32" or (precision == "auto" and device.type != "cuda"):
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


class Stepper:
    """Owns model, optimizer and schedule; ``step(micro_batches)`` is one optimizer update."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        cfg: OptimConfig,
        device: torch.device,
        extra_keys: tuple[str, ...] = (),
        frozen: list[nn.Parameter] | None = None,
        frozen_until: int = 0,
    ):
        self.model, self.optimizer, self.scheduler = model, optimizer, scheduler
        self.cfg, self.device = cfg, device
        self.precision = cfg.precision
        self.extra_keys = extra_keys
        self.frozen, self.frozen_until = frozen or [], frozen_until

    def step(self, micro_batches: list[dict[str, Any]]) -> dict[str, float]:
        self.model.train()
        totals: dict[str, float] = {}
        for index, batch in enumerate(micro_batches):
            feats, lengths = to_device(batch, self.device)
            with _sync_context(self.model, index == len(micro_batches) - 1):
                with autocast_for(self.device, self.precision):
                    extra = {
                        k: torch.as_tensor(batch[k]).to(self.device, non_blocking=True)
                        for k in self.extra_keys
                    }
                    out = self.model(feats, lengths, **extra)
                (out["loss"] / len(micro_batches)).backward()
            for name, value in out.items():
                totals[name] = totals.get(name, 0.0) + float(torch.as_tensor(value).detach()) / len(
                    micro_batches
                )
        if self.scheduler.last_epoch < self.frozen_until:
            for p in self.frozen:
                p.grad = None
        if self.cfg.clip_norm:
            grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_norm)
            totals["grad_norm"] = float(
                grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            )
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if hasattr(unwrap(self.model), "set_step"):  # anneals wav2vec2's Gumbel temperature
            unwrap(self.model).set_step(self.scheduler.last_epoch)
        totals["lr"] = self.optimizer.param_groups[0]["lr"]
        totals["audio_s"] = float(sum(np.sum(b["lengths"]) for b in micro_batches)) * FRAME_SECONDS
        return totals
