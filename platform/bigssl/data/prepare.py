"""Turn importer records into webdataset shards + manifest + quarantine (no Ray).

Restartable by construction: input record ``i`` always lands in chunk
``i // utterances_per_shard``, and a chunk is done when its manifest part exists
(written atomically after its tar). A re-run skips done chunks, so a crash
half-way finishes without duplicates; a re-run with other settings is refused
rather than mixed into the old output.

Long recordings: with ``segment.mode`` fixed or energy, an unlabeled recording longer
than ``segment.max_s`` becomes several shard entries ``ID-c0000``, ``ID-c0001``, ...
(``bigssl.data.segment``), all in its input's chunk, each with its ``source_id`` and
``offset_s`` in its shard json and in ``segments.parquet`` (schema ``segments``, joined
to the manifest on id: the manifest schema is unchanged, so older manifests stay
valid). A labeled recording over ``max_duration_s`` stays quarantined: its transcript
cannot be split without an alignment.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from bigssl import schemas, storage
from bigssl.audio.decode import AudioError, decode_audio, encode_flac
from bigssl.config import Config, check
from bigssl.data.quarantine import Quarantine
from bigssl.data.records import RawUtterance
from bigssl.data.segment import SegmentConfig, segment_bounds
from bigssl.data.shards import ShardWriter, unsafe_name_reason
from bigssl.summary import StageSummary


@dataclass
class PrepareConfig(Config):
    utterances_per_shard: int = 500  # inputs per shard; fixed so re-runs chunk identically
    min_duration_s: float = 0.05  # shorter audio is quarantined
    max_duration_s: float = 120.0  # longer audio is quarantined, unless segment cuts it
    # Cut long *unlabeled* recordings into chunks of at most segment.max_s. Off by default:
    # chunking renames what it cuts (ID -> ID-cNNNN) and changes prepare.json, so an
    # existing output re-run (or resumed after a crash) with default settings must keep
    # producing the same shards; a pool of long recordings opts in (segment.mode=energy).
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    strict: bool = False  # exit non-zero if anything is quarantined

    def validate(self) -> None:
        check(self.utterances_per_shard > 0, "utterances_per_shard", "must be > 0")
        check(self.min_duration_s >= 0, "min_duration_s", "must be >= 0")
        check(
            self.max_duration_s > self.min_duration_s, "max_duration_s", "must be > min_duration_s"
        )
        if self.segment.mode != "off":
            check(
                self.segment.max_s <= self.max_duration_s,
                "segment.max_s",
                f"must be <= max_duration_s ({self.max_duration_s:g}), got {self.segment.max_s:g}",
            )
            check(
                self.segment.min_s >= self.min_duration_s,
                "segment.min_s",
                f"must be >= min_duration_s ({self.min_duration_s:g}), got {self.segment.min_s:g}",
            )

    def settings(self) -> dict:
        """The config as prepare.json records it: without ``segment`` while it is off, so
        outputs made before segmentation existed resume with the same settings."""
        settings = self.to_dict()
        if self.segment.mode == "off":
            settings.pop("segment")
        return settings


@dataclass
class _Encoded:
    """One shard entry: a whole recording, or a chunk of one (``source_id`` set)."""

    id: str
    audio: bytes
    duration_s: float
    sample_rate: int
    num_channels: int
    source_id: str | None = None
    offset_s: float | None = None


@dataclass
class _Audio:
    samples: np.ndarray  # (T, C) float32
    rate: int
    original: bytes | None  # FLAC input, kept byte for byte when not cut


def _not_utf8(value: object) -> bool:
    # Manifests and file names are decoded with surrogateescape, so undecodable bytes
    # arrive as lone surrogates; Arrow and JSON cannot write them.
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_text(text: str | None) -> tuple[str | None, str | None]:
    """(clean text, quarantine reason) for a transcript; None text means unlabeled."""
    if text is None:
        return None, None
    if _not_utf8(text):
        return None, "non-UTF-8 transcript"
    text = " ".join(text.split())
    return (None, "empty transcript") if not text else (text, None)


def _decode(rec: RawUtterance) -> _Audio:
    """Validate and decode one record's audio; raises AudioError with the reason."""
    if rec.samples is not None:
        samples = np.asarray(rec.samples, dtype=np.float32)
        if samples.size == 0:
            raise AudioError("zero-length audio")
        if not np.isfinite(samples).all():
            raise AudioError("audio holds NaN or infinite samples")
        return _Audio(samples.reshape(len(samples), -1), int(rec.sample_rate), None)
    try:
        data = storage.read_bytes(rec.audio_path)
    except (FileNotFoundError, OSError) as err:
        raise AudioError(f"missing or unreadable file: {err}") from None
    samples, rate = decode_audio(data, mono=False)
    # FLAC input is kept byte for byte (original audio); anything else becomes FLAC.
    return _Audio(samples, rate, data if data[:4] == b"fLaC" else None)


