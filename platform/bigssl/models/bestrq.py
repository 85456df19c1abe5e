"""BEST-RQ pre-training (Chiu et al. 2022), the objective behind Google's USM.

Dimension legend: B batch, T input frames, F feature bins, T' subsampled frames,
D model width, S subsampling factor, N masked frames, G codebooks, V entries.

Design decisions:
- Targets: S consecutive input frames are stacked (one stack per subsampled frame,
  so targets and encoder outputs align) and mapped to codebook ids by a frozen
  :class:`RandomProjectionQuantizer`; nothing in the quantizer is ever trained.
- The random projection needs normalised input (the paper calls this critical), so
  each bin is normalised over the utterance's valid frames before stacking unless
  ``normalize_quantizer_input`` is off (for pipelines that normalise globally).
- The encoder sees the same per-utterance normalised features (``normalize_input``),
  as the CTC model does at fine-tuning and inference, and as the masking noise
  (std 0.1) assumes: an encoder pre-trained on raw log-mel met inputs of another
  scale at fine-tuning and transferred worse than a random one.
- Masking draws spans in subsampled frames (one span = ``mask_length`` stacks)
  and replaces the covered *input* frames by N(0, ``noise_std``) noise; the
  defaults 0.04 / 10 at 40 ms equal the paper's 0.01 / 400 ms at 10 ms.
- The loss is cross-entropy of a linear softmax head on the encoder output,
  on masked frames only, averaged over the G codebooks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from bigssl.config import Config, check
from bigssl.models.conformer import (
    ConformerEncoder,
    lengths_to_padding_mask,
    normalize_per_utterance,
)
from bigssl.models.initialize import InitWeights
from bigssl.models.masking import compute_span_mask
from bigssl.models.quantizer import RandomProjectionQuantizer, perplexity_of_ids


@dataclass
class BestRQConfig(Config):
    """BEST-RQ objective; masking is in subsampled frames."""

    mask_prob: float = 0.04
    """Probability that a subsampled frame starts a masked span (~33 % masked)."""
    mask_length: int = 10
    """Subsampled frames per masked span (400 ms at 4x)."""
    min_masked_spans: int = 1
    """Spans every utterance gets at least."""
    noise_std: float = 0.1
    """Standard deviation of the noise that replaces masked input frames."""
    codebook_size: int = 8192
    """V: entries per random codebook."""
    codebook_dim: int = 16
    """Width of the random projection and of the codebook entries."""
    num_codebooks: int = 1
    """G: independent quantizers (and softmax heads); 1 in the paper."""
    quantizer_seed: int = 0
    """Seed of the random projection and codebooks: same seed, same targets."""
    normalize_quantizer_input: bool = True
    """Normalise each bin over the utterance before the quantizer."""
    normalize_input: bool = True
    """Normalise each bin over the utterance before the encoder (as the CTC model does)."""

    def validate(self) -> None:
        check(0.0 < self.mask_prob <= 1.0, "mask_prob", "must be in (0, 1]")
        check(self.mask_length >= 1, "mask_length", "must be >= 1")
        check(self.min_masked_spans >= 1, "min_masked_spans", "must be >= 1")
        check(self.noise_std >= 0, "noise_std", "must be >= 0")
        check(self.codebook_size >= 2, "codebook_size", "must be >= 2")
        check(self.codebook_dim >= 1, "codebook_dim", "must be >= 1")
        check(self.num_codebooks >= 1, "num_codebooks", "must be >= 1")


def stack_frames(features: torch.Tensor, lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """features (B, T, F) -> (B, ceil(T / factor), factor * F); padded frames as zeros."""
    batch, frames, bins = features.shape
    padding_mask = lengths_to_padding_mask(lengths, frames)
    x = features.masked_fill(padding_mask.unsqueeze(-1), 0.0)
    x = F.pad(x, (0, 0, 0, (-frames) % factor))
    return x.reshape(batch, -1, factor * bins)


class BestRQModel(InitWeights, nn.Module):
    """Conformer encoder + frozen random-projection targets + masked softmax head."""

    def __init__(self, encoder: ConformerEncoder, cfg: BestRQConfig):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        self.factor = encoder.cfg.subsampling_factor
        self.quantizer = RandomProjectionQuantizer(
            input_dim=self.factor * encoder.cfg.input_dim,
            codebook_dim=cfg.codebook_dim,
            codebook_size=cfg.codebook_size,
            num_codebooks=cfg.num_codebooks,
            seed=cfg.quantizer_seed,
        )
        self.head = nn.Linear(encoder.d_model, cfg.num_codebooks * cfg.codebook_size)

    def set_step(self, step: int) -> None:
        """Nothing anneals in BEST-RQ; here so trainers treat both objectives alike."""

    @torch.no_grad()
    def targets(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """features (B, T, F), lengths (B,) -> codebook ids (B, T', G), deterministic."""
        if self.cfg.normalize_quantizer_input:
            features = normalize_per_utterance(features.float(), lengths)
        return self.quantizer(stack_frames(features, lengths, self.factor))

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> losses and metrics (0-dim tensors).

        ``mask`` (B, T') bool overrides the random span mask (padding is dropped
        from it). Keys: loss, accuracy, code_perplexity, num_masked.
        """
        batch, frames, _ = features.shape
        if self.cfg.normalize_input:
            features = normalize_per_utterance(features.float(), lengths)
        targets = self.targets(features, lengths)  # (B, T', G)
        out_lengths = self.encoder.output_lengths(lengths)
        padding_mask = lengths_to_padding_mask(out_lengths, targets.shape[1])
        if mask is None:
            cfg = self.cfg
            mask = compute_span_mask(
                out_lengths, targets.shape[1], cfg.mask_prob, cfg.mask_length, cfg.min_masked_spans
            )
        mask = mask & ~padding_mask
        # Each subsampled frame owns `factor` input frames; mask those, inside lengths.
        input_mask = mask.repeat_interleave(self.factor, dim=1)[:, :frames]
        input_mask = input_mask & ~lengths_to_padding_mask(lengths, frames)
        noise = torch.randn_like(features) * self.cfg.noise_std
        noisy = torch.where(input_mask.unsqueeze(-1), noise, features)
        encoded, _ = self.encoder(noisy, lengths)  # (B, T', D)
        logits = self.head(encoded[mask]).float()  # (N, G * V)
        logits = logits.view(-1, self.cfg.num_codebooks, self.cfg.codebook_size)
        masked_targets = targets[mask]  # (N, G)
        loss = F.cross_entropy(logits.flatten(0, 1), masked_targets.flatten())
        accuracy = (logits.argmax(dim=-1) == masked_targets).float().mean()
        return {
            "loss": loss,
            "accuracy": accuracy.detach(),
            "code_perplexity": perplexity_of_ids(targets[~padding_mask], self.cfg.codebook_size),
            "num_masked": mask.sum(),
        }
