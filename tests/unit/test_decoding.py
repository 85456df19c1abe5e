import logging
import math
import pickle
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from bigssl.config import ConfigError
from bigssl.data.grammar import sample_sentence
from bigssl.decoding import ctc
from bigssl.decoding.ctc import (
    Hypothesis,
    SearchConfig,
    alignment_logprob,
    beam_available,
    build_decoder,
    greedy_decode,
    is_blank_only,
    read_words,
    repetition_ratio,
)
from bigssl.text import TokenizerConfig, train_tokenizer

needs_beam = pytest.mark.skipif(not beam_available()[0], reason="flashlight-text not installed")


def peaky(paths: list[list[int]], vocab: int, p: float = 0.9, num_frames: int | None = None):
    """(B, T, V) log-probs: frame t of row b puts ``p`` on paths[b][t], the rest evenly.

    Frames past a path's end are blank; returns (log_probs, lengths = path lengths).
    """
    num_frames = num_frames or max(len(path) for path in paths)
    probs = torch.full((len(paths), num_frames, vocab), (1 - p) / (vocab - 1))
    probs[:, :, 0] = p
    for b, path in enumerate(paths):
        for t, token in enumerate(path):
            probs[b, t] = (1 - p) / (vocab - 1)
            probs[b, t, token] = p
    return probs.log(), torch.tensor([len(path) for path in paths])


def test_greedy_collapses_repeats_and_blank_separates_repeated_tokens():
    log_probs, lengths = peaky([[1, 1, 2, 2, 2, 0], [3, 0, 3, 3, 0, 3], [0, 0, 0, 0, 0, 0]], 5)
    hyps = greedy_decode(log_probs, lengths)
    assert [h.tokens for h in hyps] == [[1, 2], [3, 3, 3], []]
    assert [is_blank_only(h) for h in hyps] == [False, False, True]


def test_greedy_respects_lengths_and_ignores_padding_even_when_it_is_minus_inf():
    log_probs, _ = peaky([[1, 0, 2, 0, 3, 4]], 5)
    log_probs = log_probs.repeat(3, 1, 1)
    log_probs[2, 3:] = -math.inf  # padding of the third row
    hyps = greedy_decode(log_probs, torch.tensor([6, 3, 3]))
    assert [h.tokens for h in hyps] == [[1, 2, 3, 4], [1, 2], [1, 2]]
    assert [h.frames for h in hyps] == [6, 3, 3]
    assert hyps[1].logprob == pytest.approx(3 * math.log(0.9))
    assert hyps[2].logprob == pytest.approx(hyps[1].logprob)  # no NaN from -inf padding


