"""wav2vec 2.0 pre-training on log-mel, as BigSSL applies it (Zhang et al. 2021).

Dimension legend: B batch, T input frames, F feature bins, T' subsampled frames,
D model width, N masked frames in the batch, M most masked frames in one
utterance, K distractors, P final (contrastive) width, G codebook groups.

Design decisions:
- Masking happens on the subsampled frames (the conv subsampling is the feature
  encoder): masked frames are replaced by a learned embedding, then the Conformer
  blocks (the context network) run.
- Targets come from the *unmasked* subsampled frames, through a Gumbel product
  quantizer (``target="quantizer"``) or a linear projection (``target="linear"``).
  As in wav2vec 2.0, gradients flow into the subsampling through both paths.
- The quantizer sees each utterance's frames normalised over time. Subsampled
  log-mel frames share one large direction (cosine ~0.6 between any two at init),
  so the selection logits of every frame agreed: with logits large enough for the
  hard Gumbel choice to depend on the input, frames took the same codes (one run
  collapsed to one code per group within 30 steps); with small logits the Gumbel
  noise chose, targets were random, and the contrastive loss sat at chance,
  log(K + 1), for 400 steps.
- Distractors are other masked frames of the same utterance, drawn with
  replacement and never the positive itself; a distractor with the positive's
  exact codes is masked out (fairseq does the same), else the task is impossible.
- Similarities are one (B, M, M) cosine matrix per batch, then gathered, instead
  of materialising (N, K, P) distractor vectors: at N ~ 10^4 and K = 100 that is
  the difference between megabytes and gigabytes.
- The Gumbel temperature is a function of the training step; the trainer calls
  :meth:`Wav2Vec2Model.set_step` (the step lives in the checkpoint, not here).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
from bigssl.models.quantizer import GumbelVectorQuantizer


@dataclass
class Wav2Vec2Config(Config):
    """wav2vec 2.0 objective; masking is in subsampled (40 ms at 4x) frames."""

    mask_prob: float = 0.065
    """Probability that a frame starts a masked span (about 49 % masked with span 10)."""
    mask_length: int = 10
    """Frames per masked span."""
    min_masked_spans: int = 1
    """Spans every utterance gets at least."""
    num_negatives: int = 100
    """Distractors K per masked frame, from the same utterance's masked frames."""
    contrastive_temperature: float = 0.1
    """kappa: cosine similarities are divided by it."""
    diversity_weight: float = 0.1
    """alpha: weight of the codebook diversity loss."""
    mask_duplicate_negatives: bool = False
    """Drop distractors whose codes equal the positive's (fairseq does). Off by default:
    once the codebook collapses every distractor is dropped and the loss falls to 0,
    so the objective rewards collapse; kept, collapse costs log(K + 1)."""
    normalize_input: bool = True
    """Per-utterance mean/variance normalisation of the log-mel input (CMVN). Raw log-mel
    shares a large per-bin offset across frames; without it the quantizer saw nearly
    identical frames and mapped them all to one code."""
    feature_grad_mult: float = 0.1
    """Scale of the gradient into the subsampling (fairseq's feature_grad_mult). The
    targets are quantized from the same trainable frames the context sees; at full
    gradient the toy runs collapsed the codebook to one code per group in 3 steps."""
    target: Literal["quantizer", "linear"] = "quantizer"
    """Targets from the Gumbel product quantizer or from a linear projection."""
    normalize_quantizer_input: bool = True
    """Normalise each utterance's frames over time (per dimension) before the quantizer
    chooses codes: removes the direction all frames share, so codes follow content."""
    quantizer_logit_scale: float = 12.0
    """Initial std of the code-selection logits. Gumbel noise has std 1.28, so the hard
    choice follows the input only when the logits spread wider; fairseq's init gives
    sqrt(D) (12 at the tiny width). At 3 the noise chose and nothing was learned."""
    num_codebook_groups: int = 2
    """G: codebook groups of the quantizer."""
    num_codebook_entries: int = 320
    """V: entries per group."""
    codebook_dim: int = 256
    """Width of a quantized vector (all groups together); divisible by G."""
    final_dim: int = 256
    """P: width both context and targets are projected to before the similarity."""
    gumbel_temperature_start: float = 2.0
    """Gumbel-softmax temperature at step 0."""
    gumbel_temperature_end: float = 0.5
    """Temperature floor."""
    gumbel_temperature_decay: float = 0.999995
    """Temperature factor per step: max(start * decay**step, end)."""

    def validate(self) -> None:
        check(0.0 < self.mask_prob <= 1.0, "mask_prob", "must be in (0, 1]")
        check(self.mask_length >= 1, "mask_length", "must be >= 1")
        check(self.min_masked_spans >= 1, "min_masked_spans", "must be >= 1")
        check(self.num_negatives >= 1, "num_negatives", "must be >= 1")
        check(self.contrastive_temperature > 0, "contrastive_temperature", "must be > 0")
        check(self.diversity_weight >= 0, "diversity_weight", "must be >= 0")
        check(0.0 <= self.feature_grad_mult <= 1.0, "feature_grad_mult", "must be in [0, 1]")
        check(self.num_codebook_groups >= 1, "num_codebook_groups", "must be >= 1")
        check(self.num_codebook_entries >= 2, "num_codebook_entries", "must be >= 2")
        check(
            self.codebook_dim % self.num_codebook_groups == 0,
            "codebook_dim",
            f"{self.codebook_dim} is not divisible by num_codebook_groups",
        )
        check(self.final_dim >= 1, "final_dim", "must be >= 1")
        check(self.quantizer_logit_scale > 0, "quantizer_logit_scale", "must be > 0")
        check(self.gumbel_temperature_end > 0, "gumbel_temperature_end", "must be > 0")
        check(
            self.gumbel_temperature_start >= self.gumbel_temperature_end,
            "gumbel_temperature_start",
            "must be >= gumbel_temperature_end",
        )
        check(
            0.0 < self.gumbel_temperature_decay <= 1.0,
            "gumbel_temperature_decay",
            "must be in (0, 1]",
        )


