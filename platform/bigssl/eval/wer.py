"""Word and character error rates: per-utterance rows that sum to corpus totals.

Design decisions:
- **Both sides go through** :func:`bigssl.text.normalize.normalize`, the normalisation
  the tokenizer trains on, so a score never counts casing, punctuation or "5" vs
  "five" as an error; hypotheses decoded by the tokenizer are already normalised
  (normalize is idempotent).
- **Rows, then sums**: :func:`utterance_errors` gives one row of counts per utterance
  and :func:`aggregate` sums any number of them, so a distributed job scores
  utterances in parallel and adds the rows; :func:`score` is exactly that in one
  process. Corpus WER is sum(errors) / sum(reference words), never a mean of
  per-utterance rates (short utterances would weigh as much as long ones).
- **jiwer does the alignment** (``process_words``, ``process_characters``); CER counts
  characters of the normalised text including the spaces between words, as
  ``jiwer.cer`` does. An empty normalised reference is handled here (every hypothesis
  word an insertion) because jiwer 3 refuses it; an empty hypothesis is all deletions.
- A corpus with no reference words has WER 0 when the hypotheses are empty too and
  ``inf`` otherwise: any insertion against nothing is infinitely wrong, and 0 would hide it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jiwer

from bigssl.text.normalize import normalize

COUNTS = ("words", "substitutions", "deletions", "insertions", "errors", "chars", "char_errors")


def utterance_errors(reference: str, hypothesis: str) -> dict[str, Any]:
    """Error counts of one utterance (texts normalised first); sum rows with :func:`aggregate`."""
    ref, hyp = normalize(reference), normalize(hypothesis)
    ref_words, hyp_words = ref.split(), hyp.split()
    if not ref_words or not hyp_words:  # jiwer 3 refuses an empty reference
        subs, dels, ins = 0, len(ref_words), len(hyp_words)
        char_errors = len(ref) + len(hyp)
    else:
        words = jiwer.process_words(ref, hyp)
        subs, dels, ins = words.substitutions, words.deletions, words.insertions
        chars = jiwer.process_characters(ref, hyp)
        char_errors = chars.substitutions + chars.deletions + chars.insertions
    return {
        "reference": ref,
        "hypothesis": hyp,
        "words": len(ref_words),
        "substitutions": subs,
        "deletions": dels,
        "insertions": ins,
        "errors": subs + dels + ins,
        "chars": len(ref),
        "char_errors": char_errors,
    }


def _rate(errors: int, total: int) -> float:
    if total:
        return errors / total
    return 0.0 if errors == 0 else float("inf")


def aggregate(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Corpus totals of :func:`utterance_errors` rows (or of earlier aggregates' counts).

    Returns wer, cer, the summed counts and ``utterances``.
    """
    totals = dict.fromkeys(COUNTS, 0)
    utterances = 0
    for row in rows:
        for key in COUNTS:
            totals[key] += int(row[key])
        utterances += int(row.get("utterances", 1))
    return {
        "wer": _rate(totals["errors"], totals["words"]),
        "cer": _rate(totals["char_errors"], totals["chars"]),
        **totals,
        "utterances": utterances,
    }


def score(references: list[str], hypotheses: list[str]) -> dict[str, Any]:
    """Corpus WER/CER of paired texts: ``aggregate`` of their :func:`utterance_errors`."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    return aggregate(utterance_errors(r, h) for r, h in zip(references, hypotheses, strict=True))
