"""What every recogniser head shares: per-utterance input normalisation, SpecAugment, the encoder."""

from __future__ import annotations

import torch
from torch import nn

from bigssl.audio.specaugment import SpecAugment, SpecAugmentConfig
from bigssl.models.conformer import normalize_per_utterance
from bigssl.models.initialize import InitWeights


class EncoderWithHead(InitWeights, nn.Module):
    """``.encoder`` + ``.head``: the two parameter groups fine-tuning trains, the two
    prefixes of a checkpoint's state dict (SpecAugment has no parameters)."""

    def __init__(
        self,
        encoder: nn.Module,
        head: nn.Module,
        specaugment: SpecAugmentConfig | None = None,
        normalize_input: bool = True,
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.specaugment = SpecAugment(specaugment or SpecAugmentConfig(0, 0, 0, 0.0))
        self.normalize_input = normalize_input

    def encode(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> encoded (B, T', D), out_lengths (B,);
        SpecAugment only in training mode."""
        if self.normalize_input:
            features = normalize_per_utterance(features, lengths)
        features = self.specaugment(features, lengths)
        return self.encoder(features, lengths)
