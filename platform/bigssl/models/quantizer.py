"""Quantizers that turn frames into discrete pre-training targets.

Dimension legend: N frames (any leading shape flattened), D input width,
G groups / codebooks, V entries per group, C codebook vector width.

Design decisions:
- :class:`GumbelVectorQuantizer` is wav2vec 2.0's product quantizer: G groups of V
  learned entries, chosen by a straight-through hard Gumbel-softmax whose
  temperature the caller anneals; the chosen entries are concatenated.
- :class:`RandomProjectionQuantizer` is BEST-RQ's: a random projection and a random
  codebook, both buffers (never trained), regenerated from ``seed`` by
  :meth:`RandomProjectionQuantizer.reset_buffers` -- so a model built on the meta
  device and materialised with ``to_empty`` gets the same targets back.
- :func:`perplexity` is the collapse monitor both objectives report.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from bigssl.models.initialize import InitWeights


def perplexity(probs: torch.Tensor) -> torch.Tensor:
    """Summed per-group perplexity of the mean distribution: probs (N, G, V) -> ().

    Ranges from G (every frame picks the same entry in each group) to G * V.
    """
    return _perplexity_of_mean(probs.float().mean(dim=0))


def perplexity_of_ids(ids: torch.Tensor, num_entries: int) -> torch.Tensor:
    """:func:`perplexity` of hard choices given as ids (N, G), without a one-hot."""
    counts = torch.zeros(ids.shape[1], num_entries, device=ids.device)
    counts.scatter_add_(1, ids.t(), torch.ones(ids.t().shape, device=ids.device))
    return _perplexity_of_mean(counts / max(ids.shape[0], 1))


def _perplexity_of_mean(mean: torch.Tensor) -> torch.Tensor:
    """(G, V) mean distribution per group -> () summed exp(entropy)."""
    entropy = -(mean * torch.log(mean + 1e-7)).sum(dim=-1)
    return torch.exp(entropy).sum()


class GumbelVectorQuantizer(InitWeights, nn.Module):
    """Product quantizer with G groups x V learned entries (wav2vec 2.0)."""

    def __init__(
        self,
        input_dim: int,
        num_groups: int,
        num_entries: int,
        codebook_dim: int,
        logit_scale: float,
    ):
        super().__init__()
        self.logit_scale = logit_scale
        self.num_groups = num_groups
        self.num_entries = num_entries
        self.weight_proj = nn.Linear(input_dim, num_groups * num_entries)
        self.codevectors = nn.Parameter(
            torch.empty(num_groups * num_entries, codebook_dim // num_groups)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Logits of std ``logit_scale`` on unit-variance input, whatever its width
        # (fairseq's unit-variance weights give sqrt(D)); uniform entries start distinct.
        nn.init.normal_(
            self.weight_proj.weight,
            mean=0.0,
            std=self.logit_scale * self.weight_proj.in_features**-0.5,
        )
        nn.init.zeros_(self.weight_proj.bias)
        nn.init.uniform_(self.codevectors)

    def forward(self, x: torch.Tensor, temperature: float) -> dict[str, torch.Tensor]:
        """x (N, D) -> quantized (N, C), codes (N, G), prob_perplexity, code_perplexity."""
        logits = self.weight_proj(x).float().view(-1, self.num_groups, self.num_entries)
        if self.training:
            # Straight-through: the forward pass picks one entry, gradients flow
            # through the tempered soft distribution.
            onehot = F.gumbel_softmax(logits, tau=temperature, hard=True)
        else:
            onehot = F.one_hot(logits.argmax(dim=-1), self.num_entries).to(logits.dtype)
        codes = onehot.argmax(dim=-1)  # (N, G)
        vectors = self.codevectors.view(self.num_groups, self.num_entries, -1)
        quantized = torch.einsum("ngv,gvc->ngc", onehot.to(vectors.dtype), vectors)
        return {
            "quantized": quantized.reshape(x.shape[0], -1),
            "codes": codes,
            "prob_perplexity": perplexity(torch.softmax(logits, dim=-1)),
            "code_perplexity": perplexity_of_ids(codes, self.num_entries),
        }


class RandomProjectionQuantizer(InitWeights, nn.Module):
    """Frozen random-projection quantizer (BEST-RQ): x (..., D) -> targets (..., G)."""

    def __init__(
        self,
        input_dim: int,
        codebook_dim: int,
        codebook_size: int,
        num_codebooks: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        self.seed = seed
        # Buffers, not parameters: no optimizer or gradient ever sees them, and
        # they still travel with the state dict and with .to(device).
        self.register_buffer("projection", torch.empty(num_codebooks, input_dim, codebook_dim))
        self.register_buffer("codebooks", torch.empty(num_codebooks, codebook_size, codebook_dim))
        self.reset_buffers()

    @torch.no_grad()
    def reset_buffers(self) -> None:
        """Regenerate projection and codebooks from ``seed`` (a no-op on meta)."""
        generator = torch.Generator().manual_seed(self.seed)
        num_codebooks, input_dim, codebook_dim = self.projection.shape
        bound = math.sqrt(6.0 / (input_dim + codebook_dim))  # Xavier uniform
        # Drawn on the CPU: a seeded CPU generator gives the same values whatever
        # device (or meta-device context) the module is built under.
        cpu = {"generator": generator, "device": "cpu"}
        projection = (torch.rand(self.projection.shape, **cpu) * 2 - 1) * bound
        codebooks = F.normalize(torch.randn(self.codebooks.shape, **cpu), dim=-1)
        self.projection.copy_(projection)
        self.codebooks.copy_(codebooks)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., D) float -> (..., G) long ids of the nearest codebook entry."""
        projected = torch.einsum("...d,gdc->...gc", x.float(), self.projection.float())
        projected = F.normalize(projected, dim=-1)
        # Both sides are unit vectors, so the nearest entry in l2 is the one with
        # the largest dot product.
        scores = torch.einsum("...gc,gvc->...gv", projected, self.codebooks.float())
        return scores.argmax(dim=-1)
