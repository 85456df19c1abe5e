"""The sweep's grid: its config and its trials, planned without Ray (tests/unit).

A trial is (recipe, budget, preset, seed, generation). ``scratch`` and ``ssl``
fine-tune from a random or the pre-trained encoder (generation 0); ``<init>+nst``
adds noisy students, generation ``g`` taught by generation ``g - 1`` of the same
budget, preset and seed. Running them is :mod:`bigssl.stages.sweep`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bigssl.config import Config, ConfigError, apply_override, check, load_dict
from bigssl.data.features import FeaturizeConfig
from bigssl.data.splits import SplitConfig
from bigssl.models import expand_preset
from bigssl.stages.evaluate import EvaluateConfig
from bigssl.stages.finetune import FinetuneConfig
from bigssl.stages.label import LabelConfig
from bigssl.stages.pretrain import PretrainConfig
from bigssl.text.tokenizer import TokenizerConfig

INITS = ("scratch", "ssl")


@dataclass
class GridConfig(Config):
    recipes: list[str] = field(default_factory=lambda: ["scratch", "ssl", "ssl+nst"])
    """scratch | ssl | scratch+nst | ssl+nst: encoder init, then noisy-student training."""
    budgets: list[str] = field(default_factory=list)
    """Budget labels of the split (e.g. 1pct, 100h); empty = every budget."""
    nst_budgets: list[str] = field(default_factory=list)
    """Budgets the +nst recipes run on; empty = all but the largest (nothing left to label)."""
    nst_generations: int = 1
    """Teacher -> student rounds of the +nst recipes."""
    presets: list[str] = field(default_factory=lambda: ["tiny"])
    """Encoder sizes; one pre-training per preset."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Fine-tuning seeds; the report's spread is over them."""

    def validate(self) -> None:
        for recipe in self.recipes:
            init, _, nst = recipe.partition("+")
            check(
                init in INITS and nst in ("", "nst"),
                "recipes",
                f"{recipe!r} is not one of scratch, ssl, scratch+nst, ssl+nst",
            )
        check(bool(self.recipes), "recipes", "at least one recipe")
        check(self.nst_generations >= 1, "nst_generations", "must be >= 1")
        check(bool(self.presets) and bool(self.seeds), "presets", "at least one preset and seed")


@dataclass
class SweepConfig(Config):
    name: str = "sweep"  # sweep name: the results rows' key with trial_id
    corpus: str = ""  # a `bigssl prepare` output (manifest.parquet + shards/)
    cache: str = ""  # shared upstream artifacts, cached by content (default OUT/cache)
    test_sets: list[str] = field(
        default_factory=lambda: ["test"]
    )  # split tables scored; first = primary
    max_concurrent_trials: int = 1  # trials at once (each asks for its own Train workers)
    # A noisy student starts from its recipe's init (BigSSL: the pre-trained encoder, or
    # scratch) or continues from its teacher's encoder (iterative pseudo-labeling).
    student_init: Literal["recipe", "teacher"] = "teacher"
    # key=value overrides of `finetune` for noisy-student trials (e.g. pseudo_ratio=1).
    student: list[str] = field(default_factory=list)
    split: SplitConfig = field(default_factory=lambda: SplitConfig(fractions=[0.01, 0.1, 1.0]))
    featurize: FeaturizeConfig = field(default_factory=FeaturizeConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    grid: GridConfig = field(default_factory=GridConfig)

    def validate(self) -> None:
        check(bool(self.name) and "/" not in self.name, "name", "a non-empty name without '/'")
        check(bool(self.test_sets), "test_sets", "at least one split table to score")
        check(self.max_concurrent_trials >= 1, "max_concurrent_trials", "must be >= 1")
        student_finetune(self.finetune, self.student)  # unknown keys fail now, not in a trial

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None):
        data = load_dict(path, overrides)
        expand_preset(data.get("pretrain", {}), ("model", "encoder"))
        expand_preset(data.get("finetune", {}))
        return cls.from_dict(data)


def plan_trials(cfg: SweepConfig, budgets: list[str]) -> list[dict[str, Any]]:
    """Every trial of the grid as Tune params: recipe, budget, preset, seed, generation."""
    grid = cfg.grid
    chosen = grid.budgets or budgets
    nst_budgets = grid.nst_budgets or budgets[:-1]
    trials = []
    for preset in grid.presets:
        for budget in chosen:
            for seed in grid.seeds:
                for recipe in grid.recipes:
                    init, _, nst = recipe.partition("+")
                    if nst and budget not in nst_budgets:
                        continue
                    generations = grid.nst_generations if nst else 0
                    for generation in range(generations + 1):
                        trials.append(
                            {
                                "recipe": recipe if generation else init,
                                "init": init,
                                "budget": budget,
                                "preset": preset,
                                "seed": seed,
                                "generation": generation,
                            }
                        )
    # A scratch / ssl trial appears once even when its +nst recipe also needs it.
    unique = {trial_id(t): t for t in trials}
    return list(unique.values())


def trial_id(params: dict[str, Any]) -> str:
    nst = f"-nst{params['generation']}" if params["generation"] else ""
    return f"{params['preset']}-{params['budget']}-{params['init']}{nst}-seed{params['seed']}"


def teacher_params(params: dict[str, Any]) -> dict[str, Any]:
    """The params of the trial whose checkpoint teaches this (noisy-student) trial."""
    return {**params, "generation": params["generation"] - 1}


def student_finetune(finetune: FinetuneConfig, overrides: list[str]) -> FinetuneConfig:
    """The fine-tuning config of noisy-student trials: ``finetune`` with the sweep's
    ``student`` overrides (a bad key names ``student[key]``)."""
    data = finetune.to_dict()
    try:
        for item in overrides:
            apply_override(data, item)
        return FinetuneConfig.from_dict(data)
    except ConfigError as err:
        raise ConfigError(f"student[{err.field}]", err.message) from None
