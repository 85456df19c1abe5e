"""Pure-PyTorch model core: Conformer encoder, wav2vec 2.0 and BEST-RQ objectives, CTC, RNN-T.

No Ray and no distributed code here; sharding is applied afterwards by a
separate parallelize step (it shards ``model.encoder.layers``).
"""

from bigssl.models.asr import asr_model_from_meta, build_asr_model
from bigssl.models.bestrq import BestRQConfig, BestRQModel
from bigssl.models.conformer import (
    ConformerConfig,
    ConformerEncoder,
    count_parameters,
    lengths_to_padding_mask,
)
from bigssl.models.ctc import CTCHead, CTCModel, build_ctc_model, ctc_loss
from bigssl.models.masking import compute_span_mask, expected_mask_fraction
from bigssl.models.presets import PRESETS, build_preset, expand_preset
from bigssl.models.rnnt import RNNTConfig, RNNTModel, build_rnnt_model
from bigssl.models.ssl import SSLConfig, build_ssl_model, build_ssl_model_from_config
from bigssl.models.wav2vec2 import Wav2Vec2Config, Wav2Vec2Model

__all__ = [
    "PRESETS",
    "BestRQConfig",
    "BestRQModel",
    "CTCHead",
    "CTCModel",
    "ConformerConfig",
    "ConformerEncoder",
    "RNNTConfig",
    "RNNTModel",
    "SSLConfig",
    "Wav2Vec2Config",
    "Wav2Vec2Model",
    "asr_model_from_meta",
    "build_asr_model",
    "build_ctc_model",
    "build_preset",
    "build_rnnt_model",
    "expand_preset",
    "build_ssl_model",
    "build_ssl_model_from_config",
    "compute_span_mask",
    "count_parameters",
    "ctc_loss",
    "expected_mask_fraction",
    "lengths_to_padding_mask",
]
