"""CTC decoding: greedy (torch) and beam search (torchaudio + flashlight-text), with confidences.

Dimension legend: B batch, T frames (after subsampling), V vocabulary (id 0 = blank).

Design decisions:
- **Confidences mean the same thing for every decoder.** ``logprob`` is the acoustic
  log-probability of the best CTC alignment of the hypothesis tokens (no LM), over the
  utterance's valid frames; ``avg_logprob = logprob / frames`` is the length-normalised
  confidence pseudo-label filters threshold; ``mean_max_prob`` is the mean over valid
  frames of the largest frame probability, a decoder-free measure of peakiness. For
  greedy the best alignment is the argmax path, so ``logprob`` is the sum of per-frame
  maxima; for beam it is computed by ``torchaudio.functional.forced_align``.
- **Greedy is vectorised**: one argmax, one shifted comparison for the repeat collapse,
  masked sums for the confidences, then one device-to-host copy for the whole batch.
- **Beam search is optional.** torchaudio's ``ctc_decoder`` needs the ``flashlight-text``
  wheel; :func:`beam_available` says whether it imports, and :func:`build_decoder`
  falls back to greedy with a warning when it does not (``.kind`` tells the caller
  what actually runs), so a CPU box without the wheel still evaluates.
- **The beam decoder's silence token is our own.** flashlight's lexicon-free decoder
  needs a silence token and puts it at the start and end of every path; torchaudio's
  token collapse would then merge it with a real leading or trailing piece. So the
  decoder gets the tokenizer's tokens plus a ``<sil>`` entry whose emission column is
  ``-inf``-like: it appears only where flashlight adds it, and is dropped from results.
  Sentencepiece pieces (``▁the``, ``▁``) need no silence semantics: word boundaries
  live inside the pieces and :meth:`Tokenizer.decode` restores them.
- **The LM hook** is a KenLM file (ARPA or binary) over the token strings of
  :meth:`Tokenizer.tokens` (lexicon-free decoding scores tokens, not words), weighted
  by ``lm_weight`` (KenLM scores are log10). Without ``lm_dict``, torchaudio builds the
  LM's word dictionary from a hash map, so word ids stop matching token ids and the LM
  scores the wrong tokens; we always pass ``lm_dict``, the tokens listed in id order.
  A remote ``lm_path`` is copied to a local temp file for KenLM.
- **A lexicon makes the search word-level** (flashlight's lexicon decoder): only words
  of the list can be emitted, each spelled by the tokenizer, with ``word_score`` per
  word and an optional KenLM over words. A closed-vocabulary task (digits, commands)
  then cannot produce "sigx" for "six". Each word is spelt as the tokenizer spells it,
  "▁" included, so the tokenizer must have the dummy prefix: without it a first word
  is spelt without its "▁" and later ones with it, which one lexicon cannot say (two
  spellings per word let flashlight run words together), so that is refused.
- Decoders pickle without their native state (rebuilt on first use), so Ray can ship one.
"""

from __future__ import annotations

import logging
import posixpath
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import torch
from torchaudio.functional import forced_align

from bigssl import storage
from bigssl.config import Config, check
from bigssl.text.tokenizer import BLANK_ID, BLANK_TOKEN, Tokenizer

log = logging.getLogger(__name__)

SIL_TOKEN = "<sil>"
UNK_WORD = "<unk>"
BOUNDARY = "\u2581"  # sentencepiece's word-boundary mark  # flashlight's word for spellings outside the lexicon
_NEVER = -1e30  # emission of the silence column: never chosen, never NaN in sums


@dataclass
class Hypothesis:
    """One decoded utterance; ``tokens`` are tokenizer ids (never the blank)."""

    tokens: list[int]
    logprob: float  # acoustic log-prob of the best alignment of ``tokens``
    frames: int  # valid frames decoded
    avg_logprob: float  # logprob / frames; -inf when frames == 0 (no evidence)
    mean_max_prob: float  # mean over valid frames of the max frame probability
    text: str = ""  # tokenizer.decode(tokens) when the decoder has a tokenizer

    @classmethod
    def scored(
        cls, tokens: list[int], logprob: float, frames: int, mean_max_prob: float
    ) -> Hypothesis:
        """A hypothesis from a search's scores; no valid frame means no evidence (-inf avg)."""
        avg = logprob / frames if frames else float("-inf")
        return cls(tokens, logprob if frames else 0.0, frames, avg, mean_max_prob)

    @classmethod
    def concatenate(cls, parts: Sequence[Hypothesis]) -> Hypothesis:
        """One hypothesis of consecutive chunks of an utterance decoded apart: tokens
        concatenated in order, logprob and frames summed, mean_max_prob frame-weighted
        (text is left for the caller to decode from the tokens). One part is returned as is."""
        if len(parts) == 1:
            return parts[0]
        frames = sum(h.frames for h in parts)
        weighted = sum(h.mean_max_prob * h.frames for h in parts)
        return cls.scored(
            [t for h in parts for t in h.tokens],
            sum(h.logprob for h in parts),
            frames,
            weighted / frames if frames else 0.0,
        )


