"""Sharding applied after the model is built: the only place that calls ``fully_shard``.

FSDP2 (torchtitan's pattern): ``fully_shard`` each Conformer layer, then the root,
so parameters are all-gathered one layer at a time and memory scales to the
``g`` preset. DDP for small models. On GPU, FSDP2 computes in bf16 and reduces
gradients in fp32. ``fully_shard`` works on CPU with gloo (Ray Train's
``prepare_model(parallel_strategy="fsdp")`` refuses CPU), which is how the tests
run it.

:func:`build_parallel` builds a model for training. Under FSDP it builds on the meta
device, shards, then materialises only this rank's shards (``to_empty``) and fills
them (``init_weights``): eight ranks of a node building the 7.8 B ``g`` model in
fp32 on the host need 8 x 31 GB of host memory before any of it is sharded. The
values equal an eager build's (:mod:`bigssl.models.initialize`), so the two paths
train alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

from bigssl.models.initialize import drawing_from, init_weights

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


def shards(strategy: Strategy) -> bool:
    """Whether :func:`parallelize` applies FSDP2 for ``strategy`` in this process (a
    process group exists)."""
    return strategy == "fsdp" and dist.is_initialized()


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


def build_parallel(
    factory: Callable[[], nn.Module],
    strategy: Strategy,
    device: torch.device,
    generator: torch.Generator | None = None,
    after_init: Callable[[nn.Module], None] | None = None,
) -> nn.Module:
    """``parallelize(factory(), strategy, device)``, without ever holding the whole model
    when it shards.

    ``factory`` builds the model (its classes have ``init_weights``); its weights are
    drawn from ``generator``, else from the default CPU generator, alike on both paths.
    ``after_init(model)`` runs once the weights are set (e.g. loading pre-trained
    encoder weights): on the unwrapped CPU model without FSDP, on the sharded model with.
    """
    if not shards(strategy):
        with drawing_from(generator):
            model = factory()
        if after_init is not None:
            after_init(model)
        return parallelize(model, strategy, device)
    with torch.device("meta"):
        model = factory()
    model = apply_fsdp_to_model(model, bf16=device.type == "cuda")
    model.to_empty(device=device)
    init_weights(model, generator)
    if after_init is not None:
        after_init(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The module holding the model's own methods (``set_step``), under DDP or not."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
