"""Conformer encoder for 80-dim log-mel features, as in BigSSL (Zhang et al. 2021).

Dimension legend: B batch, T input frames (10 ms), T' subsampled frames
(T / subsampling_factor), F feature bins, D model width.

Design decisions:
- Architecture only: no masking, losses or sharding here. ``layers`` is a plain
  ``nn.ModuleList`` of torchaudio ``ConformerLayer`` so that a separate
  ``parallelize`` step can ``fully_shard`` each layer.
- The encoder is split in two calls that wav2vec 2.0 needs separately:
  :meth:`ConformerEncoder.subsample` (conv2d subsampling + projection, the frames
  the masker sees) and :meth:`ConformerEncoder.forward_layers` (the context network).
- No positional encoding: BigSSL dropped relative position embeddings; the
  depthwise convolution in each block carries position.
- ``activation_checkpointing`` keeps only each block's input in training and
  recomputes the block in backward (``torch.utils.checkpoint``, non-reentrant, which
  composes with FSDP2's per-layer all-gathers): saved activations grow with blocks x
  frames x width, and FSDP shards parameters, not activations. The RNG is replayed,
  so dropout matches; BatchNorm's running statistics are restored after the
  recomputation, else every step would update them twice.
- Padding never leaks into valid frames: the subsampling zeroes frames past each
  utterance's length after every conv, and each block zeroes padded frames before
  its depthwise conv (torchaudio's block does not). A padded utterance therefore
  encodes exactly as it does alone, in eval mode. In train mode, BatchNorm in the
  conv module still counts padded frames in its batch statistics.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint
from torchaudio.models.conformer import ConformerLayer

from bigssl.config import Config, check
from bigssl.models.initialize import InitWeights


@dataclass
class ConformerConfig(Config):
    """Sizes of a :class:`ConformerEncoder`; defaults are the ``tiny`` preset."""

    input_dim: int = 80
    """Feature bins per input frame (80-dim log-mel)."""
    d_model: int = 144
    """Width of every Conformer block."""
    num_layers: int = 4
    """Number of Conformer blocks."""
    num_heads: int = 4
    """Self-attention heads per block; must divide ``d_model``."""
    ffn_dim: int = 576
    """Hidden width of each of the two feed-forward modules per block."""
    depthwise_conv_kernel_size: int = 15
    """Kernel of the depthwise conv in each block; odd, so padding is symmetric."""
    dropout: float = 0.1
    """Dropout after the input projection and inside every block."""
    subsampling_factor: int = 4
    """Time reduction: 2, 4 (two stride-2 conv2d) or 8 (three, as in FastConformer)."""
    subsampling_channels: int = 144
    """Channels of the conv2d subsampling layers."""
    convolution_first: bool = False
    """Run the conv module before self-attention in each block."""
    activation_checkpointing: bool = False
    """Recompute each block in backward instead of keeping its activations (training only):
    less memory for one more forward pass of every block."""

    def validate(self) -> None:
        for name in ("input_dim", "d_model", "num_layers", "num_heads", "ffn_dim"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.subsampling_channels >= 1, "subsampling_channels", "must be >= 1")
        check(
            self.d_model % self.num_heads == 0,
            "d_model",
            f"{self.d_model} is not divisible by num_heads={self.num_heads}",
        )
        k = self.depthwise_conv_kernel_size
        check(k >= 1 and k % 2 == 1, "depthwise_conv_kernel_size", f"must be odd and >= 1, got {k}")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(
            self.subsampling_factor in _NUM_CONVS,
            "subsampling_factor",
            f"must be 2, 4 or 8, got {self.subsampling_factor}",
        )
        check(
            isinstance(self.activation_checkpointing, bool),
            "activation_checkpointing",
            f"must be true or false, got {self.activation_checkpointing!r}",
        )

    def output_frames(self, frames: int) -> int:
        """Encoder frames for ``frames`` input frames: ceil-halved once per subsampling conv."""
        for _ in range(_NUM_CONVS[self.subsampling_factor]):
            frames = (frames + 1) // 2
        return frames


_NUM_CONVS = {2: 1, 4: 2, 8: 3}  # subsampling factor -> stride-2 conv2d layers


def lengths_to_padding_mask(lengths: torch.Tensor, max_length: int) -> torch.Tensor:
    """(B,) lengths -> (B, max_length) bool mask, True at padded frames."""
    positions = torch.arange(max_length, device=lengths.device)
    return positions.unsqueeze(0) >= lengths.unsqueeze(1)


def normalize_per_utterance(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, F) -> (B, T, F): each bin at zero mean, unit variance over valid frames."""
    valid = (~lengths_to_padding_mask(lengths, features.shape[1])).unsqueeze(-1).float()
    count = valid.sum(dim=1, keepdim=True).clamp(min=1.0)
    mean = (features * valid).sum(dim=1, keepdim=True) / count
    variance = ((features - mean) ** 2 * valid).sum(dim=1, keepdim=True) / count
    # Padded frames stay zero, so nothing leaks into the first conv's boundary.
    return (features - mean) * torch.rsqrt(variance + 1e-5) * valid


