"""A fine-tuned checkpoint as a recogniser: shard samples -> features -> CTC/RNN-T -> text (no Ray).

Used by evaluation and by the pseudo-labeling teacher, in a plain loop or inside a
Ray Data actor (one :class:`Recognizer` per replica loads the checkpoint once).

Design decisions:
- Everything comes from the checkpoint folder: encoder sizes, vocabulary and the
  featurizer settings from ``meta.json``, the tokenizer from ``tokenizer.model``;
  the weights load without a process group whatever the training sharding was.
- Batches are duration-bucketed within the work unit (a shard): rows sorted by
  length and cut under ``max_frames`` padded frames, so padding stays small and
  memory is bounded whatever the shard holds.
- On CUDA the forward runs under bf16 autocast; log-probs are float32.
- The checkpoint's head picks the search: CTC (greedy, or beam when asked and
  available) or RNN-T (greedy; asking an RNN-T checkpoint for beam warns and decodes
  greedily). ``decoder.kind`` says what actually ran.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bigssl import storage
from bigssl.audio.decode import AudioError
from bigssl.audio.features import Fbank, FbankConfig
from bigssl.config import Config, ConfigError, check
from bigssl.data.bucketing import collate_features, greedy_cut
from bigssl.data.features import FeaturizeConfig, featurize_sample, shard_stem
from bigssl.data.shards import ShardError, iter_shard
from bigssl.decoding.ctc import Hypothesis, SearchConfig, build_decoder
from bigssl.decoding.rnnt import RNNTGreedyDecoder
from bigssl.models import asr_model_from_meta
from bigssl.text.tokenizer import Tokenizer
from bigssl.training import checkpoint as ckpt

log = logging.getLogger(__name__)


@dataclass
class DecodeConfig(Config):
    decoder: Literal["greedy", "beam"] = "greedy"  # beam needs flashlight-text (else greedy)
    beam_size: int = 16  # beam search width
    lm: str = ""  # optional KenLM n-gram (binary or ARPA) for beam search
    lm_weight: float = 0.5  # LM weight in beam search
    # Beam search over words only: a word list or a labeled manifest (.parquet; local or
    # s3://), or "train" for the words of the model's own training transcripts (the
    # ``words.txt`` fine-tuning writes into its checkpoints).
    lexicon: str = ""
    word_score: float = 0.0  # added per word in lexicon search
    max_frames: int = 30000  # padded feature frames per inference batch
    audio_key: str = "flac"  # the shards' audio extension

    def validate(self) -> None:
        check(self.beam_size >= 1, "beam_size", "must be >= 1")
        check(self.max_frames >= 100, "max_frames", "must be >= 100")
        check(not self.lexicon or self.decoder == "beam", "lexicon", "needs decoder=beam")
        check(self.word_score == 0.0 or bool(self.lexicon), "word_score", "needs a lexicon")


def _frames(row: dict[str, Any]) -> int:
    return int(row["num_frames"])


@dataclass
class Failed:
    """A sample that could not be recognised, with the quarantine reason."""

    id: str
    reason: str


class Recognizer:
    def __init__(self, checkpoint: str, cfg: DecodeConfig, device: str | torch.device = "cpu"):
        self.checkpoint, self.cfg = checkpoint, cfg
        self.device = torch.device(device)
        self.meta = ckpt.read_meta(checkpoint)
        self.tokenizer = Tokenizer.from_bytes(
            storage.read_bytes(storage.join(checkpoint, "tokenizer.model"))
        )
        model = asr_model_from_meta(self.meta)
        ckpt.load_model_weights(checkpoint, model)
        self.model = model.to(self.device).eval()
        if self.meta.get("head", "ctc") == "rnnt":
            if cfg.decoder != "greedy" or cfg.lm:
                log.warning("RNN-T beam search and LMs are not built; decoding greedily")
            self.decoder = RNNTGreedyDecoder()
        else:
            search = SearchConfig(
                kind=cfg.decoder,
                beam_size=cfg.beam_size,
                lm_path=cfg.lm or None,
                lm_weight=cfg.lm_weight,
                word_score=cfg.word_score,
                lexicon=self._lexicon(),
            )
            self.decoder = build_decoder(search, self.tokenizer)
        self.featurize_cfg = FeaturizeConfig(
            fbank=FbankConfig.from_dict(self.meta.get("fbank", {})), audio_key=cfg.audio_key
        )
        self.fbank = Fbank(self.featurize_cfg.fbank)

    def _lexicon(self) -> str | None:
        if self.cfg.lexicon != "train":
            return self.cfg.lexicon or None
        words = storage.join(self.checkpoint, ckpt.WORDS_FILE)
        if not storage.exists(words):
            raise ConfigError(
                "decode.lexicon",
                f"'train' needs {ckpt.WORDS_FILE} in the checkpoint, and {self.checkpoint} has none"
                " (made before fine-tuning wrote it?); give a word list instead",
            )
        return words

    @torch.inference_mode()
    def hypotheses(self, batch: dict[str, np.ndarray]) -> list[Hypothesis]:
        """A collated batch -> one hypothesis per row, in batch order."""
        feats = torch.as_tensor(batch["feats"]).to(self.device)
        lengths = torch.as_tensor(batch["lengths"]).to(self.device)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda"
            else nullcontext()
        )
        with autocast:
            if isinstance(self.decoder, RNNTGreedyDecoder):
                return self.decoder.decode(self.model, feats, lengths)
            log_probs, out_lengths = self.model(feats, lengths)
        return self.decoder.decode(log_probs.float().cpu(), out_lengths.cpu())

    def batches(self, rows: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
        """Rows sorted by length, cut so that each batch pads to at most ``max_frames``."""
        yield from greedy_cut(sorted(rows, key=_frames), _frames, self.cfg.max_frames)

    def transcribe(
        self, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Hypothesis, str]]:
        """Feature rows -> (row, hypothesis, text) per row, in length order."""
        out = []
        for batch_rows in self.batches(rows):
            for row, hyp in zip(
                batch_rows, self.hypotheses(collate_features(batch_rows)), strict=True
            ):
                out.append((row, hyp, self.tokenizer.decode(hyp.tokens)))
        return out

    def shard_rows(
        self, shard_uri: str, ids: set[str] | None = None
    ) -> tuple[list[dict[str, Any]], list[Failed], int]:
        """Decode and featurize a shard's samples (only ``ids`` when given):
        (feature rows, failures, samples read). An id of ``ids`` the shard does not hold
        is a failure too (read, and quarantined as missing), never silently dropped."""
        stem = shard_stem(shard_uri)
        rows, failed, read = [], [], 0
        found: set[str] = set()
        with storage.open_input(shard_uri) as stream:
            for item in iter_shard(stream, stem):
                key = item.id if isinstance(item, ShardError) else item.key
                if ids is not None and key not in ids:
                    continue
                found.add(key)
                read += 1
                if isinstance(item, ShardError):
                    failed.append(Failed(item.id, item.reason))
                    continue
                try:
                    rows.append(featurize_sample(item, stem, self.featurize_cfg, self.fbank))
                except (AudioError, ValueError) as err:
                    failed.append(Failed(item.key, str(err)))
        for missing in sorted((ids or set()) - found):
            read += 1
            failed.append(Failed(missing, f"listed in the manifest but not in shard {stem}"))
        return rows, failed, read
