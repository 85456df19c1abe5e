"""The dev set while training and after it: its rows, each rank's scoring of its share
under Ray Train, and the choice of the final model from the scored checkpoints.

Design decisions:
- Scoring is the trainer's, whatever it scores with (a
  :class:`~bigssl.training.validation.Scorer`: CTC WER/CER for fine-tuning, the
  objective's held-out loss for pre-training); this module only plans batches and sums
  counts across ranks, so the rates are the whole dev set's.
- Ranks run the same number of dev batches (FSDP's forward is a collective): a rank with
  fewer repeats its last one uncounted, or a dummy batch when it has none.
- The final model is the average of the k best checkpoints by the dev metric (ESPnet's
  ``keep_nbest_models``), or the best single one when the average scores worse on dev.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow.compute as pc
import torch
import torch.distributed as dist

from bigssl import storage
from bigssl.config import ConfigError
from bigssl.data.bucketing import collate_features, greedy_cut
from bigssl.models.asr import asr_model_from_meta
from bigssl.stages.training_data import Selection, quarantined_ids, usable_rows
from bigssl.text.tokenizer import Tokenizer
from bigssl.training import checkpoint as ckpt
from bigssl.training import selection as select
from bigssl.training.step import Stepper
from bigssl.training.validation import Scorer, ctc_scorer

DEV_COLUMNS = ["id", "feats", "num_frames", "num_mel_bins", "text"]
Prepare = Callable[[dict], dict]


def dev_selection(features: str, manifest: str) -> Selection:
    """The dev manifest's labeled rows that have features."""
    table = storage.read_parquet(manifest)
    table = table.filter(pc.is_valid(table.column("text")))
    rows, _ = usable_rows(table, quarantined_ids(features))
    if not rows:
        raise ConfigError("dev", f"{manifest} has no labeled row with features in {features}")
    return Selection(ids=list(rows), shards=set(rows.values()))


def dev_batches(rows: list[dict], max_frames: int, prepare: Prepare | None = None) -> list[dict]:
    """Feature rows cut by length into collated (and prepared) batches."""
    frames = lambda r: int(r["num_frames"])  # noqa: E731
    prepare = prepare or (lambda b: b)
    cut = greedy_cut(sorted(rows, key=frames), frames, max_frames)
    return [prepare(collate_features(batch)) for batch in cut]


class DevSet:
    """This rank's share of the ``dev`` dataset, read once and kept as prepared batches."""

    def __init__(self, scorer: Scorer, max_frames: int, prepare: Prepare | None, num_mel: int):
        self.scorer, self.max_frames, self.prepare, self.num_mel = (
            scorer,
            max_frames,
            prepare,
            num_mel,
        )
        self.batches: list[dict] | None = None

    def score(self, stepper: Stepper) -> dict[str, float]:
        if self.batches is None:
            import ray.train

            rows = list(ray.train.get_dataset_shard("dev").iter_rows())
            self.batches = dev_batches(rows, self.max_frames, self.prepare)
        own = most = len(self.batches)
        if dist.is_initialized():
            count = torch.tensor([own], device=stepper.device)
            dist.all_reduce(count, op=dist.ReduceOp.MAX)
            most = int(count.item())
        filler = self.batches[-1] if self.batches else self._dummy()
        plan = [(b, True) for b in self.batches] + [(filler, False)] * (most - own)
        counts = self.scorer.count(stepper.model, plan, stepper.device, stepper.precision)
        keys = self.scorer.keys
        totals = torch.tensor([counts[k] for k in keys], dtype=torch.float64)
        if dist.is_initialized():
            totals = totals.to(stepper.device)
            dist.all_reduce(totals)
        return self.scorer.rates(dict(zip(keys, totals.cpu().tolist(), strict=True)))

    def _dummy(self) -> dict:
        return {"feats": np.zeros((1, 64, self.num_mel), np.float32), "lengths": np.array([64])}


def score_dev(
    model: torch.nn.Module, batches: list[dict], tokenizer: Tokenizer
) -> dict[str, float]:
    """Dev rates of a plain (single-process) CTC model on prepared batches."""
    scorer = ctc_scorer(tokenizer.decode)
    counts = scorer.count(model, [(b, True) for b in batches], torch.device("cpu"), "auto")
    return scorer.rates(counts)


def select_final(
    cfg: select.SelectConfig, run_dir: str, batches: list[dict], tokenizer: Tokenizer
) -> dict[str, Any]:
    """Write ``RUN/final`` from the scored checkpoints (see module doc); what was chosen.
    ``batches`` are the dev set's, prepared as fine-tuning prepares them."""
    metric = cfg.metric
    top = select.best(select.scored_checkpoints(run_dir), metric, cfg.keep_best)
    if not top:
        return {}
    meta = ckpt.read_meta(top[0].path)
    model = asr_model_from_meta(meta)
    chosen = {"kind": "best", "steps": [top[0].step], "scores": top[0].scores}
    if cfg.average and len(top) > 1:
        model.load_state_dict(select.average_weights(model, [t.path for t in top]))
        averaged = score_dev(model, batches, tokenizer)
        chosen["averaged_scores"] = averaged
        if averaged[metric] <= top[0].scores[metric]:
            chosen = {
                **chosen,
                "kind": "average",
                "steps": [t.step for t in top],
                "scores": averaged,
            }
    if chosen["kind"] == "best":
        ckpt.load_model_weights(top[0].path, model)
    chosen["best_single"] = {"step": top[0].step, "scores": top[0].scores}
    files = {"tokenizer.model": tokenizer.model_bytes}
    words = storage.join(top[0].path, ckpt.WORDS_FILE)
    if storage.exists(words):
        files[ckpt.WORDS_FILE] = storage.read_bytes(words)
    select.save_model(storage.join(run_dir, ckpt.FINAL), model, {**meta, "selected": chosen}, files)
    return chosen
