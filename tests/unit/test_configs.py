"""Every shipped recipe config loads into its typed config, takes overrides, refuses typos,
and builds (on the meta device: no memory)."""

from pathlib import Path

import pytest
import torch
import yaml

from bigssl.config import ConfigError
from bigssl.models import build_ssl_model_from_config, count_parameters
from bigssl.stages.pretrain import PretrainConfig

ALL = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
# Pre-training configs are named by preset; other stages' configs by "STAGE-NAME.yaml".
CONFIGS = [c for c in ALL if "-" not in c.stem]
FINETUNE = [c for c in ALL if c.stem.startswith("finetune-")]
SWEEP = [c for c in ALL if c.stem.startswith("sweep-")]
PAPER_PARAMS = {"xl": 0.6e9, "xxl": 1.0e9, "g": 8.0e9}


def test_configs_exist():
    assert {c.stem for c in CONFIGS} >= {"tiny", "xl", "xxl", "g"}


def _config_class(path: Path) -> type:
    from bigssl.stages.finetune import FinetuneConfig
    from bigssl.stages.sweep import SweepConfig

    if path in SWEEP:
        return SweepConfig
    return FinetuneConfig if path in FINETUNE else PretrainConfig


def _leaves(data: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _leaves(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return out


# A key every stage config has, under its section (a sweep nests the stages).
def _steps_key(path: Path) -> str:
    return "finetune.train.max_steps" if path in SWEEP else "train.max_steps"


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_every_key_a_shipped_config_sets_reaches_the_typed_config(path):
    """The YAML is a diff over typed defaults: each value it sets is the typed config's
    value (none dropped, renamed, or overwritten by a preset), the rest are defaults."""
    cls = _config_class(path)
    raw = _leaves(yaml.safe_load(path.read_text()))
    typed = _leaves(cls.load(path).to_dict())
    assert {k: typed.get(k, "<missing>") for k in raw} == raw
    assert raw.keys() < typed.keys()  # a short diff: defaults fill the rest


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_an_override_changes_that_field_only(path):
    cls, key = _config_class(path), _steps_key(path)
    before = _leaves(cls.load(path).to_dict())
    after = _leaves(cls.load(path, [f"{key}=7"]).to_dict())
    assert before[key] != 7
    assert {k for k in after if after[k] != before[k]} == {key}


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_a_typo_in_a_shipped_config_fails_naming_the_field(path, tmp_path):
    cls, key = _config_class(path), _steps_key(path)
    typo = key.replace("max_steps", "max_stpes")
    with pytest.raises(ConfigError) as err:
        cls.load(path, [f"{typo}=3"])
    assert err.value.field == typo
    # The same typo written into the file itself.
    data = yaml.safe_load(path.read_text())
    section = data
    for part in typo.split(".")[:-1]:
        section = section.setdefault(part, {})
    section["max_stpes"] = 3
    (tmp_path / path.name).write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as err:
        cls.load(tmp_path / path.name)
    assert err.value.field == typo


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_builds_the_size_its_name_says(path):
    cfg = PretrainConfig.load(path)
    with torch.device("meta"):
        model = build_ssl_model_from_config(cfg.model)
    params = count_parameters(model.encoder)
    if path.stem in PAPER_PARAMS:  # the file named after a paper size builds that size
        assert params == pytest.approx(PAPER_PARAMS[path.stem], rel=0.05)
    else:
        assert params < 5e6


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.stem)
def test_shipped_finetune_config_loads_and_builds(path):
    from bigssl.models import build_ctc_model
    from bigssl.stages.finetune import FinetuneConfig

    cfg = FinetuneConfig.load(path)
    with torch.device("meta"):
        model = build_ctc_model(cfg.encoder, 257, cfg.specaugment)
    assert count_parameters(model.head) == cfg.encoder.d_model * 257 + 257


def test_every_shipped_config_is_tested():
    assert set(ALL) == set(CONFIGS) | set(FINETUNE) | set(SWEEP)


def test_preset_then_explicit_encoder_keys_win():
    cfg = PretrainConfig.load(CONFIGS[0].parent / "xl.yaml", ["model.encoder.num_layers=2"])
    assert (cfg.model.encoder.d_model, cfg.model.encoder.num_layers) == (1024, 2)
    with pytest.raises(ConfigError) as err:
        PretrainConfig.load(None, ["preset=huge"])
    assert err.value.field == "preset"
