import math

import jiwer
import pytest

from bigssl.eval import aggregate, score, utterance_errors
from bigssl.text import normalize

PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("set a timer for ten minutes", "set timer for ten minutes please"),
    ("Mr. Smith paid $5 on the 21st.", "mister smith paid five dollars on the twenty first"),
    ("call mom on speaker", "call tom"),
    ("what is the weather in paris", "what is the weather in paris"),
    ("In 1465 Sweynheim began printing,", "in fourteen sixty five sweynheim began printing"),
    ("play jazz", "lay just as"),
]


def test_score_equals_jiwer_on_normalised_pairs():
    refs = [normalize(r) for r, _ in PAIRS]
    hyps = [normalize(h) for _, h in PAIRS]
    result = score([r for r, _ in PAIRS], [h for _, h in PAIRS])
    assert result["wer"] == pytest.approx(jiwer.wer(refs, hyps))
    assert result["cer"] == pytest.approx(jiwer.cer(refs, hyps))
    assert result["words"] == sum(len(r.split()) for r in refs)
    assert result["chars"] == sum(len(r) for r in refs)
    assert result["utterances"] == len(PAIRS)
    words = jiwer.process_words(refs, hyps)
    assert (result["substitutions"], result["deletions"], result["insertions"]) == (
        words.substitutions,
        words.deletions,
        words.insertions,
    )


def test_hand_checked_utterance_counts():
    row = utterance_errors("The cat sat.", "the cat sat down")
    assert row["reference"] == "the cat sat" and row["hypothesis"] == "the cat sat down"
    assert (row["words"], row["substitutions"], row["deletions"], row["insertions"]) == (3, 0, 0, 1)
    assert row["errors"] == 1 and row["chars"] == 11 and row["char_errors"] == 5  # " down"
    row = utterance_errors("a b c", "a x")
    assert (row["substitutions"], row["deletions"], row["insertions"], row["errors"]) == (
        1,
        1,
        0,
        2,
    )
    # normalisation means formatting is never an error
    assert utterance_errors("Dr. Who, 1984!", "doctor who nineteen eighty four")["errors"] == 0


def test_aggregate_of_rows_and_of_partial_aggregates_equals_score():
    refs, hyps = [r for r, _ in PAIRS], [h for _, h in PAIRS]
    rows = [utterance_errors(r, h) for r, h in PAIRS]
    assert aggregate(rows) == score(refs, hyps)
    partials = [aggregate(rows[:3]), aggregate(rows[3:])]  # e.g. two workers' sums
    assert aggregate(partials) == score(refs, hyps)
    assert score(refs, hyps)["wer"] == sum(r["errors"] for r in rows) / sum(
        r["words"] for r in rows
    )


def test_empty_reference_counts_insertions_and_empty_hypothesis_deletions():
    row = utterance_errors("...", "hello there")
    assert (row["words"], row["insertions"], row["errors"], row["chars"]) == (0, 2, 2, 0)
    assert row["char_errors"] == len("hello there")
    row = utterance_errors("hello there", "")
    assert (row["words"], row["deletions"], row["errors"]) == (2, 2, 2)
    assert row["char_errors"] == len("hello there")
    result = score(["", "a b"], ["x", "a b"])
    assert result["wer"] == pytest.approx(1 / 2) and result["insertions"] == 1


def test_corpus_without_reference_words():
    assert score(["", "!"], ["", ""])["wer"] == 0.0
    assert math.isinf(score([""], ["oops"])["wer"])
    assert score([], [])["utterances"] == 0
    with pytest.raises(ValueError, match="references"):
        score(["a"], [])
