"""Sharding applied after the model is built: the only place that calls ``fully_shard``.

FSDP2 (torchtitan's pattern): ``fully_shard`` each Conformer layer, then the root,
so parameters are all-gathered one layer at a time and memory scales to the
``g`` preset. DDP for small models. On GPU, FSDP2 computes in bf16 and reduces
gradients in fp32. ``fully_shard`` works on CPU with gloo (Ray Train's
``prepare_model(parallel_strategy="fsdp")`` refuses CPU), which is how the tests
run it.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

Strategy = Literal["fsdp", "ddp", "none"]


def apply_fsdp_to_model(
    model: nn.Module, bf16: bool, reshard_after_forward: bool = True
) -> nn.Module:
    """Shard ``model.encoder.layers`` one by one, then the whole model."""
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    for layer in model.encoder.layers:
        fully_shard(layer, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mp_policy=policy, reshard_after_forward=reshard_after_forward)
    return model


def parallelize(model: nn.Module, strategy: Strategy, device: torch.device) -> nn.Module:
    """Move to ``device`` and wrap for data parallel training; a no-op without a process group."""
    model = model.to(device)
    if (
        strategy == "none"
        or not dist.is_initialized()
        or dist.get_world_size() == 1
        and strategy == "ddp"
    ):
        return model
    if strategy == "fsdp":
        return apply_fsdp_to_model(model, bf16=device.type == "cuda")
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def unwrap(model: nn.Module) -> nn.Module:
    """The module holding the model's own methods (``set_step``), under DDP or not."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
