"""The sweep's upstream: artifacts every trial shares, computed once and cached by content.

Splits, one feature pass, the tokenizer and one pre-training per preset live under
``cache/<stage>-<key>/``, where the key hashes the stage's config, the keys (or,
for the corpus, the manifest bytes) of its inputs, and the code and schema versions. A re-run, or another sweep
pointed at the same cache, reuses them; a changed config makes a new entry beside
the old one. Every producer is restartable in place, so a crash costs only its
unfinished part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bigssl import __version__, schemas, storage
from bigssl.config import ConfigError
from bigssl.data.splits import budget_label, write_splits
from bigssl.models import expand_preset
from bigssl.stages.pretrain import PretrainConfig, run_pretrain
from bigssl.stages.tokenizer import run_tokenizer

if TYPE_CHECKING:
    from bigssl.stages.sweep_plan import GridConfig, SweepConfig


def _versions() -> dict[str, Any]:
    """What else makes an artifact: the code's release and the on-disk schemas' versions."""
    return {
        "bigssl": __version__,
        **{n: schemas.load(n).metadata[b"version"].decode() for n in ("features", "manifest")},
    }


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (configs and upstream keys), and of the code
    and schema versions: an entry made by another release is not reused."""
    blob = json.dumps([_versions(), *parts], sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def cached(cache: str, stage: str, key: str, produce: Callable[[str], dict]) -> tuple[str, dict]:
    """``produce(folder)`` once per (stage, key); later calls return the recorded result.

    Every producer is itself restartable in place (featurize per shard, pre-training
    from its checkpoint), so a crash before ``CACHED.json`` costs only the unfinished
    part on the next run.
    """
    folder = storage.join(cache, f"{stage}-{key}")
    marker = storage.join(folder, "CACHED.json")
    if storage.exists(marker):
        print(f"-- {stage}: reusing {folder}", flush=True)
        return folder, storage.read_json(marker)["result"]
    print(f"-- {stage} -> {folder}", flush=True)
    result = produce(folder)
    storage.write_json(marker, {"stage": stage, "key": key, "result": result})
    return folder, result


@dataclass
class Upstream:
    """What every trial shares: paths of the cached artifacts (plain data: it travels to trials)."""

    corpus: str
    splits: str
    features: str
    tokenizer: str
    budgets: dict[str, float]  # budget label -> labeled hours of its manifest
    pretrained: dict[str, str]  # preset -> pre-training checkpoint


def build_upstream(cfg: SweepConfig, out: str, ray_address: str | None) -> Upstream:
    manifest = storage.join(cfg.corpus, "manifest.parquet")
    if not storage.exists(manifest):
        raise FileNotFoundError(f"{manifest} (sweep.corpus must be a `bigssl prepare` output)")
    cache = cfg.cache or storage.join(out, "cache")
    corpus_key = hashlib.sha256(storage.read_bytes(manifest)).hexdigest()[:16]

    split_key = content_key(cfg.split.to_dict(), corpus_key)
    splits, split_info = cached(
        cache, "split", split_key, lambda d: write_splits(manifest, d, cfg.split)
    )
    budgets = {
        budget_label(cfg.split, i): split_info[f"labeled_{budget_label(cfg.split, i)}"]["hours"]
        for i in range(len(cfg.split.hours or cfg.split.fractions))
    }
    _check_budgets(cfg.grid, budgets)

    def featurize(folder: str) -> dict:
        from bigssl.stages.featurize import run_featurize

        summary = run_featurize(cfg.corpus, folder, cfg.featurize, ray_address)
        summary.finish(folder)
        return summary.to_dict()

    features_key = content_key(cfg.featurize.to_dict(), corpus_key)
    features, _ = cached(cache, "featurize", features_key, featurize)

    largest = f"labeled_{list(budgets)[-1]}.parquet"

    def tokenize(folder: str) -> dict:
        # Trained on the largest budget's text: a text resource shared by every trial.
        summary, _ = run_tokenizer(storage.join(splits, largest), folder, cfg.tokenizer)
        return summary.finish(folder)

    tokenizer_dir, _ = cached(
        cache, "tokenizer", content_key(cfg.tokenizer.to_dict(), split_key), tokenize
    )
    pretrained = {}
    if any(r.startswith("ssl") for r in cfg.grid.recipes):
        for preset in cfg.grid.presets:
            pretrained[preset] = _pretrain(
                cfg, cache, preset, features, features_key, (splits, split_key), ray_address
            )
    return Upstream(
        cfg.corpus,
        splits,
        features,
        storage.join(tokenizer_dir, "tokenizer.model"),
        budgets,
        pretrained,
    )


def _check_budgets(grid: GridConfig, budgets: dict[str, float]) -> None:
    for name, chosen in (("budgets", grid.budgets), ("nst_budgets", grid.nst_budgets)):
        unknown = sorted(set(chosen) - set(budgets))
        if unknown:
            raise ConfigError(f"grid.{name}", f"{unknown} not among the split's {list(budgets)}")


def _pretrain(
    cfg: SweepConfig,
    cache: str,
    preset: str,
    features: str,
    features_key: str,
    splits: tuple[str, str],
    ray_address: str | None,
) -> str:
    data = cfg.pretrain.to_dict()
    # The split's training pool: pre-training never hears the dev/test audio it is scored on.
    pool = storage.join(splits[0], "unlabeled.parquet")
    data.update(preset=preset, features=features, manifest=pool, run_name="pretrain")
    data["model"].pop("encoder")  # the preset decides the sizes
    pt = PretrainConfig.from_dict(expand_preset(data, ("model", "encoder")))
    key_config = {**pt.to_dict(), "features": features_key, "manifest": splits[1]}

    def produce(folder: str) -> dict:
        summary = run_pretrain(pt, folder, ray_address)
        return summary.finish(storage.join(folder, pt.run_name))

    _, result = cached(cache, f"pretrain-{preset}", content_key(key_config), produce)
    return result["checkpoint"]
