"""RNN-T greedy decoding, batched, with the same confidences as CTC's.

Dimension legend: B batch, T' encoder frames, J joint width, V vocabulary (0 = blank).

Design decisions:
- **Batched over utterances, stepped over frames.** At each frame every utterance
  still on it takes one joiner step; those that emit a token feed it to the
  prediction network (the step runs for the whole batch, and only emitters take
  the new state), those that emit the blank move on. An utterance emits at most
  ``max_symbols_per_frame`` tokens per frame, then a blank is forced, so decoding
  always ends. The encoder side of the joiner is projected once per batch.
- **Confidences** mirror :mod:`bigssl.decoding.ctc`: ``logprob`` is the log-probability
  of the greedy path (every emitted token and every blank), ``avg_logprob`` divides it
  by the valid encoder frames, and ``mean_max_prob`` is the mean largest probability
  over the path's steps (CTC's is over frames: one step each).
- Beam search for RNN-T is not built; :class:`RNNTGreedyDecoder` says so via ``kind``.
"""

from __future__ import annotations

import torch

from bigssl.decoding.ctc import Hypothesis
from bigssl.models.rnnt import BLANK_ID, RNNTModel


@torch.inference_mode()
def rnnt_greedy_decode(
    model: RNNTModel, features: torch.Tensor, lengths: torch.Tensor
) -> list[Hypothesis]:
    """features (B, T, F), lengths (B,) -> one :class:`Hypothesis` per utterance."""
    encoded, out_lengths = model.encode(features, lengths)
    head = model.head
    max_symbols = head.cfg.max_symbols_per_frame
    batch = encoded.shape[0]
    device = encoded.device
    enc_proj = head.joiner.enc(encoded)  # (B, T', J)
    predicted, state = head.predictor(torch.full((batch, 1), BLANK_ID, device=device))
    pred_proj = head.joiner.pred(predicted[:, 0])  # (B, J)
    logprob = torch.zeros(batch, device=device)
    max_prob = torch.zeros(batch, device=device)
    steps = torch.zeros(batch, device=device)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    for t in range(encoded.shape[1]):
        on_frame = t < out_lengths  # (B,)
        if not bool(on_frame.any()):
            break
        emitted = torch.zeros(batch, dtype=torch.long, device=device)
        while bool(on_frame.any()):
            log_probs = torch.log_softmax(
                head.joiner.join(enc_proj[:, t], pred_proj).float(), dim=-1
            )  # (B, V)
            best_lp, best = log_probs.max(dim=-1)
            forced = emitted >= max_symbols  # symbol budget spent: the blank moves on
            best = torch.where(forced, BLANK_ID, best)
            best_lp = torch.where(forced, log_probs[:, BLANK_ID], best_lp)
            logprob += torch.where(on_frame, best_lp, 0.0)
            max_prob += torch.where(on_frame, log_probs.max(dim=-1).values.exp(), 0.0)
            steps += on_frame.float()
            emit = on_frame & (best != BLANK_ID)
            if not bool(emit.any()):
                break
            for b in emit.nonzero().flatten().tolist():
                tokens[b].append(int(best[b]))
            new_pred, new_state = head.predictor(best[:, None], state)
            pred_proj = torch.where(emit[:, None], head.joiner.pred(new_pred[:, 0]), pred_proj)
            state = tuple(
                torch.where(emit[None, :, None], new, old)
                for new, old in zip(new_state, state, strict=True)
            )
            emitted += emit.long()
            on_frame = emit
    return [
        Hypothesis.scored(tokens[b], float(lp), int(n), float(mp) / max(1.0, float(s)))
        for b, (lp, n, mp, s) in enumerate(
            zip(
                logprob.tolist(),
                out_lengths.tolist(),
                max_prob.tolist(),
                steps.tolist(),
                strict=True,
            )
        )
    ]


class RNNTGreedyDecoder:
    """Decodes a batch of features with an :class:`RNNTModel` (the model runs the search)."""

    kind = "rnnt-greedy"

    def decode(
        self, model: RNNTModel, features: torch.Tensor, lengths: torch.Tensor
    ) -> list[Hypothesis]:
        return rnnt_greedy_decode(model, features, lengths)