def sample_negatives(
    counts: torch.Tensor, max_count: int, num_negatives: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distractor positions within each utterance's masked frames.

    counts (B,) masked frames per utterance -> (index (B, M, K), valid (B, M, K)):
    ``index[b, i]`` are positions in ``[0, counts[b])`` other than ``i``. ``valid``
    is False for padded rows (``i >= counts[b]``) and for utterances with a single
    masked frame, which have no distractor.
    """
    batch = counts.shape[0]
    counts = counts.view(batch, 1, 1)
    own = torch.arange(max_count, device=counts.device).view(1, max_count, 1)
    # Draw from counts - 1 positions, then skip over the row's own position.
    high = (counts - 1).clamp(min=0)
    draws = torch.rand(batch, max_count, num_negatives, device=counts.device)
    index = (draws * high).long()
    index = index + (index >= own).long()
    valid = (index < counts) & (own < counts)
    return index.clamp(max=max_count - 1), valid


def _pad_by_utterance(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values (N, ...) taken as ``x[mask]`` from (B, T', ...) -> (B, M, ...), zero-padded."""
    counts = mask.sum(dim=1)
    batch_index, time_index = mask.nonzero(as_tuple=True)  # row-major, like x[mask]
    position = (mask.long().cumsum(dim=1) - 1)[batch_index, time_index]
    out = values.new_zeros((mask.shape[0], int(counts.max()), *values.shape[1:]))
    out[batch_index, position] = values
    return out


class Wav2Vec2Model(InitWeights, nn.Module):
    """Conformer encoder + masking + quantized targets + contrastive/diversity loss."""

    def __init__(self, encoder: ConformerEncoder, cfg: Wav2Vec2Config):
        super().__init__()
        self.encoder = encoder
        self.cfg = cfg
        d_model = encoder.d_model
        self.mask_embedding = nn.Parameter(torch.empty(d_model))
        # fairseq normalises features before masking and quantizing: the quantizer's
        # logits then keep their scale while the subsampling learns.
        self.feature_norm = nn.LayerNorm(d_model)
        self.quantizer: GumbelVectorQuantizer | None = None
        target_dim = d_model
        if cfg.target == "quantizer":
            self.quantizer = GumbelVectorQuantizer(
                d_model,
                cfg.num_codebook_groups,
                cfg.num_codebook_entries,
                cfg.codebook_dim,
                cfg.quantizer_logit_scale,
            )
            target_dim = cfg.codebook_dim
        self.target_projection = nn.Linear(target_dim, cfg.final_dim)
        self.context_projection = nn.Linear(d_model, cfg.final_dim)
        self.step = 0
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise this module's own parameter (submodules have their own)."""
        nn.init.uniform_(self.mask_embedding)

    def set_step(self, step: int) -> None:
        """Set the training step that anneals the Gumbel temperature."""
        self.step = step

    @property
    def temperature(self) -> float:
        cfg = self.cfg
        annealed = cfg.gumbel_temperature_start * cfg.gumbel_temperature_decay**self.step
        return max(annealed, cfg.gumbel_temperature_end)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """features (B, T, F), lengths (B,) -> losses and metrics (0-dim tensors).

        ``mask`` (B, T') bool overrides the random span mask (padding is dropped
        from it). Keys: loss, contrastive_loss, diversity_loss, accuracy,
        code_perplexity, num_masked.
        """
        if self.cfg.normalize_input:
            features = normalize_per_utterance(features, lengths)
        frames, out_lengths = self.encoder.subsample(features, lengths)  # (B, T', D)
        if self.cfg.feature_grad_mult < 1.0:  # same values, scaled gradient
            scale = self.cfg.feature_grad_mult
            frames = frames * scale + frames.detach() * (1.0 - scale)
        frames = self.feature_norm(frames)
        padding_mask = lengths_to_padding_mask(out_lengths, frames.shape[1])
        if mask is None:
            cfg = self.cfg
            mask = compute_span_mask(
                out_lengths, frames.shape[1], cfg.mask_prob, cfg.mask_length, cfg.min_masked_spans
            )
        mask = mask & ~padding_mask
        embedding = self.mask_embedding.to(frames.dtype)
        encoded = self.encoder.forward_layers(
            torch.where(mask.unsqueeze(-1), embedding, frames), padding_mask
        )
        context = self.context_projection(encoded[mask])  # (N, P)
        target_frames = frames
        if self.quantizer is not None and self.cfg.normalize_quantizer_input:
            target_frames = normalize_per_utterance(frames, out_lengths)
        targets, codes, diversity_loss, code_perplexity = self._targets(target_frames[mask])
        contrastive_loss, accuracy = self._contrastive(context, targets, codes, mask)
        return {
            "loss": contrastive_loss + self.cfg.diversity_weight * diversity_loss,
            "contrastive_loss": contrastive_loss,
            "diversity_loss": diversity_loss,
            "accuracy": accuracy,
            "code_perplexity": code_perplexity,
            "num_masked": mask.sum(),
        }

    def _targets(
        self, frames: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Unmasked frames (N, D) -> targets (N, P), codes (N, G), diversity, perplexity."""
        if self.quantizer is None:
            zero = frames.new_zeros((), dtype=torch.float32)
            return self.target_projection(frames), None, zero, zero
        out = self.quantizer(frames, self.temperature)
        num_vars = self.cfg.num_codebook_groups * self.cfg.num_codebook_entries
        # 0 when every entry is used equally often, -> 1 as the codebook collapses.
        diversity_loss = (num_vars - out["prob_perplexity"]) / num_vars
        targets = self.target_projection(out["quantized"].to(frames.dtype))
        return targets, out["codes"], diversity_loss, out["code_perplexity"]

    def _contrastive(
        self,
        context: torch.Tensor,
        targets: torch.Tensor,
        codes: torch.Tensor | None,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """context, targets (N, P), codes (N, G) -> (InfoNCE loss, accuracy)."""
        counts = mask.sum(dim=1)
        context_padded = F.normalize(_pad_by_utterance(context.float(), mask), dim=-1)
        targets_padded = F.normalize(_pad_by_utterance(targets.float(), mask), dim=-1)
        # (B, M, M): similarity of masked frame i's context to masked frame j's target.
        similarity = torch.bmm(context_padded, targets_padded.transpose(1, 2))
        similarity = similarity / self.cfg.contrastive_temperature
        index, valid = sample_negatives(counts, similarity.shape[1], self.cfg.num_negatives)
        positive = similarity.diagonal(dim1=1, dim2=2).unsqueeze(-1)  # (B, M, 1)
        negative = similarity.gather(2, index)  # (B, M, K)
        if codes is not None and self.cfg.mask_duplicate_negatives:
            codes_padded = _pad_by_utterance(codes, mask)  # (B, M, G)
            batch, max_count, num_negatives = index.shape
            flat = index.view(batch, -1, 1).expand(-1, -1, codes_padded.shape[-1])
            negative_codes = codes_padded.gather(1, flat).view(batch, max_count, num_negatives, -1)
            valid = valid & (negative_codes != codes_padded.unsqueeze(2)).any(dim=-1)
        negative = negative.masked_fill(~valid, float("-inf"))
        rows = torch.arange(similarity.shape[1], device=mask.device) < counts.unsqueeze(1)
        logits = torch.cat([positive, negative], dim=-1)[rows]  # (N, 1 + K)
        loss = F.cross_entropy(logits, logits.new_zeros(logits.shape[0], dtype=torch.long))
        accuracy = (logits[:, 0] > logits[:, 1:].max(dim=-1).values).float().mean()
        return loss, accuracy.detach()
