"""Complete checkpoints: model, optimizer, schedule, step, RNG, data position, meta.json.

Layout of one checkpoint folder (what Ray Train uploads and hands back on resume):
    *.distcp, .metadata   model + optimizer through torch.distributed.checkpoint (DCP):
                          every rank writes its own FSDP2 shards in parallel
    train_state.json      step, scheduler state, merged data position (rank 0)
    rng-rank{R}.pt        each rank's torch / numpy / python RNG state
    meta.json             config, model kind, schema versions, world size, step (rank 0)

A run folder holds ``checkpoint_<step>/`` folders, each ``COMMITTED`` once Ray Train
has registered it, and, after model selection, ``final/``; :func:`resolve_checkpoint`
turns a run folder or a checkpoint folder into the checkpoint to load.

``get_state_dict`` / ``set_state_dict`` make the same files load under FSDP2, DDP
or a plain module, so :func:`load_model_weights` (and :func:`load_encoder_weights`,
the encoder alone) fills a single-process model from any of them without a process
group.
"""

from __future__ import annotations

import json
import random
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    get_state_dict,
    set_state_dict,
)

from bigssl import schemas, storage


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def rng_state() -> dict[str, Any]:
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def save_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    step: int,
    position: dict[str, Any],
    meta: dict[str, Any],
) -> None:
    """Every rank calls this with the same ``directory`` name (its own local folder under Ray)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(directory))
    rank = _rank()
    torch.save(rng_state(), directory / f"rng-rank{rank}.pt")
    if rank == 0:
        state = {"step": step, "scheduler": scheduler.state_dict(), "position": position}
        (directory / "train_state.json").write_text(json.dumps(state))
        full_meta = {
            **meta,
            "step": step,
            "world_size": dist.get_world_size() if dist.is_initialized() else 1,
            "schema_versions": {
                n: int(schemas.load(n).metadata[b"version"]) for n in ("features", "manifest")
            },
        }
        (directory / "meta.json").write_text(json.dumps(full_meta, indent=2, default=str))


def load_checkpoint(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any]:
    """Restore everything in place; returns train_state.json (step, position)."""
    directory = Path(directory)
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    dcp.load(state, checkpoint_id=str(directory))
    set_state_dict(
        model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"]
    )
    train_state = json.loads((directory / "train_state.json").read_text())
    scheduler.load_state_dict(train_state["scheduler"])
    rng_file = directory / f"rng-rank{_rank()}.pt"
    if rng_file.exists():  # absent when resuming on more workers than saved
        set_rng_state(torch.load(rng_file, weights_only=False))
    return train_state


def read_meta(directory: str | Path) -> dict[str, Any]:
    return storage.read_json(storage.join(directory, "meta.json"))


@contextmanager
def local_copy(directory: str | Path) -> Iterator[str]:
    """A local folder holding the checkpoint: ``directory`` itself when it is local, else a
    temporary download (DCP's reader takes local paths only)."""
    if not storage.is_remote(str(directory)):
        yield str(directory)
        return
    fs, path = storage.resolve(directory)
    with tempfile.TemporaryDirectory(prefix="bigssl-ckpt-") as tmp:
        # Every file, DCP's ".metadata" too (storage.list_files skips dot files).
        pafs.copy_files(
            path, tmp, source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
        )
        yield tmp


def load_model_weights(directory: str | Path, model: torch.nn.Module) -> None:
    """Load only the model weights of a checkpoint (local or ``s3://``) into a plain
    single-process module."""
    state = {"model": model.state_dict()}
    with local_copy(directory) as local, warnings.catch_warnings():
        # "assuming the intent is to load in a single process": yes
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=local, no_dist=True)
    model.load_state_dict(state["model"])


def load_encoder_weights(encoder: torch.nn.Module, checkpoint: str | Path) -> None:
    """Copy the ``encoder.*`` tensors of any checkpoint (pre-training or fine-tuning) into
    ``encoder``, reading only those keys (DCP loads what the state dict asks for)."""
    state = {"model": {f"encoder.{k}": v for k, v in encoder.state_dict().items()}}
    with local_copy(checkpoint) as local, warnings.catch_warnings():
        # "assuming the intent is to load in a single process": yes
        warnings.simplefilter("ignore", UserWarning)
        dcp.load(state, checkpoint_id=local, no_dist=True)
    encoder.load_state_dict({k[len("encoder.") :]: v for k, v in state["model"].items()})


WORDS_FILE = "words.txt"  # a fine-tuned model's training vocabulary (decode.lexicon=train)
COMMITTED = "COMMITTED"  # written by the driver once Ray Train has registered the checkpoint
# A run folder's selected model (written by bigssl.training.selection, whose FINAL it is).
FINAL = "final"


def registered_uri(run_dir: str, checkpoint: Any) -> str | None:
    """The URI of a Ray Train ``Checkpoint`` of the run in ``run_dir`` (None for None).

    ``Checkpoint.path`` is a path inside its ``filesystem``: on S3 ``bucket/prefix/...``
    with the scheme dropped, which read later as a local, relative path (a sweep trial
    then looked for its pre-trained encoder inside its Tune working directory).
    """
    if checkpoint is None:
        return None
    return storage.join(run_dir, str(checkpoint.path).rstrip("/").rsplit("/", 1)[-1])


def committed_checkpoints(run_dir: str | Path) -> list[tuple[int, str]]:
    """(step, folder) of every committed checkpoint of a run (local or ``s3://``), oldest first."""
    found = []
    for folder in storage.list_dirs(run_dir):
        name = folder.rstrip("/").rsplit("/", 1)[-1]
        if name.startswith("checkpoint_") and storage.exists(storage.join(folder, COMMITTED)):
            found.append((int(name.removeprefix("checkpoint_")), folder.rstrip("/")))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> str | None:
    """Newest committed checkpoint folder under a run folder, or None."""
    found = committed_checkpoints(run_dir)
    return found[-1][1] if found else None


def resolve_checkpoint(uri: str) -> str:
    """A checkpoint folder, or a run folder's selected model (``final``) or else its newest
    committed checkpoint (absolute: Ray workers run in folders of their own)."""
    uri = storage.absolute(uri)
    if storage.exists(storage.join(uri, "meta.json")):
        return uri
    if storage.exists(storage.join(uri, FINAL, "meta.json")):
        return storage.join(uri, FINAL)
    latest = latest_checkpoint(uri)
    if latest is None:
        raise FileNotFoundError(f"no checkpoint (meta.json) at {uri}, nor a committed one under it")
    return str(latest)
