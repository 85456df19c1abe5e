"""Evaluation stage: a fine-tuned checkpoint on a manifest -> WER/CER and a per-utterance table.

``bigssl evaluate --checkpoint CKPT --manifest M --out DIR [key=value ...]``.
Batch inference is a Ray Data job over the manifest's shards (see
:mod:`bigssl.stages.inference`), so it scales to any test set; each replica scores
its utterances (jiwer after the shared normalisation) and writes
``DIR/utterances/SHARD.parquet`` (schema ``utterance_scores``). Corpus figures are
sums over those rows -- the same numbers jiwer gives on the whole set -- and land
in ``DIR/summary.json``: wer, cer, substitutions, deletions, insertions, words.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from bigssl import schemas, storage
from bigssl.config import Config
from bigssl.data.features import shard_stem
from bigssl.data.quarantine import Quarantine
from bigssl.decoding.recognizer import DecodeConfig, Recognizer
from bigssl.eval.wer import aggregate, utterance_errors
from bigssl.stages.inference import PoolConfig, infer_shards, manifest_work
from bigssl.summary import StageSummary
from bigssl.training import checkpoint as ckpt


@dataclass
class EvaluateConfig(Config):
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    pool: PoolConfig = field(default_factory=PoolConfig)


def evaluate(
    stem: str, results: list, quarantine: Quarantine, out: str, recognizer: Recognizer
) -> dict[str, Any]:
    """Per-shard handler: score each utterance, write the shard's table."""
    rows = []
    for row, hyp, text in results:
        if row["text"] is None:
            quarantine.add(row["id"], stem, "no reference transcript to score against")
            continue
        errors = utterance_errors(row["text"], text)
        rows.append(
            {
                "id": row["id"],
                "shard": stem,
                "reference": errors["reference"],
                "hypothesis": errors["hypothesis"],
                **{
                    k: int(errors[k])
                    for k in (
                        "words",
                        "substitutions",
                        "deletions",
                        "insertions",
                        "errors",
                        "chars",
                        "char_errors",
                    )
                },
                "avg_logprob": float(hyp.avg_logprob),
                "mean_max_prob": float(hyp.mean_max_prob),
                "duration_s": float(row["duration_s"]),
            }
        )
    table = (
        schemas.validate(pa.Table.from_pylist(rows), "utterance_scores")
        if rows
        else schemas.empty("utterance_scores")
    )
    storage.write_parquet(table, storage.join(out, "utterances", f"{stem}.parquet"))
    return {
        "used": len(rows),
        "quarantined": len(results) - len(rows),
        "decoder": recognizer.decoder.kind,
    }


def run_evaluate(
    checkpoint: str,
    manifest: str,
    out: str,
    cfg: EvaluateConfig,
    ray_address: str | None = None,
) -> StageSummary:
    if not storage.exists(manifest):
        raise FileNotFoundError(manifest)
    checkpoint = ckpt.resolve_checkpoint(checkpoint)
    start = time.perf_counter()
    work = manifest_work(manifest)
    markers = infer_shards(work, checkpoint, cfg.decode, cfg.pool, out, evaluate, ray_address)
    parts = [
        storage.read_parquet(storage.join(out, "utterances", f"{shard_stem(uri)}.parquet"))
        for uri in sorted(work)
    ]
    table = pa.concat_tables(parts) if parts else schemas.empty("utterance_scores")
    totals = aggregate(table.to_pylist())
    return StageSummary(
        "evaluate",
        read=sum(m["read"] for m in markers),
        used=sum(m["used"] for m in markers),
        quarantined=sum(m["quarantined"] for m in markers),
        hours=sum(m["seconds"] for m in markers) / 3600,
        extra={
            **{k: totals[k] for k in ("wer", "cer", "substitutions", "deletions", "insertions")},
            "words": totals["words"],
            "decoder": markers[0]["decoder"] if markers else cfg.decode.decoder,
            "checkpoint": checkpoint,
            "manifest": manifest,
            "wall_s": round(time.perf_counter() - start, 1),
        },
    )


def evaluate_main(
    checkpoint: str,
    manifest: str,
    out: str,
    config: str | None,
    overrides: list[str],
    ray_address: str | None = None,
) -> dict:
    cfg = EvaluateConfig.load(config, overrides)
    return run_evaluate(checkpoint, manifest, out, cfg, ray_address).finish(out)
