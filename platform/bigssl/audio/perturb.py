"""Speed perturbation of log-mel features, on the fly (Ko et al. 2015's 0.9 / 1.0 / 1.1).

Playing audio at speed ``a`` shortens it by ``a`` and scales every frequency by
``a``. Training reads features, not audio, so the same change is made to the
log-mel frames: the time axis is resampled to ``T / a`` frames and the mel axis is
warped so that output bin ``m`` reads the input at frequency ``f(m) / a``.

Why not resample the audio and re-run the fbank (the textbook way)? Training reads
one featurize output shared by every budget and trial; perturbing there would triple
featurize's output and its time. The feature-domain version costs two linear
interpolations per batch on the trainer. It is an approximation: the fbank's
triangle filters are not re-placed, and energy is not rescaled.

Shapes: feats (B, T, F) float32, lengths (B,) int64, as ``collate_features`` makes them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(hz / 700.0)  # Kaldi's mel scale, as torchaudio's fbank uses


def _hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * np.expm1(mel / 1127.0)


def mel_warp_positions(
    num_bins: int, factor: float, low_hz: float = 20.0, high_hz: float = 8000.0
) -> np.ndarray:
    """Fractional input-bin index read by each output bin after scaling frequencies by
    ``factor``: centre ``f`` reads the input at ``f / factor`` (clamped to the band)."""
    edges = np.linspace(_mel(np.array(low_hz)), _mel(np.array(high_hz)), num_bins + 2)
    centres_mel = edges[1:-1]
    source_mel = _mel(_hz(centres_mel) / factor)
    step = edges[1] - edges[0]
    return np.clip((source_mel - centres_mel[0]) / step, 0, num_bins - 1)


def speed_perturb(
    feats: np.ndarray,
    lengths: np.ndarray,
    factor: float,
    low_hz: float = 20.0,
    high_hz: float = 8000.0,
) -> tuple[np.ndarray, np.ndarray]:
    """feats (B, T, F), lengths (B,) -> feats at speed ``factor`` (B, ceil(T / factor), F)
    and their lengths; padding stays zero. ``factor`` 1 returns the inputs unchanged."""
    if factor == 1.0:
        return feats, lengths
    batch, frames, bins = feats.shape
    new_frames = max(1, math.ceil(frames / factor))
    x = torch.from_numpy(np.ascontiguousarray(feats)).transpose(1, 2)  # (B, F, T)
    x = F.interpolate(x, size=new_frames, mode="linear", align_corners=False).transpose(1, 2)
    positions = torch.from_numpy(mel_warp_positions(bins, factor, low_hz, high_hz)).float()
    below = positions.floor().long()
    above = (below + 1).clamp(max=bins - 1)
    weight = positions - below.float()
    x = x[..., below] * (1 - weight) + x[..., above] * weight
    new_lengths = np.minimum(np.maximum(1, np.round(lengths / factor).astype(np.int64)), new_frames)
    mask = torch.arange(new_frames)[None, :] < torch.from_numpy(new_lengths)[:, None]
    x = x * mask[..., None]
    return x.numpy().astype(np.float32), new_lengths
