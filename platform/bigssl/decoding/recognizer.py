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
- **Long utterances are decoded in chunks.** An utterance over ``decode.max_chunk_s`` is
  featurized whole, then its feature frames are cut into the fewest consecutive,
  non-overlapping pieces of at most that length (as even as possible, so no tiny last
  piece), each decoded as its own utterance in the same batches as the rest; the pieces'
  hypotheses are joined by :meth:`Hypothesis.concatenate` and the text decoded from all
  tokens, so a word cut at a boundary rejoins when its pieces say so. No overlap: nothing
  is decoded twice, so nothing needs de-duplicating at the seams (a word cut exactly at a
  seam may be misrecognised). This is the same for CTC and greedy RNN-T (whose prediction
  network restarts per piece). Over ``decode.max_duration_s`` an utterance is quarantined
  before it is decoded, with a reason naming the setting: a shard's rows are featurized
  before decoding, so the limit bounds a replica's memory.
- The checkpoint's head picks the search: CTC (greedy, or beam when asked and
  available) or RNN-T (greedy; asking an RNN-T checkpoint for beam warns and decodes
  greedily). ``decoder.kind`` says what actually ran.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bigssl import storage
from bigssl.audio.decode import AudioError, audio_info
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
    # Longer utterances are quarantined (the reason names this field). It bounds memory, as
    # a shard's rows are featurized whole before decoding; 120 s is the limit it had when
    # it was fixed, and prepare's default, so shards from a default prepare always pass.
    max_duration_s: float = 120.0
    # Longer utterances are decoded as consecutive chunks of at most this (no overlap;
    # module doc). 30 s: prepare's segment.max_s, about the longest utterance a model
    # trained on segmented speech has seen; max_chunk_s >= max_duration_s disables it.
    max_chunk_s: float = 30.0

    def validate(self) -> None:
        check(self.beam_size >= 1, "beam_size", "must be >= 1")
        check(self.max_frames >= 100, "max_frames", "must be >= 100")
        shortest = FeaturizeConfig.min_duration_s  # shorter audio is quarantined anyway
        check(
            self.max_duration_s > shortest,
            "max_duration_s",
            f"must be > {shortest:g} s, got {self.max_duration_s}",
        )
        # a chunk needs frames enough for the encoder's subsampling convolutions
        check(self.max_chunk_s >= 1.0, "max_chunk_s", f"must be >= 1 s, got {self.max_chunk_s}")
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
            fbank=FbankConfig.from_dict(self.meta.get("fbank", {})),
            audio_key=cfg.audio_key,
            max_duration_s=cfg.max_duration_s,
        )
        self.fbank = Fbank(self.featurize_cfg.fbank)
        # feature frames per decoded chunk
        self.chunk_frames = max(
            1, int(cfg.max_chunk_s * self.featurize_cfg.fbank.frames_per_second)
        )

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

    def chunks(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """A feature row as the pieces it is decoded in: itself when it has at most
        ``chunk_frames`` frames, else the fewest consecutive pieces of at most that many."""
        total = _frames(row)
        if total <= self.chunk_frames:
            return [row]
        count = -(-total // self.chunk_frames)
        edges = [k * total // count for k in range(count + 1)]
        feats = np.asarray(row["feats"]).reshape(total, -1)
        return [
            {**row, "id": f"{row['id']}#{k}", "feats": feats[a:b].reshape(-1), "num_frames": b - a}
            for k, (a, b) in enumerate(zip(edges[:-1], edges[1:], strict=True))
        ]

    def transcribe(
        self, rows: list[dict[str, Any]]
    ) -> list[tuple[dict[str, Any], Hypothesis, str]]:
        """Feature rows -> (row, hypothesis, text) per row, in length order; a row over
        ``max_chunk_s`` is decoded in pieces (:meth:`chunks`) and joined."""
        pieces = [(i, k, p) for i, row in enumerate(rows) for k, p in enumerate(self.chunks(row))]
        parts: dict[int, dict[int, Hypothesis]] = defaultdict(dict)
        order = sorted(pieces, key=lambda piece: _frames(piece[2]))
        for batch in greedy_cut(order, lambda piece: _frames(piece[2]), self.cfg.max_frames):
            hyps = self.hypotheses(collate_features([p for _, _, p in batch]))
            for (i, k, _), hyp in zip(batch, hyps, strict=True):
                parts[i][k] = hyp
        out = []
        for i in sorted(range(len(rows)), key=lambda i: _frames(rows[i])):
            hyp = Hypothesis.concatenate([parts[i][k] for k in sorted(parts[i])])
            out.append((rows[i], hyp, self.tokenizer.decode(hyp.tokens)))
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
                too_long = self._too_long(item)
                if too_long:
                    failed.append(Failed(item.key, too_long))
                    continue
                try:
                    rows.append(featurize_sample(item, stem, self.featurize_cfg, self.fbank))
                except (AudioError, ValueError) as err:
                    failed.append(Failed(item.key, str(err)))
        for missing in sorted((ids or set()) - found):
            read += 1
            failed.append(Failed(missing, f"listed in the manifest but not in shard {stem}"))
        return rows, failed, read

    def _too_long(self, sample: Any) -> str | None:
        """The quarantine reason of audio over ``max_duration_s``, read from its header
        (never decoded); None otherwise, or when the header cannot say."""
        audio = sample.fields.get(self.cfg.audio_key)
        if audio is None:
            return None
        try:
            frames, rate, _ = audio_info(audio)
        except AudioError:
            return None  # featurize_sample gives the reason
        return self._over_limit(frames / rate) if rate else None

    def _over_limit(self, duration: float) -> str | None:
        if duration <= self.cfg.max_duration_s:
            return None
        return (
            f"duration {duration:.3f} s over decode.max_duration_s={self.cfg.max_duration_s:g}"
            f" (raise it to decode such audio: beyond decode.max_chunk_s="
            f"{self.cfg.max_chunk_s:g} it is decoded in chunks)"
        )