def _halve(lengths: torch.Tensor) -> torch.Tensor:
    # A kernel-3, stride-2, padding-1 conv maps n frames to ceil(n / 2).
    return torch.div(lengths + 1, 2, rounding_mode="floor")


class ConvSubsampling(nn.Module):
    """Stride-2 3x3 conv2d layers with ReLU, then a linear projection to ``d_model``.

    Shapes: (B, T, F) -> (B, T', D) with T' = ceil(T / 2**num_convs).
    """

    def __init__(self, input_dim: int, channels: int, d_model: int, num_convs: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(1 if i == 0 else channels, channels, 3, stride=2, padding=1)
            for i in range(num_convs)
        )
        freq = input_dim
        for _ in range(num_convs):
            freq = (freq + 1) // 2
        self.projection = nn.Linear(channels * freq, d_model)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input lengths -> (B,) lengths after subsampling."""
        for _ in self.convs:
            lengths = _halve(lengths)
        return lengths

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> frames (B, T', D), lengths (B,)."""
        mask = lengths_to_padding_mask(lengths, features.shape[1])
        x = features.masked_fill(mask.unsqueeze(-1), 0.0).unsqueeze(1)  # (B, 1, T, F)
        for conv in self.convs:
            x = torch.relu(conv(x))  # (B, C, T_i, F_i)
            lengths = _halve(lengths)
            # Zero the frames past each length: padding=1 lets the next conv's last
            # valid output read one frame beyond the end, which must look like the
            # zero padding an unpadded utterance would get.
            mask = lengths_to_padding_mask(lengths, x.shape[2])
            x = x.masked_fill(mask[:, None, :, None], 0.0)
        batch, channels, frames, freq = x.shape
        x = x.transpose(1, 2).reshape(batch, frames, channels * freq)
        return self.projection(x), lengths


class MaskDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training mask is ``torch.rand(...) >= p``; elsewhere the parent's.

    Hand-written because torch's CPU ``bernoulli_`` (behind ``nn.Dropout``) draws its
    mask serially: on the 2-core dev machine it took 18 ms per 2.8 M elements against
    9 ms for ``rand`` + compare, and dropout was ~20 % of a tiny CTC step in a py-spy
    profile of a Ray Train worker. Same distribution, same 1 / (1 - p) scaling; CUDA
    keeps torch's fused kernel.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or input.device.type != "cpu":
            return super().forward(input)
        keep = torch.rand(input.shape, dtype=torch.float32) >= self.p
        return input * keep * (1.0 / (1.0 - self.p))


def use_mask_dropout(root: nn.Module) -> None:
    """Replace every plain ``nn.Dropout`` under ``root`` by :class:`MaskDropout` (no
    parameters, so state dicts are unchanged)."""
    for parent in list(root.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, MaskDropout(child.p))


