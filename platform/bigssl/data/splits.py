"""Label budgets: nested labeled subsets, held-out dev/test, and the unlabeled pool view.

The paper's 100 h / 1 k h / 34 k h ablation scaled to any corpus. Nesting is by
construction: one seeded permutation of the labeled training pool, and each
budget is its shortest prefix reaching the requested hours, so a smaller budget
is always a subset of a larger one. Dev/test are held out first (by speaker when
``speaker_disjoint``), so no budget and no pool row overlaps them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bigssl import schemas, storage
from bigssl.config import Config, ConfigError, check


@dataclass
class SplitConfig(Config):
    hours: list[float] = field(default_factory=list)  # labeled budgets in hours (ascending)
    fractions: list[float] = field(
        default_factory=list
    )  # or budgets as fractions of the labeled pool
    # Held out for dev (validation and model selection while training); 0 = the manifest's
    # own dev split, if any. Three minutes by default: a run needs a dev set to say how it does.
    dev_hours: float = 0.05
    test_hours: float = 0.0  # held out for test (0 = keep the manifest's own test split, if any)
    speaker_disjoint: bool = True  # dev/test speakers never appear in train
    seed: int = 0  # the permutation behind every budget

    def validate(self) -> None:
        check(
            bool(self.hours) != bool(self.fractions),
            "hours",
            "give exactly one of hours or fractions",
        )
        for name, values in (("hours", self.hours), ("fractions", self.fractions)):
            check(all(v > 0 for v in values), name, "budgets must be > 0")
            check(values == sorted(values), name, "budgets must be ascending")
        check(all(f <= 1 for f in self.fractions), "fractions", "fractions must be <= 1")
        check(self.dev_hours >= 0 and self.test_hours >= 0, "dev_hours", "must be >= 0")


def budget_label(cfg: SplitConfig, index: int) -> str:
    if cfg.hours:
        return f"{cfg.hours[index]:g}h"
    return f"{cfg.fractions[index] * 100:g}pct"


def _take_hours(order: list, durations: dict, hours: float) -> list:
    """Shortest prefix of ``order`` holding at least ``hours`` (all of it if it holds less)."""
    taken, seconds = [], 0.0
    for key in order:
        if seconds >= hours * 3600:
            break
        taken.append(key)
        seconds += durations[key]
    return taken


def _hold_out(table: pa.Table, cfg: SplitConfig, rng: random.Random) -> dict[str, pa.Table]:
    """Split off dev and test; returns {"train": pool, "dev": ..., "test": ...}.

    Each of dev and test is either carved by hours (``dev_hours`` / ``test_hours`` > 0,
    by speaker when ``speaker_disjoint``) or, at 0, the manifest's own rows of that split.
    A manifest's official test set and a carved dev set therefore combine (FSDD: test =
    recording index 0-4, dev carved from the rest). Rows the manifest marks dev/test that
    a carved set does not take go back to the training pool.
    """
    given = table.column("split").to_pylist()
    aliases = {"dev": {"dev", "valid", "validation"}, "test": {"test"}}
    hours = {"dev": cfg.dev_hours, "test": cfg.test_hours}
    index: dict[str, list[int]] = {"test": [], "dev": []}
    held: set[int] = set()
    for name in ("test", "dev"):
        if not hours[name]:
            index[name] = [i for i, s in enumerate(given) if s in aliases[name] and i not in held]
            held.update(index[name])
    unit = "speaker" if cfg.speaker_disjoint else "id"
    keys = [
        k if k is not None else f"<none>:{i}" for i, k in enumerate(table.column(unit).to_pylist())
    ]
    seconds: dict = {}
    for i, (key, d) in enumerate(zip(keys, table.column("duration_s").to_pylist(), strict=True)):
        if i not in held:
            seconds[key] = seconds.get(key, 0.0) + d
    order = sorted(seconds)
    rng.shuffle(order)
    carved: dict[str, set] = {}
    rest = order
    for name in ("test", "dev"):
        if hours[name]:
            carved[name] = set(_take_hours(rest, seconds, hours[name]))
            rest = [k for k in rest if k not in carved[name]]
    if carved and not rest:
        raise ConfigError("dev_hours", f"dev+test take every {unit}; nothing is left to train on")
    train = []
    for i, key in enumerate(keys):
        if i in held:
            continue
        name = next((n for n, chosen in carved.items() if key in chosen), "train")
        (train if name == "train" else index[name]).append(i)
    parts = {**index, "train": train}
    return {k: table.take(pa.array(sorted(v), pa.int64())) for k, v in parts.items()}


def make_splits(manifest: pa.Table, cfg: SplitConfig) -> dict[str, pa.Table]:
    """{"labeled_<budget>": ..., "dev", "test", "unlabeled"} manifests (see module doc)."""
    rng = random.Random(cfg.seed)
    parts = _hold_out(manifest, cfg, rng)
    pool = parts["train"]
    labeled = pool.filter(pc.is_valid(pool.column("text")))
    ids = labeled.column("id").to_pylist()
    durations = dict(zip(ids, labeled.column("duration_s").to_pylist(), strict=True))
    order = sorted(ids)
    rng.shuffle(order)
    total_hours = sum(durations.values()) / 3600
    out: dict[str, pa.Table] = {}
    budgets = cfg.hours or [f * total_hours for f in cfg.fractions]
    for i, hours in enumerate(budgets):
        # A float fraction of 1.0 must take everything despite rounding.
        chosen = set(
            order
            if cfg.fractions and cfg.fractions[i] >= 1
            else _take_hours(order, durations, hours)
        )
        mask = pa.array([k in chosen for k in ids])
        out[f"labeled_{budget_label(cfg, i)}"] = labeled.filter(mask)
    out["dev"] = parts["dev"]
    out["test"] = parts["test"]
    # The unlabeled pool view: every training utterance, text dropped.
    out["unlabeled"] = pool.set_column(
        pool.schema.get_field_index("text"), "text", pa.nulls(len(pool), pa.string())
    )
    return out


def hours_of(table: pa.Table) -> float:
    return float(np.sum(table.column("duration_s").to_numpy())) / 3600 if len(table) else 0.0


def write_splits(manifest_uri: str, out: str, cfg: SplitConfig) -> dict[str, dict]:
    """Write each split as ``OUT/NAME.parquet`` (shard paths made relative to OUT)."""
    manifest = schemas.validate(storage.read_parquet(manifest_uri), "manifest")
    base = storage.resolve(manifest_uri)[1].rsplit("/", 1)[0]
    target = storage.resolve(out)[1]
    shards = [_relative(f"{base}/{s}", target) for s in manifest.column("shard").to_pylist()]
    manifest = manifest.set_column(
        manifest.schema.get_field_index("shard"), "shard", pa.array(shards)
    )
    info = {}
    for name, table in make_splits(manifest, cfg).items():
        table = schemas.validate(table, "manifest")
        storage.write_parquet(table, storage.join(out, f"{name}.parquet"))
        info[name] = {
            "utterances": len(table),
            "hours": round(hours_of(table), 6),
            "speakers": len(set(table.column("speaker").to_pylist()) - {None}),
        }
    return info


def _relative(path: str, start: str) -> str:
    import posixpath

    return posixpath.relpath(posixpath.normpath(path), posixpath.normpath(start))