def _check_inputs(log_probs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    if log_probs.ndim != 3:
        raise ValueError(f"log_probs must be (B, T, V), got shape {tuple(log_probs.shape)}")
    lengths = torch.as_tensor(lengths, device=log_probs.device).long()
    if lengths.shape != (log_probs.shape[0],):
        raise ValueError(f"lengths must be ({log_probs.shape[0]},), got {tuple(lengths.shape)}")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > log_probs.shape[1]):
        raise ValueError(f"lengths must lie in [0, {log_probs.shape[1]}], got {lengths.tolist()}")
    return lengths


def _frame_stats(
    log_probs: torch.Tensor, lengths: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Over valid frames: best ids (B, T), valid mask (B, T), sum of max log-probs (B,),
    mean max prob (B,)."""
    max_lp, best = log_probs.detach().float().max(dim=-1)
    valid = torch.arange(log_probs.shape[1], device=log_probs.device)[None] < lengths[:, None]
    # where(), not a product: padded frames may hold -inf, and -inf * 0 is NaN
    sum_max = torch.where(valid, max_lp, 0.0).sum(dim=1)
    mean_max_prob = torch.where(valid, max_lp.exp(), 0.0).sum(dim=1) / lengths.clamp(min=1)
    return best, valid, sum_max, mean_max_prob


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
    """Best path per utterance: argmax per valid frame, collapse repeats, drop blanks.

    log_probs: (B, T, V) log-softmax output (any device/dtype); lengths: (B,) valid frames.
    """
    lengths = _check_inputs(log_probs, lengths)
    best, valid, sum_max, mean_max_prob = _frame_stats(log_probs, lengths)
    previous = torch.nn.functional.pad(best[:, :-1], (1, 0), value=-1)
    keep = valid & (best != BLANK_ID) & (best != previous)
    best, keep = best.cpu(), keep.cpu()
    return [
        Hypothesis.scored(best[b][keep[b]].tolist(), float(s), int(n), float(p))
        for b, (s, n, p) in enumerate(
            zip(sum_max.tolist(), lengths.tolist(), mean_max_prob.tolist(), strict=True)
        )
    ]


def alignment_logprob(log_probs: torch.Tensor, tokens: Sequence[int]) -> float:
    """Log-prob of the best CTC alignment of ``tokens`` to ``log_probs`` (T, V); -inf if none."""
    if not len(tokens):
        return float(log_probs[:, BLANK_ID].sum())
    repeats = sum(a == b for a, b in zip(tokens[:-1], tokens[1:], strict=True))
    if len(tokens) + repeats > log_probs.shape[0]:
        return float("-inf")
    targets = torch.tensor([list(tokens)], dtype=torch.int32)
    _, scores = forced_align(log_probs[None].float().cpu(), targets, blank=BLANK_ID)
    return float(scores.sum())


@lru_cache(maxsize=1)
def beam_available() -> tuple[bool, str]:
    """(True, "") when torchaudio's CTC beam decoder can run, else (False, why not)."""
    try:
        import flashlight.lib.text.decoder  # noqa: F401
        from torchaudio.models.decoder import ctc_decoder  # noqa: F401
    except (ImportError, OSError) as err:
        return False, f"flashlight-text is missing or broken ({err}); pip install flashlight-text"
    return True, ""


@dataclass
class SearchConfig(Config):
    """How CTC output becomes text (evaluation, pseudo-labeling)."""

    kind: Literal["greedy", "beam"] = "greedy"  # beam falls back to greedy without flashlight-text
    beam_size: int = 50  # hypotheses kept per frame
    beam_size_token: int = 0  # tokens tried per frame (0 = all)
    beam_threshold: float = 25.0  # prune hypotheses this far below the best
    lm_path: str | None = None  # KenLM model over tokenizer pieces (local or s3://)
    lm_weight: float = 0.5  # LM score weight (beam only)
    word_score: float = 0.0  # added per emitted word; lexicon search only
    # A word list (one word per line, or a manifest .parquet: its transcripts' words; local
    # or s3://): the search emits only its words, and lm_path is then a word LM. None:
    # lexicon-free over tokenizer pieces.
    lexicon: str | None = None

    def validate(self) -> None:
        check(self.beam_size >= 1, "beam_size", f"must be >= 1, got {self.beam_size}")
        # flashlight's lexicon-free options have no word score; accepting one silently
        # would let a sweep "tune" a knob that does nothing.
        check(
            self.word_score == 0.0 or self.lexicon is not None,
            "word_score",
            "lexicon-free beam search has none; use 0 or give a lexicon",
        )
        check(self.lexicon is None or self.kind == "beam", "lexicon", "a lexicon needs kind=beam")
        check(self.lm_path is None or self.kind == "beam", "lm_path", "an LM needs kind=beam")
        check(self.beam_size_token >= 0, "beam_size_token", "must be >= 0 (0 = all tokens)")
        check(self.beam_threshold > 0, "beam_threshold", "must be > 0")


class GreedyDecoder:
    """``decode(log_probs, lengths) -> list[Hypothesis]`` by :func:`greedy_decode`."""

    kind = "greedy"

    def __init__(self, tokenizer: Tokenizer | None = None):
        self.tokenizer = tokenizer

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        return _with_text(greedy_decode(log_probs, lengths), self.tokenizer)


class BeamDecoder:
    """CTC beam search (torchaudio ``ctc_decoder``): lexicon-free over tokenizer pieces, or
    over the words of a lexicon; optional KenLM."""

    kind = "beam"

    def __init__(self, tokenizer: Tokenizer, cfg: SearchConfig):
        self.tokenizer = tokenizer
        self.cfg = cfg
        self._tokens = tokenizer.tokens()
        self._decoder: Any = None  # built on first use; not pickled
        self._files: list[Any] = []  # temp files the native decoder reads

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_decoder": None, "_files": []}

    def _build(self) -> Any:
        from torchaudio.models.decoder import ctc_decoder

        tokens = [*self._tokens, SIL_TOKEN]
        lm, lm_dict, lexicon = self.cfg.lm_path, None, None
        if lm is not None and storage.is_remote(lm):  # KenLM reads local files only
            lm = self._temp_file(storage.read_bytes(lm), posixpath.basename(lm))
        if self.cfg.lexicon is not None:
            lexicon = self._temp_file(self._lexicon_lines(), "lexicon.txt")
        elif lm is not None:
            # The LM's word ids must be the token ids (see module doc): list them in order.
            lm_dict = self._temp_file("\n".join(tokens).encode() + b"\n", "tokens.txt")
        return ctc_decoder(
            lexicon=lexicon,
            tokens=tokens,
            lm=lm,
            lm_dict=lm_dict,
            beam_size=self.cfg.beam_size,
            beam_size_token=self.cfg.beam_size_token or None,
            beam_threshold=self.cfg.beam_threshold,
            lm_weight=self.cfg.lm_weight,
            word_score=self.cfg.word_score,
            blank_token=BLANK_TOKEN,
            sil_token=SIL_TOKEN,
            unk_word=UNK_WORD,
        )

    def _lexicon_lines(self) -> bytes:
        """flashlight's lexicon: ``word piece piece ...``, one line per word (module doc)."""
        assert self.cfg.lexicon is not None
        lines = []
        for word in read_words(self.cfg.lexicon):
            alone = self.tokenizer.encode(word)
            if alone != self.tokenizer.encode(f"{word} {word}")[len(alone) :]:
                raise ValueError(
                    "lexicon search needs a tokenizer trained with add_dummy_prefix=true:"
                    f" this one spells {word!r} differently first in a sentence and later"
                )
            if alone and 1 not in alone:  # 1 = <unk>: a word the tokenizer cannot spell
                lines.append(" ".join([word, *(self._tokens[i] for i in alone)]))
        if not lines:
            raise ValueError(f"the tokenizer spells none of the words of {self.cfg.lexicon}")
        return ("\n".join(lines) + "\n").encode()

    def _temp_file(self, data: bytes, name: str) -> str:
        """A local copy of ``data`` that lives as long as the native decoder (KenLM may mmap it)."""
        file = tempfile.NamedTemporaryFile(prefix="bigssl-decoder-", suffix=f"-{name}")
        file.write(data)
        file.flush()
        self._files.append(file)
        return file.name

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        """log_probs: (B, T, V) with V == tokenizer.vocab_size; lengths: (B,)."""
        lengths = _check_inputs(log_probs, lengths).cpu()
        if log_probs.shape[-1] != len(self._tokens):
            raise ValueError(
                f"log_probs have {log_probs.shape[-1]} classes, the tokenizer {len(self._tokens)}"
            )
        if self._decoder is None:
            self._decoder = self._build()
        emissions = log_probs.detach().float().cpu()
        *_, mean_max_prob = _frame_stats(emissions, lengths)
        silence = torch.full((*emissions.shape[:2], 1), _NEVER)
        results = self._decoder(torch.cat([emissions, silence], dim=-1).contiguous(), lengths)
        silence_id = len(self._tokens)
        hypotheses = []
        for b, nbest in enumerate(results):
            frames = int(lengths[b])
            if not nbest:
                tokens = []
            elif self.cfg.lexicon is not None:
                # The words are the result: flashlight's token path may end inside a word
                # that never completed (a trie prefix), so spell the words instead.
                tokens = self.tokenizer.encode(" ".join(nbest[0].words))
            else:
                tokens = [t for t in nbest[0].tokens.tolist() if t != silence_id]
            logprob = alignment_logprob(emissions[b, :frames], tokens)
            hypotheses.append(Hypothesis.scored(tokens, logprob, frames, float(mean_max_prob[b])))
        return _with_text(hypotheses, self.tokenizer)


def read_words(uri: str) -> list[str]:
    """The words of a lexicon: a text file's first field per non-empty line, or every word
    of a manifest's (``.parquet``) transcripts; each once, in order of appearance."""
    if uri.endswith(".parquet"):
        texts = storage.read_parquet(uri, columns=["text"]).column("text").to_pylist()
        return list(dict.fromkeys(w for t in texts if t for w in t.split()))
    text = storage.read_bytes(uri).decode("utf-8")
    return list(dict.fromkeys(line.split()[0] for line in text.splitlines() if line.strip()))


def _with_text(hypotheses: list[Hypothesis], tokenizer: Tokenizer | None) -> list[Hypothesis]:
    if tokenizer is not None:
        for h in hypotheses:
            h.text = tokenizer.decode(h.tokens)
    return hypotheses


def build_decoder(
    cfg: SearchConfig, tokenizer: Tokenizer | None = None
) -> GreedyDecoder | BeamDecoder:
    """The decoder ``cfg`` asks for; beam without flashlight-text warns and returns greedy."""
    if cfg.kind == "greedy":
        return GreedyDecoder(tokenizer)
    if tokenizer is None:
        raise ValueError("beam search needs the tokenizer (its tokens name the decoder's classes)")
    ok, why = beam_available()
    if not ok:
        log.warning(
            "CTC beam search unavailable, decoding greedily instead%s: %s",
            "".join(
                f" and ignoring the {what} {path}"
                for what, path in (("LM", cfg.lm_path), ("lexicon", cfg.lexicon))
                if path
            ),
            why,
        )
        return GreedyDecoder(tokenizer)
    return BeamDecoder(tokenizer, cfg)


def is_blank_only(hypothesis: Hypothesis) -> bool:
    """True when the decoder emitted nothing but blanks (an empty transcript)."""
    return not hypothesis.tokens


def repetition_ratio(units: Sequence[int] | str, n: int = 2) -> float:
    """Share of ``n``-grams that repeat an earlier one: 0 for none, near 1 for a loop.

    ``units`` is a token list or a text (split into words). A looping hallucination
    ("call mom call mom call mom") scores high; fewer than ``n`` units score 0.
    """
    seq = units.split() if isinstance(units, str) else list(units)
    grams = [tuple(seq[i : i + n]) for i in range(len(seq) - n + 1)]
    if not grams:
        return 0.0
    return 1.0 - len(set(grams)) / len(grams)
