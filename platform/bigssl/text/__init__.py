"""Text normalisation and the sentencepiece tokenizer of CTC targets (no Ray)."""

from bigssl.text.normalize import normalize
from bigssl.text.tokenizer import (
    BLANK_ID,
    BLANK_TOKEN,
    EmptyCorpus,
    Tokenizer,
    TokenizerConfig,
    train_tokenizer,
)

__all__ = [
    "BLANK_ID",
    "BLANK_TOKEN",
    "EmptyCorpus",
    "Tokenizer",
    "TokenizerConfig",
    "normalize",
    "train_tokenizer",
]
