"""One data epoch kept in a training worker's memory, when it is small (no Ray here).

Why: Ray Data re-executes a dataset's pipeline for every epoch (listing, reads,
the label-budget filter), and the bucketing window waits for the first rows; on a
2-core machine that cost ~10 s per epoch, while a small label budget's epoch
trains in a few seconds. An epoch of at most ``limit_mb`` of features is therefore
served from memory after its first full pass: the same rows Ray Data would give
this worker, shuffled per epoch. Large epochs (pre-training corpora) exceed the
limit at once and keep streaming; nothing big is ever held.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any


class EpochCache:
    def __init__(self, limit_mb: float, seed: int = 0):
        self.limit_bytes = limit_mb * 2**20
        self.seed = seed
        self.rows: list[dict[str, Any]] = []
        self.complete = False

    def epoch_rows(self, stream: Iterable[dict[str, Any]], epoch: int) -> Iterator[dict[str, Any]]:
        """Rows of one epoch: from memory when a full epoch is cached, else from ``stream``,
        caching as they pass. Exhaust the iterator (drain it) to complete the cache."""
        if self.complete:
            rows = list(self.rows)
            random.Random(self.seed * 1_000_003 + epoch).shuffle(rows)
            yield from rows
            return
        self.rows, size, keep = [], 0.0, self.limit_bytes > 0
        for row in stream:
            if keep:
                size += int(row["num_frames"]) * int(row["num_mel_bins"]) * 4
                keep = size <= self.limit_bytes
                if keep:
                    self.rows.append(row)
                else:
                    self.rows = []
            yield row
        self.complete = keep and bool(self.rows)
