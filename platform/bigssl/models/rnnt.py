"""RNN-T head on a (pre-trained) Conformer encoder: the paper's decoder, beside CTC.

Dimension legend: B batch, T input frames, T' subsampled frames, D model width,
U target tokens, P prediction-network width, J joint width, V vocabulary (id 0 is
the blank, as in CTC).

Design decisions:
- Same interfaces as :class:`~bigssl.models.ctc.CTCModel`: ``.encoder`` and ``.head``
  (here the prediction network + joiner), ``forward(features, lengths, targets,
  target_lengths)`` returns the Stepper's loss dict, so fine-tuning's parameter
  groups, freezing, sharding (``parallelize`` shards ``encoder.layers``) and
  checkpoints work unchanged, and a pre-trained encoder drops in the same way.
- The blank doubles as the start symbol of the prediction network (no extra id), so
  a tokenizer serves CTC and RNN-T alike.
- The loss is ``torchaudio.functional.rnnt_loss`` on raw joint logits (its fused
  log-softmax), in float32; each utterance's loss is divided by its target length,
  then averaged, as CTC's ``reduction="mean"`` does, so the two heads' losses and
  learning rates are on one scale.
- An auxiliary CTC loss on the encoder (``ctc_weight``, hybrid CTC/RNN-T training as in
  ESPnet and NeMo) makes the encoder learn acoustics from the first steps; without it,
  on a small corpus of a narrow grammar the prediction network learnt the text and
  the recogniser ignored the audio (measured on the TTS corpus, 300 steps: CER 0.87,
  CTC alone 0.29). The CTC layer is only a training aid; decoding uses the joiner.
- The joint tensor is (B, T', U+1, V): the bucket's frame budget bounds B x T', and
  with it the memory the loss needs; large vocabularies want smaller buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torchaudio.functional import rnnt_loss

from bigssl.audio.specaugment import SpecAugmentConfig
from bigssl.config import Config, check
from bigssl.models.base import EncoderWithHead
from bigssl.models.conformer import ConformerConfig, ConformerEncoder
from bigssl.models.ctc import BLANK_ID, ctc_loss
from bigssl.models.initialize import InitWeights


@dataclass
class RNNTConfig(Config):
    """Sizes of the RNN-T prediction network and joiner."""

    pred_dim: int = 256
    """Embedding and LSTM width of the prediction network."""
    pred_layers: int = 1
    """LSTM layers of the prediction network."""
    joint_dim: int = 256
    """Width of the joiner's hidden layer."""
    dropout: float = 0.1
    """Dropout on the prediction network's input and output."""
    ctc_weight: float = 0.3
    """Weight of the auxiliary CTC loss on the encoder (0 = pure RNN-T)."""
    max_symbols_per_frame: int = 10
    """Greedy decoding's cap on tokens emitted at one encoder frame."""

    def validate(self) -> None:
        for name in ("pred_dim", "pred_layers", "joint_dim", "max_symbols_per_frame"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")
        check(
            0.0 <= self.ctc_weight < 1.0, "ctc_weight", f"must be in [0, 1), got {self.ctc_weight}"
        )


class Predictor(InitWeights, nn.Module):
    """Previous tokens (B, U) -> (B, U, P), LSTM state; token 0 (blank) is the start."""

    def __init__(self, vocab_size: int, cfg: RNNTConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, cfg.pred_dim)
        self.lstm = nn.LSTM(cfg.pred_dim, cfg.pred_dim, cfg.pred_layers, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, tokens: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.lstm(self.dropout(self.embed(tokens)), state)
        return self.dropout(out), state


class Joiner(InitWeights, nn.Module):
    """encoded (B, T', D) + predicted (B, U+1, P) -> logits (B, T', U+1, V).

    ``enc`` and ``pred`` project separately so that decoding projects each side once.
    """

    def __init__(self, d_model: int, pred_dim: int, joint_dim: int, vocab_size: int):
        super().__init__()
        self.enc = nn.Linear(d_model, joint_dim)
        self.pred = nn.Linear(pred_dim, joint_dim, bias=False)
        self.out = nn.Linear(joint_dim, vocab_size)

    def join(self, enc_proj: torch.Tensor, pred_proj: torch.Tensor) -> torch.Tensor:
        """Projected sides that broadcast against each other -> logits."""
        return self.out(torch.tanh(enc_proj + pred_proj))

    def forward(self, encoded: torch.Tensor, predicted: torch.Tensor) -> torch.Tensor:
        return self.join(self.enc(encoded)[:, :, None], self.pred(predicted)[:, None])


class RNNTHead(InitWeights, nn.Module):
    def __init__(self, d_model: int, vocab_size: int, cfg: RNNTConfig):
        super().__init__()
        self.cfg = cfg
        self.predictor = Predictor(vocab_size, cfg)
        self.joiner = Joiner(d_model, cfg.pred_dim, cfg.joint_dim, vocab_size)
        self.ctc = nn.Linear(d_model, vocab_size) if cfg.ctc_weight > 0 else None


class RNNTModel(EncoderWithHead):
    """Encoder + RNN-T head. ``encode`` gives (encoded, out_lengths) for decoding; with
    ``targets``, ``forward`` returns the training dict (``loss``)."""

    def forward(
        self,
        features: torch.Tensor,
        lengths: torch.Tensor,
        targets: torch.Tensor | None = None,
        target_lengths: torch.Tensor | None = None,
    ):
        encoded, out_lengths = self.encode(features, lengths)
        if targets is None:
            return encoded, out_lengths
        # rnnt_loss wants the padded sizes to be exactly the longest lengths
        encoded = encoded[:, : int(out_lengths.max())]
        targets = targets[:, : int(target_lengths.max())]
        start = torch.full_like(targets[:, :1], BLANK_ID)
        predicted, _ = self.head.predictor(torch.cat([start, targets], dim=1))
        logits = self.head.joiner(encoded, predicted).float()
        per_utterance = rnnt_loss(
            logits,
            targets.int(),
            out_lengths.int(),
            target_lengths.int(),
            blank=BLANK_ID,
            reduction="none",
        )
        rnnt = (per_utterance / target_lengths.clamp(min=1)).mean()
        weight = self.head.cfg.ctc_weight
        if not weight:
            return {"loss": rnnt, "rnnt_loss": rnnt}
        log_probs = torch.log_softmax(self.head.ctc(encoded).float(), dim=-1)
        ctc = ctc_loss(log_probs, out_lengths, targets, target_lengths)
        return {"loss": (1 - weight) * rnnt + weight * ctc, "rnnt_loss": rnnt, "ctc_loss": ctc}


def build_rnnt_model(
    encoder_cfg: ConformerConfig,
    vocab_size: int,
    cfg: RNNTConfig | None = None,
    specaugment: SpecAugmentConfig | None = None,
) -> RNNTModel:
    """A fresh :class:`RNNTModel`; load pre-trained encoder weights into ``.encoder`` after."""
    cfg = cfg or RNNTConfig()
    return RNNTModel(
        ConformerEncoder(encoder_cfg), RNNTHead(encoder_cfg.d_model, vocab_size, cfg), specaugment
    )
