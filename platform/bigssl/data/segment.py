"""Cut a long unlabeled recording into bounded chunks (pure numpy, no Ray).

``segment_bounds(samples, rate, cfg)`` returns the chunks as sample ranges
``[(start, end), ...]``: contiguous, non-overlapping, covering the whole recording,
each at most ``max_s`` and at least ``min_s`` long. Prepare writes each range as its
own shard entry ``ID-cNNNN`` (see ``bigssl.data.prepare``).

Design decisions:
- **Only unlabeled audio is cut.** A transcript says what the whole recording says, not
  which words fall in which chunk; without an alignment a cut would pair audio with the
  wrong text, so prepare quarantines long labeled recordings instead.
- **Deterministic**: the ranges are a pure function of the samples and the config, so a
  re-run of prepare writes the same ids, offsets and audio (restartable, no duplicates).
- **fixed**: windows of ``max_s``; a last remainder shorter than ``min_s`` is merged with
  the window before it and the two are split evenly, so no chunk exceeds ``max_s``
  (``min_s <= max_s / 2`` is enforced, so both halves are at least ``min_s``).
- **energy**: a simple voice-activity cut. Each cut is placed at the quietest point of
  the ``search_s`` before the window's end: the centre of the ``frame_s`` window (10 ms
  hop) with the lowest RMS in dB (channels pooled; ties go to the latest point, so chunks
  stay long). Frame energies come from one cumulative sum over the searched span, so a
  search costs O(samples searched). Cuts never come closer than ``min_s`` to a chunk's
  start or to the recording's end. Hand-written rather than a dependency: the VAD
  packages on PyPI (webrtcvad, silero-vad, pyannote) bring a native extension or a model
  for what is twenty lines of numpy here, and none picks a cut point inside a bounded
  window, which is what bounded chunks need.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from bigssl.config import Config, check

HOP_S = 0.01  # energy mode's grid of candidate cut points


@dataclass
class SegmentConfig(Config):
    # off: long audio is quarantined as before (the default, so existing prepare outputs
    # re-run to the same shards and ids; see PrepareConfig). fixed / energy: unlabeled
    # recordings longer than max_s become chunks ID-c0000, ID-c0001, ...
    mode: Literal["off", "fixed", "energy"] = "off"
    max_s: float = 30.0  # no chunk is longer; unlabeled audio longer than this is cut
    min_s: float = 1.0  # no chunk is shorter (must be <= max_s / 2)
    search_s: float = 5.0  # energy: look this far back from each window end for the cut
    frame_s: float = 0.1  # energy: the RMS window whose quietest centre is the cut

    def validate(self) -> None:
        check(self.max_s > 0, "max_s", f"must be > 0, got {self.max_s}")
        check(
            0 < self.min_s <= self.max_s / 2,
            "min_s",
            f"must be in (0, max_s / 2 = {self.max_s / 2:g}], got {self.min_s}"
            " (a short remainder is merged with the chunk before it and the two split evenly)",
        )
        check(
            0 < self.search_s <= self.max_s,
            "search_s",
            f"must be in (0, max_s = {self.max_s:g}], got {self.search_s}",
        )
        check(
            0 < self.frame_s <= self.search_s,
            "frame_s",
            f"must be in (0, search_s = {self.search_s:g}], got {self.frame_s}",
        )


def segment_bounds(samples: np.ndarray, rate: int, cfg: SegmentConfig) -> list[tuple[int, int]]:
    """Sample ranges of the chunks of ``samples`` ((T,) or (T, C)); one range when the
    recording is no longer than ``max_s`` or ``mode`` is off."""
    total = int(samples.shape[0])
    longest = int(math.floor(cfg.max_s * rate))
    if cfg.mode == "off" or total <= longest:
        return [(0, total)]
    shortest = int(math.ceil(cfg.min_s * rate))
    if cfg.mode == "fixed":
        cuts = _fixed_cuts(total, longest, shortest)
    else:
        cuts = _energy_cuts(samples, rate, cfg, longest, shortest)
    edges = [0, *cuts, total]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _fixed_cuts(total: int, longest: int, shortest: int) -> list[int]:
    cuts = list(range(longest, total, longest))
    remainder = total - cuts[-1]
    if remainder < shortest:
        # merge the remainder with the window before it, then halve the two evenly
        before = cuts[-2] if len(cuts) > 1 else 0
        cuts[-1] = before + (total - before) // 2
    return cuts


def _energy_cuts(
    samples: np.ndarray, rate: int, cfg: SegmentConfig, longest: int, shortest: int
) -> list[int]:
    total = int(samples.shape[0])
    half = max(1, int(round(cfg.frame_s * rate / 2)))
    hop = max(1, int(round(HOP_S * rate)))
    search = max(1, int(round(cfg.search_s * rate)))
    cuts, start = [], 0
    while total - start > longest:
        hi = min(start + longest, total - shortest)
        lo = min(max(start + shortest, start + longest - search), hi)
        start = quietest_point(samples, lo, hi, half, hop)
        cuts.append(start)
    return cuts


def quietest_point(samples: np.ndarray, lo: int, hi: int, half: int, hop: int) -> int:
    """The sample in [lo, hi] (on a ``hop`` grid ending at ``hi``) whose window of
    ``2 * half`` samples has the lowest RMS (the latest one among equals)."""
    centres = np.arange(hi, lo - 1, -hop)  # latest first: argmin's first hit is the latest
    a, b = max(0, lo - half), min(int(samples.shape[0]), hi + half)
    power = np.square(samples[a:b], dtype=np.float64)  # only the searched span
    if power.ndim == 2:
        power = power.mean(axis=1)  # channels pooled
    cumulative = np.concatenate([[0.0], np.cumsum(power)])
    left = np.clip(centres - half, a, b) - a
    right = np.clip(centres + half, a, b) - a
    mean = (cumulative[right] - cumulative[left]) / np.maximum(right - left, 1)
    db = 10.0 * np.log10(mean + 1e-12)  # frame RMS in dB: 10 log10 of the mean power
    return int(centres[int(np.argmin(db))])
