"""Dev-set scoring while training: CTC loss and greedy WER/CER of a fine-tuned model, or the
pre-training loss of an SSL model, on held-out rows.

Pure torch (no Ray): the trainer calls :func:`score_batches` on each rank's share of
the dev set and all-reduces the counts, so the rates are the corpus rates over the
whole dev set, whatever the number of workers; a test calls it in a plain loop.

Design decisions:
- Greedy CTC decoding: it needs no LM, costs one forward, and is what the model
  alone can do; beam search and LMs belong to ``bigssl evaluate``.
- Counts, not rates, cross ranks (:data:`COUNT_KEYS`): averaging per-rank WERs would
  weight a rank's few long utterances like another's many short ones.
- ``dev_loss`` is the training loss on dev data (each utterance's CTC loss over its
  target length, averaged over utterances), with SpecAugment and dropout off.
- Pre-training's held-out loss (:func:`score_ssl_batches`) is its objective on dev audio
  with dropout off, weighted by masked frames. Masks (and wav2vec 2.0's negatives) are
  random; each batch draws them from a generator seeded by its index, so every scoring
  of a run sees the same masks and the curve moves only with the model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from bigssl.decoding.ctc import greedy_decode
from bigssl.eval.wer import utterance_errors
from bigssl.models.ctc import ctc_loss
from bigssl.training.step import autocast_for, to_device

COUNT_KEYS = ("loss_sum", "utterances", "words", "errors", "chars", "char_errors")
METRICS = ("dev_wer", "dev_cer", "dev_loss")
SSL_COUNT_KEYS = ("loss_sum", "accuracy_sum", "masked", "utterances")
SSL_MASK_SEED = 1234


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Dropout and SpecAugment off while scoring; the model's mode put back after."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


@torch.no_grad()
def score_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[dict[str, Any], bool]],
    decode_text: Callable[[list[int]], str],
    device: torch.device,
    precision: str = "auto",
) -> dict[str, float]:
    """Error counts over ``(batch, counted)`` pairs; a batch with ``counted`` False is run
    and ignored (it keeps FSDP ranks in step when one has fewer dev batches).

    Each batch holds ``feats`` (B, T, F), ``lengths`` (B,), ``text`` (B,), ``targets``
    (B, S) and ``target_lengths`` (B,) (as fine-tuning's ``prepare_batch`` makes them).
    """
    counts = dict.fromkeys(COUNT_KEYS, 0.0)
    with _eval_mode(model):
        for batch, counted in batches:
            feats, lengths = to_device(batch, device)
            with autocast_for(device, precision):
                log_probs, out_lengths = model(feats, lengths)
            if not counted:
                continue
            target_lengths = torch.as_tensor(batch["target_lengths"]).to(device)
            losses = ctc_loss(
                log_probs,
                out_lengths,
                torch.as_tensor(batch["targets"]).to(device),
                target_lengths,
                reduction="none",
            )
            counts["loss_sum"] += float((losses / target_lengths.clamp(min=1)).sum())
            hypotheses = greedy_decode(log_probs.float().cpu(), out_lengths.cpu())
            for reference, hypothesis in zip(batch["text"], hypotheses, strict=True):
                errors = utterance_errors(str(reference), decode_text(hypothesis.tokens))
                for key in ("words", "errors", "chars", "char_errors"):
                    counts[key] += errors[key]
                counts["utterances"] += 1
    return counts


def rates(counts: dict[str, float]) -> dict[str, float]:
    """Summed counts -> ``dev_wer``, ``dev_cer``, ``dev_loss``, ``dev_utterances``."""
    utterances = max(counts["utterances"], 1.0)
    return {
        "dev_wer": counts["errors"] / max(counts["words"], 1.0),
        "dev_cer": counts["char_errors"] / max(counts["chars"], 1.0),
        "dev_loss": counts["loss_sum"] / utterances,
        "dev_utterances": counts["utterances"],
    }


@torch.no_grad()
def score_ssl_batches(
    model: torch.nn.Module,
    batches: Iterable[tuple[dict[str, Any], bool]],
    device: torch.device,
    precision: str = "auto",
) -> dict[str, float]:
    """Masked-frame-weighted sums of an SSL model's ``loss`` and ``accuracy`` over
    ``(batch, counted)`` pairs (see :func:`score_batches` for ``counted``)."""
    counts = dict.fromkeys(SSL_COUNT_KEYS, 0.0)
    devices = [device] if device.type == "cuda" else []
    with _eval_mode(model):
        for index, (batch, counted) in enumerate(batches):
            feats, lengths = to_device(batch, device)
            with torch.random.fork_rng(devices=devices):
                torch.manual_seed(SSL_MASK_SEED + index)
                with autocast_for(device, precision):
                    out = model(feats, lengths)
            if not counted:
                continue
            masked = float(out["num_masked"])
            counts["loss_sum"] += float(out["loss"]) * masked
            counts["accuracy_sum"] += float(out["accuracy"]) * masked
            counts["masked"] += masked
            counts["utterances"] += len(batch["lengths"])
    return counts


def ssl_rates(counts: dict[str, float]) -> dict[str, float]:
    """Summed SSL counts -> ``dev_loss``, ``dev_accuracy``, ``dev_utterances``."""
    masked = max(counts["masked"], 1.0)
    return {
        "dev_loss": counts["loss_sum"] / masked,
        "dev_accuracy": counts["accuracy_sum"] / masked,
        "dev_utterances": counts["utterances"],
    }


@dataclass(frozen=True)
class Scorer:
    """What a trainer scores its dev set with: count keys (summed across ranks), a
    function from (model, plan, device, precision) to counts, and counts -> rates."""

    keys: tuple[str, ...]
    count: Callable[..., dict[str, float]]
    rates: Callable[[dict[str, float]], dict[str, float]]


def ctc_scorer(decode_text: Callable[[list[int]], str]) -> Scorer:
    """Fine-tuning's: CTC loss and greedy WER/CER, token ids decoded by ``decode_text``."""

    def count(model, plan, device, precision):
        return score_batches(model, plan, decode_text, device, precision)

    return Scorer(COUNT_KEYS, count, rates)


SSL_SCORER = Scorer(SSL_COUNT_KEYS, score_ssl_batches, ssl_rates)  # pre-training's
