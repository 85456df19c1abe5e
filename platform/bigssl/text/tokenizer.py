"""The sentencepiece tokenizer of CTC targets: normalised text <-> ids, id 0 = the CTC blank.

Design decisions:
- **Ids are sentencepiece ids + 1**: id 0 is the CTC blank (``bigssl.models.ctc.BLANK_ID``),
  which :meth:`Tokenizer.encode` never produces and :meth:`Tokenizer.decode` ignores.
  ``vocab_size`` (the CTC head's width) is the piece count + 1, and :meth:`tokens` is
  the matching list a beam decoder needs: ``"<blank>"``, then the pieces.
- **Text is normalised on the way in** (:func:`bigssl.text.normalize.normalize`), and
  sentencepiece's own normaliser is off (``identity``), so ``decode(encode(x)) ==
  normalize(x)`` for any text whose characters the model covers. An uncovered
  character encodes to ``<unk>``, which decodes to nothing (not sentencepiece's " ⁇ ",
  which would be scored as a word).
- **Trained in memory** (``sentence_iterator`` + ``model_writer``): no temp files, and
  the caller streams texts. No bos/eos/pad pieces: CTC has no use for them.
- **A corpus too small for ``vocab_size``** yields a smaller vocabulary by default
  (``hard_vocab_limit=False``; the real size is :attr:`Tokenizer.vocab_size`); with
  ``hard_vocab_limit=True``, or when ``vocab_size`` cannot even hold the corpus's
  characters, training fails with a :class:`~bigssl.config.ConfigError` on ``vocab_size``
  instead of sentencepiece's internal check message.
- **Reproducible**: ``seed`` seeds sentencepiece's sampling of ``max_sentences``, and
  ``num_threads`` is a config field, not the machine's core count, because unigram
  training gives different pieces with a different thread count.
- **Pickles as its model bytes**, so Ray ships it to workers; the native processor is
  rebuilt on arrival. ``fingerprint`` (sha256 of the bytes) goes into checkpoint meta.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

import sentencepiece as spm

from bigssl import storage
from bigssl.config import Config, ConfigError, check
from bigssl.text.normalize import normalize

BLANK_ID = 0  # the CTC blank; equals bigssl.models.ctc.BLANK_ID (checked by a test)
BLANK_TOKEN = "<blank>"
_MAX_SENTENCE_BYTES = 1 << 16  # sentencepiece silently skips longer lines (default 4192)


class EmptyCorpus(ValueError):
    """No text left to train on once normalised."""


@dataclass
class TokenizerConfig(Config):
    """How the sentencepiece model of CTC targets is trained."""

    vocab_size: int = 1000  # sentencepiece pieces requested (the CTC head has one more: blank)
    model_type: Literal["unigram", "bpe", "char"] = "unigram"  # char ignores vocab_size
    character_coverage: float = 1.0  # share of characters covered; the rest encode as <unk>
    seed: int = 0  # seeds sentencepiece's sampling of max_sentences
    hard_vocab_limit: bool = False  # true: a corpus that cannot fill vocab_size is an error
    max_sentences: int = 2_000_000  # texts sampled for training (0 = all; else > 100)
    num_threads: int = 4  # trainer threads; part of the result (unigram pieces depend on it)
    # A "▁" before the first word. false: "six" is "s i x", not "▁ s i x": one CTC frame
    # less per utterance, which isolated words (FSDD: 0.25 s "three") can lack after 4x
    # subsampling; later words keep their "▁", so decoding is unchanged.
    add_dummy_prefix: bool = True

    def validate(self) -> None:
        check(self.vocab_size >= 2, "vocab_size", f"must be >= 2, got {self.vocab_size}")
        check(
            0.0 < self.character_coverage <= 1.0,
            "character_coverage",
            f"must be in (0, 1], got {self.character_coverage}",
        )
        check(
            self.max_sentences == 0 or self.max_sentences > 100,
            "max_sentences",
            f"must be 0 (all) or > 100 (sentencepiece's minimum), got {self.max_sentences}",
        )
        check(self.num_threads >= 1, "num_threads", f"must be >= 1, got {self.num_threads}")


class Tokenizer:
    """A trained sentencepiece model with CTC ids (see module doc). Picklable."""

    def __init__(self, processor: spm.SentencePieceProcessor, model_bytes: bytes):
        self._sp = processor
        self._model_bytes = model_bytes
        self._unk_id = processor.unk_id()

    @classmethod
    def from_bytes(cls, model_bytes: bytes) -> Tokenizer:
        processor = spm.SentencePieceProcessor(model_proto=model_bytes)
        return cls(processor, bytes(model_bytes))

    @classmethod
    def load(cls, uri: str) -> Tokenizer:
        """Read a ``tokenizer.model`` from a local path or ``s3://`` URI."""
        return cls.from_bytes(storage.read_bytes(uri))

    def save(self, uri: str) -> None:
        storage.write_bytes(uri, self._model_bytes)

    @property
    def model_bytes(self) -> bytes:
        return self._model_bytes

    @property
    def fingerprint(self) -> str:
        """sha256 of the model bytes: identifies the tokenizer in checkpoint meta."""
        return hashlib.sha256(self._model_bytes).hexdigest()

    @property
    def vocab_size(self) -> int:
        """CTC output width: the sentencepiece pieces + the blank."""
        return self._sp.get_piece_size() + 1

    def encode(self, text: str) -> list[int]:
        """Normalise ``text`` and return its ids (all >= 1)."""
        return [i + 1 for i in self._sp.encode(normalize(text), out_type=int)]

    def decode(self, ids: Iterable[int]) -> str:
        """The text of ``ids``; blanks (0) and ``<unk>`` are skipped, repeats are not collapsed."""
        pieces = []
        for i in ids:
            i = int(i)
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside [0, {self.vocab_size})")
            if i != BLANK_ID and i - 1 != self._unk_id:
                pieces.append(i - 1)
        return self._sp.decode(pieces)

    def tokens(self) -> list[str]:
        """Token strings by id: ``"<blank>"``, then the sentencepiece pieces."""
        return [BLANK_TOKEN] + [self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())]

    def __reduce__(self) -> tuple[object, tuple[bytes]]:
        return (Tokenizer.from_bytes, (self._model_bytes,))

    def __repr__(self) -> str:
        return f"Tokenizer(vocab_size={self.vocab_size}, fingerprint={self.fingerprint[:12]})"


