"""Choosing and building the self-supervised objective.

Design decisions:
- :class:`SSLConfig` holds both objectives' sub-configs, so a YAML file or a sweep
  can address ``wav2vec2.mask_prob`` and ``bestrq.mask_prob`` alike; ``objective``
  picks the one that is built, the other is validated and ignored.
- Both models share one interface -- ``forward(features, lengths, mask=None) ->
  dict`` with a ``loss`` key, ``set_step(step)``, and an ``encoder`` attribute
  whose ``layers`` a parallelize step shards -- so trainers never branch on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bigssl.config import Config, ConfigError
from bigssl.models.bestrq import BestRQConfig, BestRQModel
from bigssl.models.conformer import ConformerConfig, ConformerEncoder
from bigssl.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

Objective = Literal["wav2vec2", "bestrq"]
SSLModel = Wav2Vec2Model | BestRQModel


@dataclass
class SSLConfig(Config):
    """Pre-training model: encoder sizes plus the objective and its settings."""

    objective: Objective = "wav2vec2"
    """Which self-supervised objective to build."""
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    """Encoder sizes; defaults are the ``tiny`` preset."""
    wav2vec2: Wav2Vec2Config = field(default_factory=Wav2Vec2Config)
    """Settings used when ``objective`` is ``wav2vec2``."""
    bestrq: BestRQConfig = field(default_factory=BestRQConfig)
    """Settings used when ``objective`` is ``bestrq``."""


def build_ssl_model(
    objective: Objective,
    encoder_cfg: ConformerConfig,
    objective_cfg: Wav2Vec2Config | BestRQConfig,
) -> SSLModel:
    """A fresh pre-training model for ``objective`` on a new encoder."""
    expected = {"wav2vec2": Wav2Vec2Config, "bestrq": BestRQConfig}.get(objective)
    if expected is None:
        raise ConfigError("objective", f"{objective!r} is not one of ['wav2vec2', 'bestrq']")
    if not isinstance(objective_cfg, expected):
        raise ConfigError(
            objective, f"expected a {expected.__name__}, got {type(objective_cfg).__name__}"
        )
    encoder = ConformerEncoder(encoder_cfg)
    if isinstance(objective_cfg, Wav2Vec2Config):
        return Wav2Vec2Model(encoder, objective_cfg)
    return BestRQModel(encoder, objective_cfg)


def build_ssl_model_from_config(cfg: SSLConfig) -> SSLModel:
    """:func:`build_ssl_model` for the objective ``cfg`` selects."""
    objective_cfg = cfg.wav2vec2 if cfg.objective == "wav2vec2" else cfg.bestrq
    return build_ssl_model(cfg.objective, cfg.encoder, objective_cfg)
