"""The in-memory record every importer yields before it becomes a shard sample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawUtterance:
    """One utterance as an importer found it, before validation and encoding.

    Exactly one of ``audio_path`` (a file soundfile can decode) or ``samples``
    (float32 in [-1, 1], shape (T,) or (T, C)) with ``sample_rate`` is set.
    ``text`` is None for unlabeled audio.
    """

    id: str
    source: str
    text: str | None = None
    speaker: str | None = None
    audio_path: str | None = None
    samples: np.ndarray | None = None
    sample_rate: int | None = None
    split: str | None = None  # a split the corpus itself declares (train/dev/test)
    # Why the importer already knows this utterance cannot be used (missing file,
    # unsafe path, ...): it is quarantined with this reason instead of decoded.
    error: str | None = None
