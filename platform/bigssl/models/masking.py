"""Span masking of subsampled frames, shared by wav2vec 2.0 and BEST-RQ.

Dimension legend: B batch, T' subsampled frames.

Design decisions:
- wav2vec 2.0's scheme: each valid frame starts a span of ``span_length`` frames
  with probability ``mask_prob`` (starts drawn without replacement, spans may
  overlap), so the masked fraction is about ``1 - (1 - mask_prob) ** span_length``
  (see :func:`expected_mask_fraction`), 0.49 for the defaults 0.065 / 10.
- Every utterance gets at least ``min_spans`` spans, so every utterance contributes
  to the loss; spans never cross an utterance's length. An utterance shorter than
  a span is masked whole.
- Starts are drawn on the CPU with an optional ``torch.Generator``, so a mask is
  reproducible whatever device the batch lives on.
"""

from __future__ import annotations

import torch


def expected_mask_fraction(mask_prob: float, span_length: int) -> float:
    """Masked fraction of a long utterance under :func:`compute_span_mask`."""
    return 1.0 - (1.0 - mask_prob) ** span_length


def compute_span_mask(
    lengths: torch.Tensor,
    max_length: int,
    mask_prob: float,
    span_length: int,
    min_spans: int = 1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random span mask: lengths (B,) -> (B, max_length) bool, True at masked frames.

    Frames at ``t >= lengths[b]`` are never masked.
    """
    batch = lengths.shape[0]
    starts = torch.zeros(batch, max_length + 1, dtype=torch.long)
    for b, length in enumerate(lengths.tolist()):
        if length <= 0:
            continue
        span = min(span_length, length)
        num_starts = length - span + 1
        # int(p * L + u), u ~ U[0, 1): the expected number of spans is exactly p * L.
        jitter = torch.rand((), generator=generator).item()
        num_spans = min(num_starts, max(min_spans, int(mask_prob * length + jitter)))
        chosen = torch.randperm(num_starts, generator=generator)[:num_spans]
        starts[b, chosen] += 1
        starts[b, chosen + span] -= 1  # chosen + span <= length: a span never passes the end
    # A running count of open spans: > 0 exactly where some span covers the frame.
    covered = starts.cumsum(dim=1)[:, :max_length] > 0
    return covered.to(lengths.device)
