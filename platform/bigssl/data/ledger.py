"""The pseudo-label ledger: which teacher hypotheses a student may learn from, and where
they are kept (no Ray).

Layout, one partition per (teacher, generation), so a different teacher or a later
generation writes beside, never over::

    OUT/teacher=T/generation=G/raw/SHARD.parquet       every hypothesis + per-rule verdict
    OUT/teacher=T/generation=G/ledger/SHARD.parquet    final kept/reason (schema pseudo_labels)
    OUT/teacher=T/generation=G/done/SHARD.json         completion marker, written last
    OUT/teacher=T/generation=G/quarantine/SHARD.parquet

(``done/`` and ``quarantine/`` are written by the inference actor pool,
:mod:`bigssl.stages.inference`, as for every shard it runs.) The run-wide pass
(:func:`finalize`) is recomputed from ``raw/`` each time, so it is idempotent.

Two passes, so the ledger keeps every hypothesis and says why one was dropped:
1. per utterance, while labeling (:func:`rule_reason`): blank-only output, token
   count and duration out of range, looping repetitions, a confidence under
   ``min_score``;
2. over the whole run, once every shard is labeled (:func:`top_fraction_cutoff`):
   keep only the most confident ``keep_top_fraction`` of what passed the rules.
The confidence is either the length-normalised log-probability of the decoded
path (``avg_logprob``) or the mean frame max-probability (``mean_max_prob``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from bigssl import schemas, storage
from bigssl.config import Config, check
from bigssl.decoding.ctc import repetition_ratio


@dataclass
class FilterConfig(Config):
    score: Literal["avg_logprob", "mean_max_prob"] = "avg_logprob"  # the confidence used
    min_score: float | None = None  # drop hypotheses under this confidence (None = no threshold)
    keep_top_fraction: float = 1.0  # then keep only the most confident fraction of the rest
    min_tokens: int = 1  # 1 rejects blank-only hypotheses
    max_tokens: int = 100000  # longer hypotheses are dropped
    max_tokens_per_second: float = 40.0  # more tokens than this per second of audio: hallucination
    min_duration_s: float = 0.0  # shorter audio is dropped
    max_duration_s: float = 60.0  # longer audio is dropped
    max_repetition: float = 0.5  # share of repeated word bigrams above which a label loops

    def validate(self) -> None:
        check(0 < self.keep_top_fraction <= 1, "keep_top_fraction", "must be in (0, 1]")
        check(self.min_tokens >= 0, "min_tokens", "must be >= 0")
        check(self.max_tokens >= self.min_tokens, "max_tokens", "must be >= min_tokens")
        check(
            self.max_duration_s > self.min_duration_s, "max_duration_s", "must be > min_duration_s"
        )
        check(0 <= self.max_repetition <= 1, "max_repetition", "must be in [0, 1]")
        check(self.max_tokens_per_second > 0, "max_tokens_per_second", "must be > 0")


def rule_reason(row: dict[str, Any], cfg: FilterConfig) -> str | None:
    """Why a ledger row fails the per-utterance rules, or None when it passes."""
    tokens, duration = int(row["num_tokens"]), float(row["duration_s"])
    if tokens == 0 and cfg.min_tokens > 0:
        return "blank-only hypothesis"
    if tokens < cfg.min_tokens:
        return f"too few tokens ({tokens} < {cfg.min_tokens})"
    if tokens > cfg.max_tokens:
        return f"too many tokens ({tokens} > {cfg.max_tokens})"
    if duration and tokens / duration > cfg.max_tokens_per_second:
        return (
            f"too many tokens per second ({tokens / duration:.1f} > {cfg.max_tokens_per_second:g})"
        )
    if not cfg.min_duration_s <= duration <= cfg.max_duration_s:
        return f"duration {duration:.2f} s outside {cfg.min_duration_s:g}..{cfg.max_duration_s:g} s"
    repetition = repetition_ratio(row["text"])
    if repetition > cfg.max_repetition:
        return f"repetitive hypothesis ({repetition:.2f} of word bigrams repeat)"
    score = float(row[cfg.score])
    if cfg.min_score is not None and score < cfg.min_score:
        return f"{cfg.score} {score:.3f} < {cfg.min_score:g}"
    return None


def top_fraction_cutoff(scores: np.ndarray, fraction: float) -> float:
    """The lowest score among the top ``fraction`` of ``scores`` (-inf keeps everything)."""
    if fraction >= 1 or len(scores) == 0:
        return -np.inf
    keep = max(1, int(np.ceil(fraction * len(scores))))
    return float(np.sort(scores)[::-1][keep - 1])


def decide(rows: list[dict[str, Any]], cfg: FilterConfig, cutoff: float) -> list[dict[str, Any]]:
    """Set ``kept``/``reason`` on rows from the rules and the run-wide top-fraction cutoff."""
    out = []
    for row in rows:
        reason = rule_reason(row, cfg)
        if reason is None and float(row[cfg.score]) < cutoff:
            reason = f"below the top {cfg.keep_top_fraction:g} by {cfg.score} (cutoff {cutoff:.3f})"
        out.append({**row, "kept": reason is None, "reason": reason})
    return out


# --- storage layout ---------------------------------------------------------------------


def partition(out: str, teacher: str, generation: int) -> str:
    """The folder of one (teacher, generation) under a labeling output."""
    return storage.join(out, f"teacher={teacher}", f"generation={generation}")


def _table(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    if not rows:
        return schemas.empty("pseudo_labels")
    return schemas.validate(pa.Table.from_pylist(rows, schema=schema), "pseudo_labels")


def write_raw(part: str, stem: str, rows: list[dict[str, Any]]) -> None:
    """One shard's hypotheses with their per-rule verdict (``raw/``)."""
    storage.write_parquet(_table(rows), storage.join(part, "raw", f"{stem}.parquet"))


def finalize(part: str, stems: list[str], cfg: FilterConfig) -> dict[str, Any]:
    """Apply the run-wide top-fraction filter: raw/ -> ledger/ (idempotent)."""
    raw = {s: storage.read_parquet(storage.join(part, "raw", f"{s}.parquet")) for s in stems}
    passing = [
        t.filter(t.column("kept")).column(cfg.score).to_numpy(zero_copy_only=False)
        for t in raw.values()
    ]
    cutoff = top_fraction_cutoff(
        np.concatenate(passing) if passing else np.array([]), cfg.keep_top_fraction
    )
    kept = total = 0
    for stem, table in raw.items():
        rows = decide(table.to_pylist(), cfg, cutoff)
        kept += sum(r["kept"] for r in rows)
        total += len(rows)
        storage.write_parquet(
            _table(rows, table.schema), storage.join(part, "ledger", f"{stem}.parquet")
        )
    return {"kept": kept, "labeled": total, "cutoff": None if np.isinf(cutoff) else cutoff}


def read_ledger(part: str, kept_only: bool = False) -> pa.Table:
    """A partition's final ledger (``ledger/``), every shard's rows together."""
    files = storage.list_files(storage.join(part, "ledger"), ".parquet")
    if not files:
        raise FileNotFoundError(f"no ledger under {part}/ledger (run bigssl label)")
    table = pa.concat_tables([storage.read_parquet(f) for f in files])
    return table.filter(table.column("kept")) if kept_only else table