def _absurd(duration: float, cfg: PrepareConfig) -> str:
    return (
        f"absurd duration {duration:.3f} s (allowed {cfg.min_duration_s}..{cfg.max_duration_s} s)"
    )


def _too_long(duration: float, labeled: bool, cfg: PrepareConfig) -> str:
    reason = _absurd(duration, cfg)
    if labeled:
        return (
            f"{reason}; it has a transcript, and a labeled recording cannot be cut into chunks"
            " without an alignment of its text (align and segment it before prepare)"
        )
    return f"{reason}; unlabeled audio this long is cut into chunks with segment.mode=energy|fixed"


def _entries(rec: RawUtterance, labeled: bool, cfg: PrepareConfig) -> list[_Encoded] | str:
    """The shard entries of a record (several when a long unlabeled one is cut), or the
    reason it is quarantined."""
    try:
        audio = _decode(rec)
    except AudioError as err:
        return str(err)
    total, channels = audio.samples.shape
    duration = total / audio.rate
    if duration < cfg.min_duration_s:
        return _absurd(duration, cfg)
    bounds = [(0, total)] if labeled else segment_bounds(audio.samples, audio.rate, cfg.segment)
    if len(bounds) == 1:
        if duration > cfg.max_duration_s:
            return _too_long(duration, labeled, cfg)
        flac = audio.original or encode_flac(audio.samples, audio.rate)
        return [_Encoded(rec.id, flac, duration, audio.rate, channels)]
    return [
        _Encoded(
            f"{rec.id}-c{i:04d}",
            encode_flac(audio.samples[start:end], audio.rate),  # 16-bit FLAC, as non-FLAC input
            (end - start) / audio.rate,
            audio.rate,
            channels,
            source_id=rec.id,
            offset_s=start / audio.rate,
        )
        for i, (start, end) in enumerate(bounds)
    ]


def _problem(rec: RawUtterance, seen: set[str], cfg: PrepareConfig) -> str | None:
    if rec.error:
        return rec.error
    for name in ("audio_path", "id", "speaker", "source", "split"):
        if _not_utf8(getattr(rec, name)):
            return f"non-UTF-8 bytes in '{name}'"
    if "." in rec.id or unsafe_name_reason(rec.id):
        return f"id {rec.id!r} is not a safe webdataset key (no '.', '..' or absolute paths)"
    if rec.id in seen:
        return f"duplicate id {rec.id!r}"
    return None


def _write_chunk(
    index: int, records: list[RawUtterance], out: str, cfg: PrepareConfig, seen: set[str]
) -> None:
    shard_name = f"shard-{index:06d}.tar"
    quarantine = Quarantine("prepare")
    rows, segments = [], []
    with (
        storage.atomic_output(storage.join(out, "shards", shard_name)) as f,
        ShardWriter(f) as writer,
    ):
        for rec in records:
            source = rec.audio_path or rec.source
            reason = _problem(rec, seen, cfg)
            text, text_reason = _check_text(rec.text)
            reason = reason or text_reason
            entries = reason if reason is not None else _entries(rec, text is not None, cfg)
            if isinstance(entries, str):
                quarantine.add(rec.id, source, entries)
                continue
            seen.add(rec.id)  # a cut recording's own id stays taken too
            for enc in entries:
                if enc.id != rec.id and enc.id in seen:
                    quarantine.add(enc.id, source, f"duplicate id {enc.id!r} (a chunk of {rec.id})")
                    continue
                seen.add(enc.id)
                meta = {
                    "id": enc.id,
                    "duration_s": enc.duration_s,
                    "sample_rate": enc.sample_rate,
                    "speaker": rec.speaker,
                    "source": rec.source,
                    "split": rec.split,
                }
                if enc.source_id is not None:
                    meta.update(source_id=enc.source_id, offset_s=enc.offset_s)
                    segments.append(
                        {
                            "id": enc.id,
                            "source_id": enc.source_id,
                            "offset_s": enc.offset_s,
                            "duration_s": enc.duration_s,
                        }
                    )
                writer.write(enc.id, enc.audio, meta, text)
                rows.append(
                    {
                        **{k: v for k, v in meta.items() if k not in ("source_id", "offset_s")},
                        "shard": f"shards/{shard_name}",
                        "num_channels": enc.num_channels,
                        "text": text,
                    }
                )
    table = pa.Table.from_pylist(rows) if rows else schemas.empty("manifest")
    quarantine.write(storage.join(out, "parts", f"{index:06d}.quarantine.parquet"))
    storage.write_parquet(
        schemas.validate(pa.Table.from_pylist(segments), "segments")
        if segments
        else schemas.empty("segments"),
        storage.join(out, "parts", f"{index:06d}.segments.parquet"),
    )
    # The manifest part is the chunk's completion marker: written last.
    storage.write_parquet(
        schemas.validate(table, "manifest"),
        storage.join(out, "parts", f"{index:06d}.manifest.parquet"),
    )


