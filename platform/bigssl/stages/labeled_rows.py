"""The labeled rows a fine-tuning run trains on: which ones (a label-budget manifest,
plus kept pseudo-labels mixed at a ratio), their transcripts, the words they use, and
the ones CTC cannot learn from.

Design decisions:
- Rows come from the shared feature pass: a manifest selects ids; featurize's
  quarantined rows are counted (``Selection.skipped``), never silently dropped.
- A true label wins over a pseudo-label of the same utterance; the scarcer side is
  repeated so that batches hold the requested labeled : pseudo mix in expectation.
- Transcripts are read on the driver, two small columns only: for the vocabulary
  (``words.txt`` in every checkpoint, the lexicon decoder's ``train``) and for the
  count of utterances shorter than their CTC alignment (zero loss otherwise unseen).
"""

from __future__ import annotations

import logging
from typing import Any

import pyarrow.compute as pc

from bigssl import storage
from bigssl.config import ConfigError
from bigssl.data.ledger import read_ledger
from bigssl.models import ConformerConfig
from bigssl.models.ctc import ctc_frames_needed
from bigssl.stages.training_data import Selection, feature_rows, quarantined_ids, usable_rows
from bigssl.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)


def mix_repeats(labeled: int, pseudo: int, ratio: float, cap: int = 1000) -> tuple[int, int]:
    """(repeat_labeled, repeat_pseudo) bringing pseudo : labeled rows near ``ratio``: the
    scarcer side is repeated, never the other dropped."""
    if not pseudo or not labeled:
        return 1, 1
    if pseudo >= ratio * labeled:
        return min(cap, max(1, round(pseudo / (ratio * labeled)))), 1
    return 1, min(cap, max(1, round(ratio * labeled / pseudo)))


def select_rows(
    features: str, manifest: str, pseudo_labels: str = "", pseudo_ratio: float = 9.0
) -> tuple[Selection, dict[str, int], float]:
    """The manifest's labeled rows (plus kept pseudo-labels) that have features:
    selection, rows per shard per epoch, labeled hours."""
    table = storage.read_parquet(manifest)
    table = table.filter(pc.is_valid(table.column("text")))
    if table.num_rows == 0:
        raise ConfigError("manifest", f"{manifest} has no labeled rows")
    quarantined = quarantined_ids(features)
    labeled, hours = usable_rows(table, quarantined)
    pseudo: dict[str, str] = {}
    pseudo_shard: dict[str, str] = {}
    if pseudo_labels:
        ledger = read_ledger(pseudo_labels, kept_only=True)
        for uid, shard, text in zip(
            ledger.column("id").to_pylist(),
            ledger.column("shard").to_pylist(),
            ledger.column("text").to_pylist(),
            strict=True,
        ):
            if uid not in labeled and uid not in quarantined:  # a true label wins
                pseudo[uid], pseudo_shard[uid] = text, shard
        if not pseudo:
            raise ConfigError("pseudo_labels", f"{pseudo_labels} keeps no usable pseudo-label")
    repeat_labeled, repeat_pseudo = mix_repeats(len(labeled), len(pseudo), pseudo_ratio)
    totals: dict[str, int] = {}
    for stem in labeled.values():
        totals[stem] = totals.get(stem, 0) + repeat_labeled
    for stem in pseudo_shard.values():
        totals[stem] = totals.get(stem, 0) + repeat_pseudo
    selection = Selection(
        ids=[*labeled, *pseudo],
        shards=set(totals),
        pseudo=pseudo,
        repeat_labeled=repeat_labeled,
        repeat_pseudo=repeat_pseudo,
        skipped=table.num_rows - len(labeled),
    )
    return selection, totals, hours


def training_transcripts(features: str, selection: Selection) -> list[tuple[str, int, str]]:
    """(id, input frames, transcript) of every selected row, pseudo-labels overlaid: read
    on the driver (two small columns) for the CTC frame check and the vocabulary."""
    return [
        (r["id"], int(r["num_frames"]), selection.pseudo.get(r["id"], r["text"]) or "")
        for r in feature_rows(features, selection, ["id", "num_frames", "text"])
    ]


def vocabulary(transcripts: list[tuple[str, int, str]]) -> str:
    """The words of the transcripts, one per line, sorted: ``words.txt`` of the checkpoints."""
    return "".join(f"{w}\n" for w in sorted({w for _, _, t in transcripts for w in t.split()}))


def too_short_for_ctc(
    transcripts: list[tuple[str, int, str]], tokenizer: Tokenizer, encoder: ConformerConfig
) -> dict[str, Any]:
    """The training utterances with fewer encoder frames than a CTC alignment of their
    transcript needs. ``F.ctc_loss(zero_infinity=True)`` gives them zero loss, so they
    would teach nothing without a word; the summary counts them and names a few."""
    short = []
    for uid, frames, text in transcripts:
        if encoder.output_frames(frames) < ctc_frames_needed(tokenizer.encode(text)):
            short.append(uid)
    rows = max(1, len(transcripts))
    if short:
        log.warning(
            "%d of %d training utterances (%.1f %%) have fewer encoder frames (input frames / "
            "subsampling_factor %d) than CTC needs for their transcript and train with zero "
            "loss, e.g. %s; a tokenizer with add_dummy_prefix=false saves a frame each, "
            "encoder.subsampling_factor=2 halves the shortfall",
            len(short), rows, 100 * len(short) / rows, encoder.subsampling_factor,
            ", ".join(sorted(short)[:3]),
        )  # fmt: skip
    return {
        "utterances": len(short),
        "share": round(len(short) / rows, 4),
        "ids": sorted(short)[:5],
    }