class PaddingAwareConformerLayer(ConformerLayer):
    """torchaudio's ``ConformerLayer`` that keeps padded frames out of its depthwise conv.

    Same parameters and state-dict keys as the parent; only ``forward`` differs.
    """

    def _convolve(self, x: torch.Tensor, padding_mask: torch.Tensor | None) -> torch.Tensor:
        """x (T', B, D) -> (T', B, D): residual conv module with padded frames zeroed."""
        module = self.conv_module
        y = module.layer_norm(x).permute(1, 2, 0)  # (B, D, T')
        pointwise, glu, *rest = module.sequential
        y = glu(pointwise(y))
        if padding_mask is not None:
            # LayerNorm bias and pointwise bias make padded frames non-zero; zero
            # them so valid frames near the end see what an unpadded utterance sees.
            y = y.masked_fill(padding_mask.unsqueeze(1), 0.0)
        for layer in rest:
            y = layer(y)
        return x + y.permute(2, 0, 1)

    def forward(self, input: torch.Tensor, key_padding_mask: torch.Tensor | None) -> torch.Tensor:
        """input (T', B, D), key_padding_mask (B, T') True at padding -> (T', B, D)."""
        x = self.ffn1(input) * 0.5 + input
        if self.convolution_first:
            x = self._convolve(x, key_padding_mask)
        residual = x
        y = self.self_attn_layer_norm(x)
        y, _ = self.self_attn(
            query=y, key=y, value=y, key_padding_mask=key_padding_mask, need_weights=False
        )
        x = self.self_attn_dropout(y) + residual
        if not self.convolution_first:
            x = self._convolve(x, key_padding_mask)
        x = self.ffn2(x) * 0.5 + x
        return self.final_layer_norm(x)


class ConformerEncoder(InitWeights, nn.Module):
    """Conv2d subsampling + Conformer blocks.

    ``forward(features (B, T, F), lengths (B,)) -> (encoded (B, T', D), out_lengths (B,))``;
    frames at ``t >= out_lengths`` are zero.
    """

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.cfg = cfg
        self.subsampling = ConvSubsampling(
            cfg.input_dim, cfg.subsampling_channels, cfg.d_model, _NUM_CONVS[cfg.subsampling_factor]
        )
        self.input_dropout = nn.Dropout(cfg.dropout)
        self.layers = nn.ModuleList(
            PaddingAwareConformerLayer(
                cfg.d_model,
                cfg.ffn_dim,
                cfg.num_heads,
                cfg.depthwise_conv_kernel_size,
                dropout=cfg.dropout,
                convolution_first=cfg.convolution_first,
            )
            for _ in range(cfg.num_layers)
        )
        use_mask_dropout(self)

    @property
    def d_model(self) -> int:
        return self.cfg.d_model

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """(B,) input frame counts -> (B,) subsampled frame counts, ceil(T / factor)."""
        return self.subsampling.output_lengths(lengths)

    def subsample(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> frames (B, T', D), out_lengths (B,).

        The frames the wav2vec 2.0 masker replaces, before the Conformer blocks;
        padded frames are zero.
        """
        frames, out_lengths = self.subsampling(features, lengths)
        frames = self.input_dropout(frames)
        padding_mask = lengths_to_padding_mask(out_lengths, frames.shape[1])
        return frames.masked_fill(padding_mask.unsqueeze(-1), 0.0), out_lengths

    def forward_layers(self, frames: torch.Tensor, padding_mask: torch.Tensor) -> torch.Tensor:
        """frames (B, T', D), padding_mask (B, T') True at padding -> (B, T', D)."""
        x = frames.transpose(0, 1)  # torchaudio blocks are time-major: (T', B, D)
        recompute = self.cfg.activation_checkpointing and self.training and torch.is_grad_enabled()
        for layer in self.layers:
            if recompute:
                x = checkpoint(
                    layer,
                    x,
                    padding_mask,
                    use_reentrant=False,
                    context_fn=partial(_recomputation_keeps_buffers, layer),
                )
            else:
                x = layer(x, padding_mask)
        return x.transpose(0, 1).masked_fill(padding_mask.unsqueeze(-1), 0.0)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F) float, lengths (B,) long -> (B, T', D), out_lengths (B,)."""
        frames, out_lengths = self.subsample(features, lengths)
        padding_mask = lengths_to_padding_mask(out_lengths, frames.shape[1])
        return self.forward_layers(frames, padding_mask), out_lengths


def _recomputation_keeps_buffers(
    layer: nn.Module,
) -> tuple[AbstractContextManager[None], AbstractContextManager[None]]:
    """``checkpoint``'s (forward, recomputation) contexts for one block."""
    return nullcontext(), _buffers_restored(layer)


@contextmanager
def _buffers_restored(module: nn.Module) -> Iterator[None]:
    # The recomputation runs the block in training mode again, so BatchNorm would fold
    # the same batch into its running statistics (and count it) a second time.
    saved = [(buffer, buffer.clone()) for buffer in module.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


def count_parameters(module: nn.Module) -> int:
    """Number of parameter elements (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())
