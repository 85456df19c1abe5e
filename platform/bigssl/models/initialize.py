"""Weight initialisation that runs again after ``to_empty``: the meta-device build's second half.

A model built under ``torch.device("meta")`` has shapes and no values; after
``fully_shard`` and ``to_empty(device)`` (torchtitan's pattern) its parameters and
buffers hold garbage until :func:`init_weights` fills them.

Design decisions:
- Bit-identical to eager construction: for one CPU RNG state, ``Model(cfg)`` and
  meta build + ``to_empty`` + :func:`init_weights` give the same tensors and leave the
  RNG in the same state, so seeds, checkpoints and the rest of a run's random stream
  (dropout, masks) do not depend on which path built the model.
- Order: each module's own initialiser (``reset_parameters``, or the method torch's
  ``MultiheadAttention`` and our frozen quantizer use) runs after its children's,
  children in registration order. That is the order constructors draw in: a child is
  built (and initialised) before the parent's ``__init__`` goes on, and the parents
  that re-initialise after building children (``MultiheadAttention``,
  ``GumbelVectorQuantizer``, ``Wav2Vec2Model``) do so at the end of ``__init__``.
- Values are drawn on the CPU into full-size temporary tensors, one module at a time,
  then copied into the real (device, possibly FSDP-sharded) tensors. Drawing on the
  device would use the device's RNG and sharded draws depend on the world size; both
  would break the equality above. The cost is one module's full tensors on the host
  at a time (at most 151 MB for the ``g`` preset) and every rank drawing the whole
  model's numbers, as every rank did when it built the model eagerly.
- A module holding tensors of its own but no known initialiser is an error, so a new
  module cannot silently keep ``to_empty``'s garbage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

# Looked up in this order on each module: torch's public name first, then the private
# one MultiheadAttention uses (it has no public one), then the frozen quantizer's.
_INITIALISERS = ("reset_parameters", "_reset_parameters", "reset_buffers")


@contextmanager
def drawing_from(generator: torch.Generator | None) -> Iterator[None]:
    """Within the block, the default CPU generator continues ``generator``'s stream, which
    is then advanced as if it had drawn; ``None``: the default generator as it is.

    torch's ``reset_parameters`` take no generator, so the stream is lent to them.
    """
    if generator is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.set_rng_state(generator.get_state())
        try:
            yield
        finally:
            generator.set_state(torch.get_rng_state())


def init_weights(root: nn.Module, generator: torch.Generator | None = None) -> None:
    """Fill every parameter and buffer under ``root`` as constructing it eagerly did.

    Draws from ``generator`` (see :func:`drawing_from`), else from the default CPU
    generator. Works on CPU or device tensors and on FSDP2-sharded (DTensor) parameters.
    """
    with drawing_from(generator), torch.no_grad():
        _init_tree(root)


def _init_tree(module: nn.Module) -> None:
    for child in module.children():
        _init_tree(child)
    own = _initialiser(module)
    if own is None:
        tensors = [name for name, _ in _own_tensors(module)]
        if tensors:
            raise TypeError(
                f"{type(module).__name__} holds {', '.join(tensors)} but has no "
                f"initialiser ({' / '.join(_INITIALISERS)}); init_weights cannot fill it"
            )
        return
    with _host_twins(module):
        own()


def _initialiser(module: nn.Module) -> Callable[[], None] | None:
    for name in _INITIALISERS:
        method = getattr(module, name, None)
        if callable(method):
            return method
    return None


def _own_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]


@contextmanager
def _host_twins(module: nn.Module) -> Iterator[None]:
    """Swap the tensors of ``module`` and of its direct children for empty full-size CPU
    twins; afterwards copy back the twins the block wrote to (their version counter
    moved) and restore the originals.

    Children are included because parents initialise children's tensors
    (``MultiheadAttention`` zeroes ``out_proj.bias``, ``GumbelVectorQuantizer`` redraws
    ``weight_proj``); deeper tensors are not swapped (a root module would otherwise get
    twins of the whole model), and a write to one is an error. Untouched twins are not
    copied: ``out_proj.weight`` keeps what its own initialiser gave it. An initialiser
    must therefore overwrite any tensor it writes to whole, as torch's all do.
    """
    swapped = []
    for owner in (module, *module.children()):
        for table in (owner._parameters, owner._buffers):
            for name, tensor in table.items():
                if tensor is None:
                    continue
                twin = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
                if isinstance(tensor, nn.Parameter):
                    twin = nn.Parameter(twin, requires_grad=tensor.requires_grad)
                table[name] = twin
                swapped.append((table, name, tensor, twin, twin._version))
    deeper = [(name, t, t._version) for c in module.children() for name, t in _deep_tensors(c)]
    try:
        yield
        for table, name, tensor, twin, version in swapped:
            if table[name] is not twin:
                raise TypeError(f"an initialiser replaced {name!r} instead of filling it")
            if twin._version != version:
                _fill(tensor, twin)
        for name, tensor, version in deeper:
            if tensor._version != version:
                raise TypeError(
                    f"{type(module).__name__}'s initialiser wrote {name!r}, below its children"
                )
    finally:
        for table, name, tensor, _, _ in swapped:
            table[name] = tensor


def _deep_tensors(child: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Tensors below ``child``'s own, i.e. of its children and further down."""
    for grandchild_name, grandchild in child.named_children():
        yield from grandchild.named_parameters(prefix=grandchild_name)
        yield from grandchild.named_buffers(prefix=grandchild_name)


def _fill(target: torch.Tensor, values: torch.Tensor) -> None:
    """Copy full-size CPU ``values`` into ``target``, or into this rank's shard of it."""
    if isinstance(target, DTensor):
        # src_data_rank=None: each rank slices its own copy, no communication; every
        # rank drew the same full tensor only if it was seeded alike, as with eager
        # construction, where fully_shard also keeps each rank's own slice.
        local = target.to_local()
        values = values.to(local.device)
        shard = distribute_tensor(values, target.device_mesh, target.placements, src_data_rank=None)
        local.copy_(shard.to_local())
    else:
        target.copy_(values)


class InitWeights:
    """Mixin for the model classes: ``model.init_weights(generator)`` (see :func:`init_weights`)."""

    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """Fill every parameter and buffer below this module as its eager construction did."""
        init_weights(self, generator)  # type: ignore[arg-type]  # mixed into nn.Modules only
