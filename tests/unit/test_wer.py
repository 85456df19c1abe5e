import math

import pytest

from bigssl.eval import aggregate, score, utterance_errors

PAIRS = [
    ("the cat sat on the mat", "the cat sat on a mat"),
    ("set a timer for ten minutes", "set timer for ten minutes please"),
    ("Mr. Smith paid $5 on the 21st.", "mister smith paid five dollars on the twenty first"),
    ("call mom on speaker", "call tom"),
    ("what is the weather in paris", "what is the weather in paris"),
    ("In 1465 Sweynheim began printing,", "in fourteen sixty five sweynheim began printing"),
    ("play jazz", "lay just as"),
]


# Worked by hand: (reference, hypothesis, words, S, D, I, reference chars, char edits).
HAND_WORKED = [
    # "the" -> "a": one word substituted; characters "the" -> "a" is 1 sub + 2 del.
    ("the cat sat on the mat", "the cat sat on a mat", 6, 1, 0, 0, 22, 3),
    ("set a timer", "set a timer please", 3, 0, 0, 1, 11, 7),  # " please" inserted
    ("call mom on speaker", "call mom", 4, 0, 2, 0, 19, 11),  # " on speaker" deleted
    # A deletion inside: aligned, one error (word by word by position it would be three).
    ("turn the lights off", "turn lights off", 4, 0, 1, 0, 19, 4),
    ("...", "hello there", 0, 0, 0, 2, 0, 11),  # empty once normalised: all insertions
    ("What is the weather?", "what is the weather", 4, 0, 0, 0, 19, 0),  # formatting only
]


@pytest.mark.parametrize(
    ("ref", "hyp", "words", "subs", "dels", "ins", "chars", "edits"), HAND_WORKED
)
def test_utterance_counts_match_hand_worked_values(ref, hyp, words, subs, dels, ins, chars, edits):
    row = utterance_errors(ref, hyp)
    assert (row["words"], row["substitutions"], row["deletions"], row["insertions"]) == (
        words,
        subs,
        dels,
        ins,
    )
    assert (row["errors"], row["chars"], row["char_errors"]) == (subs + dels + ins, chars, edits)


def test_corpus_rates_are_summed_errors_over_summed_reference_lengths():
    result = score([c[0] for c in HAND_WORKED], [c[1] for c in HAND_WORKED])
    # Words 6 + 3 + 4 + 4 + 0 + 4 = 21, errors 1 + 1 + 2 + 1 + 2 + 0 = 7; characters 90,
    # edits 36. Not the mean of per-utterance rates: the empty reference makes that infinite.
    assert result["wer"] == pytest.approx(7 / 21) and result["cer"] == pytest.approx(36 / 90)
    assert (result["substitutions"], result["deletions"], result["insertions"]) == (1, 3, 3)
    assert (result["words"], result["chars"], result["utterances"]) == (21, 90, 6)


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
