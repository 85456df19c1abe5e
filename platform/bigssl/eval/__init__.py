"""Scoring: WER and CER through jiwer on normalised text (no Ray)."""

from bigssl.eval.wer import aggregate, score, utterance_errors

__all__ = ["aggregate", "score", "utterance_errors"]
