"""CTC fine-tuning head on a (pre-trained) Conformer encoder.

Dimension legend: B batch, T input frames, F feature bins, T' subsampled frames,
D model width, V vocabulary (index 0 is the CTC blank), S target tokens.

Design decisions:
- The head is one ``nn.Linear(d_model, vocab_size)``; the model wraps any encoder
  with ``forward(features, lengths) -> (encoded, out_lengths)``, so a
  pre-trained ``ssl_model.encoder`` drops straight in.
- Features are normalised per utterance before the encoder, as the wav2vec2
  pre-training does (``normalize_input``), so a pre-trained encoder sees the
  inputs it learnt on, at fine-tuning and at inference alike.
- ``forward(features, lengths, targets, target_lengths)`` returns the loss dict
  the shared :class:`~bigssl.training.step.Stepper` expects; SpecAugment (no
  parameters) is applied only in training mode, so the state dict of a trained
  model is exactly ``encoder.*`` + ``head.*`` and loads into inference unchanged.
- The loss takes batch-major log-probs and transposes for ``F.ctc_loss``; it
  computes in float32 (CTC's forward-backward underflows in bf16) and, by default,
  zeroes infinite losses of utterances too short for their transcript rather
  than letting one bad sample poison a step; ``too_short`` (the share of such
  utterances per step) and the fine-tuning summary's count make that visible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from bigssl.audio.specaugment import SpecAugmentConfig
from bigssl.models.base import EncoderWithHead
from bigssl.models.conformer import ConformerConfig, ConformerEncoder
from bigssl.models.initialize import InitWeights

BLANK_ID = 0


class CTCHead(InitWeights, nn.Linear):
    """encoded (B, T', D) -> logits (B, T', V)."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__(d_model, vocab_size)


class CTCModel(EncoderWithHead):
    """Encoder + CTC head: features (B, T, F) -> log-probs (B, T', V), out_lengths (B,).

    With ``targets`` the forward returns the training dict (``loss``, ``frames``).
    """

    def log_probs(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> log_probs (B, T', V) float32, out_lengths (B,)."""
        encoded, out_lengths = self.encode(features, lengths)
        return torch.log_softmax(self.head(encoded).float(), dim=-1), out_lengths

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
    ):
        log_probs, out_lengths = self.log_probs(features, lengths)
        if targets is None:
            return log_probs, out_lengths
        loss = ctc_loss(log_probs, out_lengths, targets, target_lengths)
        too_short = (out_lengths < frames_needed(targets, target_lengths)).float().mean()
        return {"loss": loss, "too_short": too_short}


def build_ctc_model(
    encoder_cfg: ConformerConfig,
    vocab_size: int,
    specaugment: SpecAugmentConfig | None = None,
) -> CTCModel:
    """A fresh :class:`CTCModel`; load pre-trained encoder weights into ``.encoder`` after."""
    return CTCModel(
        ConformerEncoder(encoder_cfg), CTCHead(encoder_cfg.d_model, vocab_size), specaugment
    )


def ctc_frames_needed(ids: list[int]) -> int:
    """The fewest frames a CTC alignment of ``ids`` needs (one transcript; see below)."""
    return len(ids) + sum(a == b for a, b in zip(ids, ids[1:], strict=False))


def frames_needed(targets: torch.Tensor, target_lengths: torch.Tensor) -> torch.Tensor:
    """(B, S) padded targets, (B,) lengths -> (B,) the fewest frames a CTC alignment needs:
    one per token plus a blank between each pair of equal neighbours ("three": 6)."""
    valid = torch.arange(targets.shape[1], device=targets.device) < target_lengths[:, None]
    repeats = (targets[:, 1:] == targets[:, :-1]) & valid[:, 1:]
    return target_lengths + repeats.sum(dim=1)


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
