"""The recogniser a fine-tuning run trains and a checkpoint rebuilds: encoder + CTC or RNN-T head."""

from __future__ import annotations

from typing import Any, Literal

from bigssl.audio.specaugment import SpecAugmentConfig
from bigssl.models.conformer import ConformerConfig
from bigssl.models.ctc import CTCModel, build_ctc_model
from bigssl.models.rnnt import RNNTConfig, RNNTModel, build_rnnt_model

Head = Literal["ctc", "rnnt"]


def build_asr_model(
    encoder_cfg: ConformerConfig,
    vocab_size: int,
    head: Head = "ctc",
    rnnt: RNNTConfig | None = None,
    specaugment: SpecAugmentConfig | None = None,
) -> CTCModel | RNNTModel:
    if head == "ctc":
        return build_ctc_model(encoder_cfg, vocab_size, specaugment)
    if head == "rnnt":
        return build_rnnt_model(encoder_cfg, vocab_size, rnnt, specaugment)
    raise ValueError(f"head must be 'ctc' or 'rnnt', got {head!r}")


def asr_model_from_meta(meta: dict[str, Any]) -> CTCModel | RNNTModel:
    """The untrained model a fine-tuning checkpoint's ``meta.json`` describes (CTC when the
    checkpoint predates RNN-T)."""
    return build_asr_model(
        ConformerConfig.from_dict(meta["encoder"]),
        meta["vocab_size"],
        meta.get("head", "ctc"),
        RNNTConfig.from_dict(meta.get("rnnt", {})),
    )