def train_tokenizer(
    texts: Iterable[str], cfg: TokenizerConfig, *, normalized: bool = False
) -> Tokenizer:
    """Train on ``texts`` (normalised here unless ``normalized``; empty ones are skipped)."""
    sentences = texts if normalized else (normalize(t) for t in texts)
    counted = _NonEmpty(sentences)
    writer = io.BytesIO()
    spm.set_random_generator_seed(cfg.seed)  # process-global: the sampling of max_sentences
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(counted),
            model_writer=writer,
            vocab_size=cfg.vocab_size,
            model_type=cfg.model_type,
            character_coverage=cfg.character_coverage,
            hard_vocab_limit=cfg.hard_vocab_limit,
            input_sentence_size=cfg.max_sentences,
            shuffle_input_sentence=True,
            num_threads=cfg.num_threads,
            max_sentence_length=_MAX_SENTENCE_BYTES,
            normalization_rule_name="identity",
            add_dummy_prefix=cfg.add_dummy_prefix,
            unk_id=0,
            bos_id=-1,
            eos_id=-1,
            pad_id=-1,
            minloglevel=2,  # errors only: sentencepiece logs every EM step at INFO
        )
    except RuntimeError as err:
        if counted.num_sentences == 0:
            raise EmptyCorpus("no non-empty normalised text to train a tokenizer on") from None
        raise _vocab_error(err, cfg) from None
    return Tokenizer.from_bytes(writer.getvalue())


class _NonEmpty:
    """Yields the non-empty texts and counts them (sentencepiece fails on an empty corpus)."""

    def __init__(self, texts: Iterable[str]):
        self._texts = texts
        self.num_sentences = 0

    def __iter__(self) -> Iterator[str]:
        for text in self._texts:
            if text:
                self.num_sentences += 1
                yield text


def _vocab_error(err: RuntimeError, cfg: TokenizerConfig) -> Exception:
    """sentencepiece's internal check failures about the vocabulary size, as ConfigErrors."""
    message = str(err)
    too_high = re.search(r"Vocabulary size too high \((\d+)\).*<= (\d+)", message)
    if too_high:
        return ConfigError(
            "vocab_size",
            f"{cfg.vocab_size} is more than this corpus supports (at most {too_high.group(2)}"
            " pieces); lower it or set hard_vocab_limit=false",
        )
    too_low = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", message)
    if too_low:
        return ConfigError(
            "vocab_size",
            f"{cfg.vocab_size} cannot hold the {too_low.group(2)} characters and special pieces"
            f" this corpus needs at character_coverage={cfg.character_coverage}; raise"
            " vocab_size or lower character_coverage",
        )
    return err