def _chunks(records: Iterable[RawUtterance], size: int) -> Iterator[tuple[int, list[RawUtterance]]]:
    iterator = iter(records)
    for index in itertools.count():
        chunk = list(itertools.islice(iterator, size))
        if not chunk:
            return
        yield index, chunk


def _check_settings(out: str, settings: dict) -> None:
    marker = storage.join(out, "prepare.json")
    if storage.exists(marker):
        previous = storage.read_json(marker)
        if previous != settings:
            raise ValueError(
                f"{out} holds a prepare run with other settings {previous}; "
                f"use a new --out (this run: {settings})"
            )
    else:
        storage.write_json(marker, settings)


def prepare_corpus(
    records: Iterable[RawUtterance], out: str, cfg: PrepareConfig, source: dict
) -> StageSummary:
    """Shard ``records`` into ``out``; ``source`` describes the input (kept in prepare.json)."""
    _check_settings(out, {"source": source, "config": cfg.settings()})
    seen: set[str] = set()
    for index, chunk in _chunks(records, cfg.utterances_per_shard):
        part = storage.join(out, "parts", f"{index:06d}.manifest.parquet")
        if storage.exists(part):  # done in an earlier run
            seen.update(storage.read_parquet(part).column("id").to_pylist())
            cut = storage.join(out, "parts", f"{index:06d}.segments.parquet")
            if storage.exists(cut):  # the ids of recordings cut into chunks stay taken
                seen.update(storage.read_parquet(cut).column("source_id").to_pylist())
            continue
        _write_chunk(index, chunk, out, cfg, seen)
    return _collect(out)


def _concat_parts(out: str, kind: str) -> pa.Table:
    parts = storage.list_files(storage.join(out, "parts"), f".{kind}.parquet")
    tables = [schemas.validate(storage.read_parquet(p), kind) for p in parts]
    return pa.concat_tables(tables) if tables else schemas.empty(kind)


def _collect(out: str) -> StageSummary:
    """Concatenate the chunk parts into manifest, quarantine and segments .parquet."""
    manifest = _concat_parts(out, "manifest")
    quarantine = _concat_parts(out, "quarantine")
    segments = _concat_parts(out, "segments")
    storage.write_parquet(manifest, storage.join(out, "manifest.parquet"))
    storage.write_parquet(quarantine, storage.join(out, "quarantine.parquet"))
    storage.write_parquet(segments, storage.join(out, "segments.parquet"))
    hours = float(np.sum(manifest.column("duration_s").to_numpy())) / 3600 if len(manifest) else 0.0
    labeled = len(manifest) - manifest.column("text").null_count
    return StageSummary(
        "prepare",
        read=len(manifest) + len(quarantine),
        used=len(manifest),
        quarantined=len(quarantine),
        hours=hours,
        extra={
            "shards": len(set(manifest.column("shard").to_pylist())),
            "labeled": labeled,
            "speakers": len(set(manifest.column("speaker").to_pylist()) - {None}),
            "segments": len(segments),
            "segmented_recordings": len(set(segments.column("source_id").to_pylist())),
        },
    )
