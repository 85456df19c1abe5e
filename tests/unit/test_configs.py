"""Every shipped recipe config loads, validates and builds (on the meta device: no memory)."""

from pathlib import Path

import pytest
import torch

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


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_config_loads_and_builds(path):
    cfg = PretrainConfig.load(path)
    assert cfg.preset == path.stem
    with torch.device("meta"):
        model = build_ssl_model_from_config(cfg.model)
    params = count_parameters(model.encoder)
    if cfg.preset in PAPER_PARAMS:
        assert params == pytest.approx(PAPER_PARAMS[cfg.preset], rel=0.05)
        assert cfg.scaling.use_gpu and cfg.scaling.strategy == "fsdp"
    else:
        assert params < 5e6


@pytest.mark.parametrize("path", FINETUNE, ids=lambda p: p.stem)
def test_shipped_finetune_config_loads_and_builds(path):
    from bigssl.models import build_ctc_model
    from bigssl.stages.finetune import FinetuneConfig

    cfg = FinetuneConfig.load(path)
    assert cfg.encoder.d_model > 0 and cfg.head_lr > 0
    with torch.device("meta"):
        model = build_ctc_model(cfg.encoder, 257, cfg.specaugment)
    assert count_parameters(model.head) == cfg.encoder.d_model * 257 + 257


@pytest.mark.parametrize("path", SWEEP, ids=lambda p: p.stem)
def test_shipped_sweep_config_loads(path):
    from bigssl.stages.sweep import SweepConfig

    cfg = SweepConfig.load(path)
    assert cfg.grid.recipes and cfg.pretrain.model.encoder.d_model > 0


def test_every_shipped_config_is_tested():
    assert set(ALL) == set(CONFIGS) | set(FINETUNE) | set(SWEEP)


def test_preset_then_explicit_encoder_keys_win():
    cfg = PretrainConfig.load(CONFIGS[0].parent / "xl.yaml", ["model.encoder.num_layers=2"])
    assert (cfg.model.encoder.d_model, cfg.model.encoder.num_layers) == (1024, 2)
    with pytest.raises(ConfigError) as err:
        PretrainConfig.load(None, ["preset=huge"])
    assert err.value.field == "preset"
