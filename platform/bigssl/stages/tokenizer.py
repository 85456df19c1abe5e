"""Tokenizer stage: a manifest's labeled text -> ``OUT/tokenizer.model`` (no Ray needed).

Design decisions:
- **No Ray**: sentencepiece trains in one process and normalising costs ~20 µs per
  utterance, so a cluster would only add start-up time. The stage lives here because
  it is a stage (summary, quarantine, CLI entry), not because it needs Ray.
- **Streams the manifest** in record batches (each validated against the manifest
  schema) straight into sentencepiece's sentence iterator; only sentencepiece's own
  sample (``max_sentences``) is held in memory.
- **The books**: rows with a null ``text`` are unlabeled, not input to this stage; they
  are counted in ``extra["unlabeled"]``, not in ``read``. A labeled row whose text
  normalises to nothing (``""``, ``"..."``) is quarantined with its text in the reason.
  read = used + quarantined; ``hours`` is the audio of the used rows.
- Outputs: ``tokenizer.model`` (the sentencepiece bytes, loadable by
  :meth:`Tokenizer.load`), ``quarantine.parquet`` (always, possibly empty) and
  ``summary.json`` whose ``vocab_size`` is the CTC width (pieces + blank).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from bigssl import schemas, storage
from bigssl.data.quarantine import Quarantine
from bigssl.summary import StageSummary
from bigssl.text.normalize import normalize
from bigssl.text.tokenizer import EmptyCorpus, Tokenizer, TokenizerConfig, train_tokenizer

STAGE = "tokenizer"
_BATCH_ROWS = 65_536
_REASON_CHARS = 80  # how much of an unusable transcript the quarantine reason quotes


@dataclass
class TokenizerStageConfig(TokenizerConfig):
    strict: bool = False  # fail when any labeled row is quarantined


@dataclass
class _Books:
    read: int = 0
    used: int = 0
    unlabeled: int = 0
    seconds: float = 0.0
    finished: bool = False  # the manifest was read to its end


def resolve_manifest(manifest: str) -> str:
    """``manifest`` itself, or ``manifest/manifest.parquet`` when given a prepare output folder."""
    inside = storage.join(manifest, "manifest.parquet")
    if not str(manifest).endswith(".parquet") and storage.exists(inside):
        return inside
    if not storage.exists(manifest):
        raise FileNotFoundError(manifest)
    return manifest


def iter_manifest(uri: str, batch_rows: int = _BATCH_ROWS) -> Iterator[pa.Table]:
    """The manifest at ``uri`` as validated tables of at most ``batch_rows`` rows."""
    with storage.open_input(uri) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_rows):
            yield schemas.validate(pa.Table.from_batches([batch]), "manifest")


def _labeled_texts(uri: str, books: _Books, quarantine: Quarantine) -> Iterator[str]:
    """Normalised texts of the usable labeled rows; counts and quarantines on the way."""
    for table in iter_manifest(uri):
        columns = [table.column(c).to_pylist() for c in ("id", "text", "duration_s", "source")]
        for id_, text, duration_s, source in zip(*columns, strict=True):
            if text is None:
                books.unlabeled += 1
                continue
            books.read += 1
            normalized = normalize(text)
            if not normalized:
                quarantine.add(id_, source, f"text normalises to empty: {text[:_REASON_CHARS]!r}")
                continue
            books.used += 1
            books.seconds += duration_s
            yield normalized
    books.finished = True


def run_tokenizer(
    manifest: str, out: str, cfg: TokenizerConfig
) -> tuple[StageSummary, Tokenizer | None]:
    """Train on the manifest's labeled text; write the model and quarantine under ``out``.

    Returns the (unfinished) summary and the tokenizer, None when no text was usable.
    """
    uri = resolve_manifest(manifest)
    books, quarantine = _Books(), Quarantine(STAGE)
    tokenizer = None
    try:
        tokenizer = train_tokenizer(_labeled_texts(uri, books, quarantine), cfg, normalized=True)
    except EmptyCorpus:
        pass  # the summary reports used=0 and finish() raises NothingUsable
    if not books.finished:  # sentencepiece must drain the iterator, or the books are short
        raise RuntimeError(f"{STAGE}: sentencepiece stopped before the end of {uri}")
    quarantine.write(storage.join(out, "quarantine.parquet"))
    extra: dict[str, object] = {
        "unlabeled": books.unlabeled,
        "vocab_size_requested": cfg.vocab_size,
        "model_type": cfg.model_type,
        "config": cfg.to_dict(),
    }
    if tokenizer is not None:
        path = storage.join(out, "tokenizer.model")
        tokenizer.save(path)
        extra.update(
            vocab_size=tokenizer.vocab_size,
            num_pieces=tokenizer.vocab_size - 1,
            fingerprint=tokenizer.fingerprint[:16],
            tokenizer=path,
        )
    summary = StageSummary(
        STAGE,
        read=books.read,
        used=books.used,
        quarantined=len(quarantine),
        hours=books.seconds / 3600,
        extra=extra,
    )
    return summary, tokenizer


def tokenizer_main(manifest: str, out: str, config: str | None, overrides: list[str]) -> dict:
    """CLI/job entry: load the config, train, write the summary (raises when nothing is usable)."""
    cfg = TokenizerStageConfig.load(config, overrides)
    summary, _ = run_tokenizer(manifest, out, cfg)
    return summary.finish(out, strict=cfg.strict)
