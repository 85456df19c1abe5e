"""SpecAugment on padded log-mel batches, the noise of CTC fine-tuning and noisy-student training.

BigSSL fine-tunes with frequency masks of width up to F=27 and time masks whose
width scales with the utterance (at most 5 % of its frames each, "adaptive"
SpecAugment of Park et al. 2020); the counts are config.

Design decision: written here rather than with ``torchaudio.transforms.TimeMasking``
because torchaudio bounds the mask by a proportion of the *padded* length, so in
a duration-bucketed batch a short utterance could be masked far beyond 5 % of
its own frames, and masks could land in padding. Each mask here is drawn per
utterance within its own length, vectorised over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from bigssl.config import Config, check


@dataclass
class SpecAugmentConfig(Config):
    freq_masks: int = 2  # frequency masks per utterance (0 = off)
    freq_width: int = 27  # maximum width of a frequency mask in bins (F)
    time_masks: int = 10  # time masks per utterance (0 = off)
    time_ratio: float = 0.05  # maximum width of a time mask as a fraction of the utterance

    def validate(self) -> None:
        check(self.freq_masks >= 0, "freq_masks", "must be >= 0")
        check(self.freq_width >= 0, "freq_width", "must be >= 0")
        check(self.time_masks >= 0, "time_masks", "must be >= 0")
        check(0.0 <= self.time_ratio <= 1.0, "time_ratio", "must be in [0, 1]")

    @property
    def enabled(self) -> bool:
        return bool((self.freq_masks and self.freq_width) or (self.time_masks and self.time_ratio))


def _band_mask(
    size: int, widths: torch.Tensor, limits: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    """(B,) maximum widths and (B,) extents -> (B, size) True inside one random band each."""
    u = torch.rand(widths.shape[0], 2, device=widths.device, generator=generator)
    width = (u[:, 0] * (widths + 1).float()).floor().long().clamp(max=limits)
    start = (u[:, 1] * (limits - width + 1).float()).floor().long()
    positions = torch.arange(size, device=widths.device)
    return (positions >= start[:, None]) & (positions < (start + width)[:, None])


def spec_augment(
    features: torch.Tensor,
    lengths: torch.Tensor,
    cfg: SpecAugmentConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """features (B, T, F), lengths (B,) -> masked copy; masked values are 0 (the mean after
    per-utterance normalisation); padding is never the target of a mask."""
    batch, frames, bins = features.shape
    keep = torch.ones(batch, frames, bins, dtype=torch.bool, device=features.device)
    bins_t = torch.full((batch,), bins, device=features.device, dtype=torch.long)
    for _ in range(cfg.freq_masks if cfg.freq_width else 0):
        band = _band_mask(bins, torch.full_like(bins_t, cfg.freq_width), bins_t, generator)
        keep &= ~band[:, None, :]
    lengths = lengths.to(features.device).long()
    max_width = (lengths.float() * cfg.time_ratio).floor().long()
    for _ in range(cfg.time_masks if cfg.time_ratio else 0):
        band = _band_mask(frames, max_width, lengths, generator)
        keep &= ~band[:, :, None]
    return features * keep


class SpecAugment(nn.Module):
    """Module form: masks only in training mode; no parameters, so checkpoints are unchanged."""

    def __init__(self, cfg: SpecAugmentConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if not self.training or not self.cfg.enabled:
            return features
        return spec_augment(features, lengths, self.cfg)