def test_greedy_confidences_equal_hand_computation():
    # two frames: max probs 0.6 (token 1) and 0.7 (blank), V = 3
    probs = torch.tensor([[[0.3, 0.6, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]])
    (hyp,) = greedy_decode(probs.log(), torch.tensor([2]))
    assert hyp.tokens == [1]
    assert hyp.logprob == pytest.approx(math.log(0.6) + math.log(0.7))
    assert hyp.avg_logprob == pytest.approx((math.log(0.6) + math.log(0.7)) / 2)
    assert hyp.mean_max_prob == pytest.approx((0.6 + 0.7) / 2)


def test_zero_length_utterance_has_no_tokens_and_lowest_confidence():
    log_probs, _ = peaky([[1, 2]], 3)
    (hyp,) = greedy_decode(log_probs, torch.tensor([0]))
    assert hyp == Hypothesis([], 0.0, 0, -math.inf, 0.0)


def test_greedy_rejects_bad_shapes_and_lengths():
    log_probs, _ = peaky([[1, 2]], 3)
    with pytest.raises(ValueError, match="lengths"):
        greedy_decode(log_probs, torch.tensor([3]))
    with pytest.raises(ValueError, match="lengths"):
        greedy_decode(log_probs, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        greedy_decode(log_probs[0], torch.tensor([2]))


def test_alignment_logprob_is_the_best_path_of_the_tokens():
    probs = torch.tensor([[0.5, 0.4, 0.1], [0.3, 0.6, 0.1]])
    # "1" over 2 frames: paths (1,1)=.24, (0,1)=.30, (1,0)=.12 -> best .30
    assert alignment_logprob(probs.log(), [1]) == pytest.approx(math.log(0.30))
    assert alignment_logprob(probs.log(), []) == pytest.approx(math.log(0.5 * 0.3))
    assert alignment_logprob(probs.log(), [1, 1]) == -math.inf  # needs a blank between


def test_repetition_ratio_and_blank_only():
    assert repetition_ratio("call mom call mom call mom") == pytest.approx(1 - 2 / 5)
    assert repetition_ratio("set a timer for ten minutes") == 0.0
    assert repetition_ratio([5, 5, 5, 5], n=1) == pytest.approx(0.75)
    assert repetition_ratio("one") == 0.0
    assert is_blank_only(Hypothesis([], -1.0, 3, -1 / 3, 0.9))


@pytest.fixture(scope="module")
def tokenizer():
    rng = random.Random(0)
    texts = [sample_sentence(rng) for _ in range(1500)]
    return train_tokenizer(texts, TokenizerConfig(vocab_size=120))


def _sentence_emissions(tokenizer, sentences: list[str], p: float = 0.9, seed: int = 0):
    """Peaky log-probs that spell ``sentences``: each token 1-3 frames, blanks between."""
    rng = random.Random(seed)
    paths = []
    for sentence in sentences:
        path = [0] * rng.randint(0, 2)
        for token in tokenizer.encode(sentence):
            if path[-1:] == [token]:
                path.append(0)  # a repeated token needs a blank between
            path += [token] * rng.randint(1, 3) + [0] * rng.randint(0, 2)
        paths.append(path)
    return peaky(paths, tokenizer.vocab_size, p=p)


def test_greedy_decoder_fills_text(tokenizer):
    sentences = ["call mom on speaker", "what is the weather in paris tomorrow"]
    log_probs, lengths = _sentence_emissions(tokenizer, sentences)
    decoder = build_decoder(SearchConfig(kind="greedy"), tokenizer)
    assert decoder.kind == "greedy"
    assert [h.text for h in decoder.decode(log_probs, lengths)] == sentences


def test_beam_falls_back_to_greedy_with_a_warning(tokenizer, monkeypatch, caplog):
    monkeypatch.setattr(ctc, "beam_available", lambda: (False, "flashlight-text is missing"))
    with caplog.at_level(logging.WARNING, logger="bigssl.decoding.ctc"):
        decoder = build_decoder(SearchConfig(kind="beam", beam_size=8), tokenizer)
    assert decoder.kind == "greedy"
    assert any("flashlight-text is missing" in r.getMessage() for r in caplog.records)
    log_probs, lengths = _sentence_emissions(tokenizer, ["take me home"])
    assert decoder.decode(log_probs, lengths)[0].text == "take me home"


def test_beam_needs_the_tokenizer_and_config_names_bad_fields():
    with pytest.raises(ValueError, match="tokenizer"):
        build_decoder(SearchConfig(kind="beam"), None)
    with pytest.raises(ConfigError) as err:
        SearchConfig.from_dict({"beam_size": 0})
    assert err.value.field == "beam_size"
    with pytest.raises(ConfigError) as err:
        build_decoder(SearchConfig(kind="beam", word_score=1.0), None)
    assert err.value.field == "word_score"
    with pytest.raises(ConfigError) as err:
        build_decoder(SearchConfig(kind="greedy", lm_path="lm.arpa"), None)
    assert err.value.field == "lm_path"


@needs_beam
def test_beam_agrees_with_greedy_on_a_peaky_distribution(tokenizer):
    rng = random.Random(3)
    sentences = [sample_sentence(rng) for _ in range(6)]
    log_probs, lengths = _sentence_emissions(tokenizer, sentences, p=0.8, seed=1)
    lengths[-1] = lengths[-1] // 2  # one truncated utterance
    greedy = greedy_decode(log_probs, lengths)
    decoder = build_decoder(SearchConfig(kind="beam", beam_size=8), tokenizer)
    assert decoder.kind == "beam"
    beam = decoder.decode(log_probs, lengths)
    assert [h.tokens for h in beam] == [h.tokens for h in greedy]
    assert [h.text for h in beam[:-1]] == sentences[:-1]
    for b, g in zip(beam, greedy, strict=True):
        # greedy's path is the best alignment of its tokens: the scores must agree
        assert b.logprob == pytest.approx(g.logprob, rel=1e-5)
        assert b.avg_logprob == pytest.approx(g.avg_logprob, rel=1e-5)
        assert b.mean_max_prob == pytest.approx(g.mean_max_prob, rel=1e-5)
    clone = pickle.loads(pickle.dumps(decoder))  # native state is rebuilt after a pickle
    assert [h.tokens for h in clone.decode(log_probs, lengths)] == [h.tokens for h in greedy]


@needs_beam
def test_beam_rejects_a_vocabulary_mismatch(tokenizer):
    log_probs, lengths = peaky([[1, 2]], tokenizer.vocab_size + 1)
    with pytest.raises(ValueError, match="classes"):
        build_decoder(SearchConfig(kind="beam"), tokenizer).decode(log_probs, lengths)


def _unigram_arpa(tokens: list[str], favourite: str) -> str:
    """A KenLM-readable ARPA (KenLM needs a bigram section) that strongly prefers ``favourite``."""
    unigrams = [("<s>", -1.0), ("</s>", -1.0)] + [
        (t, -0.1 if t == favourite else -5.0) for t in tokens[1:]
    ]
    lines = ["\\data\\", f"ngram 1={len(unigrams)}", "ngram 2=1", "", "\\1-grams:"]
    lines += [f"{score}\t{word}\t0" for word, score in unigrams]
    lines += ["", "\\2-grams:", f"-0.1\t<s>\t{favourite}", "", "\\end\\", ""]
    return "\n".join(lines)


@needs_beam
def test_lm_hook_changes_an_acoustically_ambiguous_token(tokenizer, tmp_path):
    tokens = tokenizer.tokens()
    a, b = tokenizer.encode("call")[0], tokenizer.encode("mom")[0]
    probs = torch.full((1, 3, tokenizer.vocab_size), 1e-4)
    probs[0, :, 0] = 1.0
    probs[0, 1, 0], probs[0, 1, a], probs[0, 1, b] = 1e-4, 0.55, 0.45  # a slightly ahead
    log_probs = (probs / probs.sum(-1, keepdim=True)).log()
    lengths = torch.tensor([3])
    lm = tmp_path / "tokens.arpa"
    lm.write_text(_unigram_arpa(tokens, tokens[b]))
    plain = build_decoder(SearchConfig(kind="beam", beam_size=8), tokenizer).decode(
        log_probs, lengths
    )[0]
    with_lm = build_decoder(
        SearchConfig(kind="beam", beam_size=8, lm_path=str(lm), lm_weight=1.0), tokenizer
    )
    hyp = with_lm.decode(log_probs, lengths)[0]
    assert plain.tokens == [a] and hyp.tokens == [b]
    # the confidence stays acoustic: the LM's choice has the lower acoustic score
    assert hyp.logprob == pytest.approx(alignment_logprob(log_probs[0], [b]))
    assert hyp.logprob < plain.logprob


@needs_beam
def test_lexicon_search_emits_only_listed_words(tmp_path):
    """A misspelt digit ("sigx") comes out as the listed word, several words in a row as
    spoken; a tokenizer without the dummy prefix is refused (its first word is spelt
    differently from later ones)."""
    digits = "zero one two three four five six seven eight nine".split()
    rng = random.Random(0)
    texts = [" ".join(rng.choices(digits, k=rng.randint(1, 3))) for _ in range(300)]
    cfg = TokenizerConfig(model_type="char", vocab_size=40)
    tok = train_tokenizer(texts, cfg)
    lexicon = tmp_path / "words.txt"
    lexicon.write_text("\n".join(digits) + "\n")
    spoken = ["sigx", "three seven", "nine one two"]
    log_probs, lengths = _sentence_emissions(tok, spoken, p=0.8)
    assert [
        h.text for h in build_decoder(SearchConfig(kind="greedy"), tok).decode(log_probs, lengths)
    ] == spoken
    decoder = build_decoder(SearchConfig(kind="beam", beam_size=16, lexicon=str(lexicon)), tok)
    hyps = decoder.decode(log_probs, lengths)
    assert [h.text for h in hyps] == ["six", "three seven", "nine one two"]
    # the confidence stays the acoustic score of the emitted tokens
    frames = int(lengths[0])
    assert hyps[0].logprob == pytest.approx(
        alignment_logprob(log_probs[0, :frames], hyps[0].tokens)
    )
    with pytest.raises(ConfigError) as err:
        build_decoder(SearchConfig(kind="greedy", lexicon=str(lexicon)), tok)
    assert err.value.field == "lexicon"
    build_decoder(
        SearchConfig(kind="beam", lexicon=str(lexicon), word_score=-1.0), tok
    )  # a lexicon has one
    manifest = tmp_path / "labeled.parquet"  # or the words of a labeled manifest
    pq.write_table(pa.table({"text": ["six seven", None, "three six", "nine one two"]}), manifest)
    assert read_words(str(manifest)) == ["six", "seven", "three", "nine", "one", "two"]
    from_manifest = build_decoder(
        SearchConfig(kind="beam", beam_size=16, lexicon=str(manifest)), tok
    )
    assert [h.text for h in from_manifest.decode(log_probs, lengths)] == [h.text for h in hyps]
    bare = train_tokenizer(texts, TokenizerConfig(**{**cfg.to_dict(), "add_dummy_prefix": False}))
    bare_probs, bare_lengths = _sentence_emissions(bare, ["six"])
    with pytest.raises(ValueError, match="add_dummy_prefix"):
        build_decoder(SearchConfig(kind="beam", lexicon=str(lexicon)), bare).decode(
            bare_probs, bare_lengths
        )
