"""CTC decoding (greedy, beam search with an optional KenLM), RNN-T greedy decoding, and
hypothesis confidences (no Ray)."""

from bigssl.decoding.ctc import (
    BeamDecoder,
    GreedyDecoder,
    Hypothesis,
    SearchConfig,
    alignment_logprob,
    beam_available,
    build_decoder,
    greedy_decode,
    is_blank_only,
    repetition_ratio,
)
from bigssl.decoding.rnnt import RNNTGreedyDecoder, rnnt_greedy_decode

__all__ = [
    "BeamDecoder",
    "SearchConfig",
    "GreedyDecoder",
    "Hypothesis",
    "RNNTGreedyDecoder",
    "alignment_logprob",
    "beam_available",
    "build_decoder",
    "greedy_decode",
    "is_blank_only",
    "repetition_ratio",
    "rnnt_greedy_decode",
]
