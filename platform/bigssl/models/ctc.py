"""CTC fine-tuning head on a (pre-trained) Conformer encoder.

Dimension legend: B batch, T input frames, F feature bins, T' subsampled frames,
D model width, V vocabulary (index 0 is the CTC blank), S target tokens.

Design decisions:
- The head is one ``nn.Linear(d_model, vocab_size)``; the model wraps any encoder
  with ``forward(features, lengths) -> (encoded, out_lengths)``, so a
  pre-trained ``ssl_model.encoder`` drops straight in.
- The loss takes batch-major log-probs and transposes for ``F.ctc_loss``; it
  computes in float32 (CTC's forward-backward underflows in bf16) and, by default,
  zeroes infinite losses of utterances too short for their transcript rather
  than letting one bad sample poison a step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bigssl.models.conformer import ConformerConfig, ConformerEncoder

BLANK_ID = 0


class CTCHead(nn.Linear):
    """encoded (B, T', D) -> logits (B, T', V)."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__(d_model, vocab_size)


class CTCModel(nn.Module):
    """Encoder + CTC head: features (B, T, F) -> log-probs (B, T', V), out_lengths (B,)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> log_probs (B, T', V) float32, out_lengths (B,)."""
        encoded, out_lengths = self.encoder(features, lengths)
        return torch.log_softmax(self.head(encoded).float(), dim=-1), out_lengths


def build_ctc_model(encoder_cfg: ConformerConfig, vocab_size: int) -> CTCModel:
    """A fresh :class:`CTCModel`; for fine-tuning pass a pre-trained encoder instead."""
    return CTCModel(ConformerEncoder(encoder_cfg), CTCHead(encoder_cfg.d_model, vocab_size))


def ctc_loss(
    log_probs: torch.Tensor,
    out_lengths: torch.Tensor,
    targets: torch.Tensor,
    target_lengths: torch.Tensor,
    reduction: str = "mean",
    zero_infinity: bool = True,
) -> torch.Tensor:
    """CTC loss with blank 0.

    log_probs (B, T', V), out_lengths (B,), targets (B, S) padded token ids (no
    blanks), target_lengths (B,). ``reduction="mean"`` divides each utterance's
    loss by its target length, then averages (``F.ctc_loss`` semantics).
    """
    return F.ctc_loss(
        log_probs.float().transpose(0, 1),  # F.ctc_loss is time-major: (T', B, V)
        targets,
        out_lengths,
        target_lengths,
        blank=BLANK_ID,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
