"""Model selection: dev scores beside checkpoints, k-best + keep-last-k retention, averaging.

Layout inside a run folder (next to Ray Train's ``checkpoint_*`` folders):
    checkpoint_S/dev.json   the dev scores of the model saved at step S (rank 0 writes it
                            after the checkpoint is committed)
    final/                  the selected model: the average of the k best checkpoints by
                            ``select.metric`` (or the best single one, if averaging scored
                            worse on dev), model weights only, ``meta.json`` naming it

Design decisions:
- Scores live in the checkpoint folders, not in a ledger of their own: retention,
  early stopping after a resume and the final selection all read the same files, and
  a deleted checkpoint takes its score with it.
- Retention keeps the union of the ``keep_best`` best scored checkpoints and the
  ``keep_last`` newest ones (resume needs the newest); a long run keeps a bounded
  number of folders. ESPnet's ``keep_nbest_models`` with averaging is the model.
- Averaging is over the weights of the k best (floating-point tensors; integer
  buffers such as BatchNorm's step counter come from the best one).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed.checkpoint as dcp

from bigssl import storage
from bigssl.config import Config, check
from bigssl.training import checkpoint as ckpt

SCORE_FILE = "dev.json"


@dataclass
class SelectConfig(Config):
    metric: Literal["dev_wer", "dev_cer", "dev_loss"] = "dev_wer"  # lower is better
    keep_best: int = 3  # best checkpoints kept (and averaged) by `metric`
    average: bool = True  # final model = average of the keep_best; else the best one
    patience: int = 0  # dev scorings without a new best before the run stops (0 = never)

    def validate(self) -> None:
        check(self.keep_best >= 1, "keep_best", "must be >= 1")
        check(self.patience >= 0, "patience", "must be >= 0 (0 = no early stopping)")


@dataclass(frozen=True)
class Scored:
    step: int
    path: str
    scores: dict[str, float]


def write_scores(checkpoint_dir: str, step: int, scores: dict[str, float]) -> None:
    storage.write_json(storage.join(checkpoint_dir, SCORE_FILE), {"step": step, **scores})


def checkpoints(run_dir: str) -> list[tuple[int, str]]:
    """(step, folder) of every committed checkpoint of a run, oldest first."""
    return ckpt.committed_checkpoints(run_dir)


def scored_checkpoints(run_dir: str) -> list[Scored]:
    """Committed checkpoints that carry dev scores, oldest first."""
    out = []
    for step, folder in checkpoints(run_dir):
        path = storage.join(folder, SCORE_FILE)
        if storage.exists(path):
            scores = storage.read_json(path)
            out.append(Scored(step, folder, {k: float(v) for k, v in scores.items()}))
    return out


def best(scored: list[Scored], metric: str, k: int) -> list[Scored]:
    """The ``k`` lowest by ``metric``; ties (a WER of 1.0 early on, say) go to the lower
    CER, then the lower dev loss, then the later step."""

    def key(s: Scored) -> tuple:
        tie = tuple(s.scores.get(m, 0.0) for m in ("dev_cer", "dev_loss") if m != metric)
        return (s.scores[metric], *tie, -s.step)

    return sorted(scored, key=key)[:k]


def retain(run_dir: str, keep_last: int, metric: str = "", keep_best: int = 0) -> list[str]:
    """Delete committed checkpoints neither among the ``keep_last`` newest nor the
    ``keep_best`` best by ``metric``; ``keep_last`` 0 keeps everything. Returns the deleted."""
    if keep_last <= 0:
        return []
    found = checkpoints(run_dir)
    keep = {folder for _, folder in found[-keep_last:]}
    if metric and keep_best:
        keep |= {s.path for s in best(scored_checkpoints(run_dir), metric, keep_best)}
    deleted = []
    for _, folder in found:
        if folder not in keep:
            storage.remove_tree(folder)
            deleted.append(folder)
    return deleted


def evaluations_since_best(scored: list[Scored], metric: str) -> int:
    """How many dev scorings came after the best one (0 when the newest is the best)."""
    if not scored:
        return 0
    top = best(scored, metric, 1)[0]
    return sum(1 for s in scored if s.step > top.step)


def average_weights(model: torch.nn.Module, folders: list[str]) -> dict[str, torch.Tensor]:
    """The element-wise mean of the model weights saved in ``folders`` (best first)."""
    sums: dict[str, torch.Tensor] = {}
    first: dict[str, torch.Tensor] = {}
    for folder in folders:
        ckpt.load_model_weights(folder, model)
        for name, tensor in model.state_dict().items():
            if name not in first:
                first[name] = tensor.detach().clone()
            if tensor.is_floating_point():
                sums[name] = sums.get(name, 0) + tensor.detach().double()
    return {
        name: (sums[name] / len(folders)).to(first[name].dtype) if name in sums else first[name]
        for name in first
    }


def save_model(
    target: str, model: torch.nn.Module, meta: dict[str, Any], files: dict[str, bytes]
) -> None:
    """A weights-only checkpoint folder (DCP + ``meta.json`` + ``files``) that the
    recogniser, ``bigssl evaluate`` and ``init=`` read like any other checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        with warnings.catch_warnings():  # "assuming the intent is to save in a single process"
            warnings.simplefilter("ignore", UserWarning)
            dcp.save({"model": model.state_dict()}, checkpoint_id=tmp, no_dist=True)
        Path(tmp, "meta.json").write_text(json.dumps(meta, indent=2, default=str))
        for name, data in files.items():
            Path(tmp, name).write_bytes(data)
        if storage.exists(target):
            storage.remove_tree(target)
        for path in sorted(Path(tmp).iterdir()):
            storage.write_bytes(storage.join(target, path.name), path.read_bytes())
