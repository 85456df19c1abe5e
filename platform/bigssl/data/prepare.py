"""Turn importer records into webdataset shards + manifest + quarantine (no Ray).

Restartable by construction: input record ``i`` always lands in chunk
``i // utterances_per_shard``, and a chunk is done when its manifest part exists
(written atomically after its tar). A re-run skips done chunks, so a crash
half-way finishes without duplicates; a re-run with other settings is refused
rather than mixed into the old output.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from bigssl import schemas, storage
from bigssl.audio.decode import AudioError, decode_audio, encode_flac
from bigssl.config import Config, check
from bigssl.data.quarantine import Quarantine
from bigssl.data.records import RawUtterance
from bigssl.data.shards import ShardWriter, unsafe_name_reason
from bigssl.summary import StageSummary


@dataclass
class PrepareConfig(Config):
    utterances_per_shard: int = 500  # inputs per shard; fixed so re-runs chunk identically
    min_duration_s: float = 0.05  # shorter audio is quarantined
    max_duration_s: float = 120.0  # longer audio is quarantined (segment it first)
    strict: bool = False  # exit non-zero if anything is quarantined

    def validate(self) -> None:
        check(self.utterances_per_shard > 0, "utterances_per_shard", "must be > 0")
        check(self.min_duration_s >= 0, "min_duration_s", "must be >= 0")
        check(
            self.max_duration_s > self.min_duration_s, "max_duration_s", "must be > min_duration_s"
        )


@dataclass
class _Encoded:
    audio: bytes
    duration_s: float
    sample_rate: int
    num_channels: int


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


def _encode(rec: RawUtterance) -> _Encoded:
    """Validate and encode one record's audio; raises AudioError with the reason."""
    if rec.samples is not None:
        samples = np.asarray(rec.samples, dtype=np.float32)
        if samples.size == 0:
            raise AudioError("zero-length audio")
        if not np.isfinite(samples).all():
            raise AudioError("audio holds NaN or infinite samples")
        channels = 1 if samples.ndim == 1 else samples.shape[1]
        return _Encoded(
            encode_flac(samples, rec.sample_rate),
            len(samples) / rec.sample_rate,
            int(rec.sample_rate),
            channels,
        )
    try:
        data = storage.read_bytes(rec.audio_path)
    except (FileNotFoundError, OSError) as err:
        raise AudioError(f"missing or unreadable file: {err}") from None
    samples, rate = decode_audio(data, mono=False)
    # FLAC input is kept byte for byte (original audio); anything else becomes FLAC.
    audio = data if data[:4] == b"fLaC" else encode_flac(samples, rate)
    return _Encoded(audio, samples.shape[0] / rate, rate, samples.shape[1])


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
    rows = []
    with (
        storage.atomic_output(storage.join(out, "shards", shard_name)) as f,
        ShardWriter(f) as writer,
    ):
        for rec in records:
            reason = _problem(rec, seen, cfg)
            text, text_reason = _check_text(rec.text)
            reason = reason or text_reason
            if reason is None:
                try:
                    enc = _encode(rec)
                    if not cfg.min_duration_s <= enc.duration_s <= cfg.max_duration_s:
                        reason = (
                            f"absurd duration {enc.duration_s:.3f} s (allowed "
                            f"{cfg.min_duration_s}..{cfg.max_duration_s} s)"
                        )
                except AudioError as err:
                    reason = str(err)
            if reason is not None:
                quarantine.add(rec.id, rec.audio_path or rec.source, reason)
                continue
            seen.add(rec.id)
            meta = {
                "id": rec.id,
                "duration_s": enc.duration_s,
                "sample_rate": enc.sample_rate,
                "speaker": rec.speaker,
                "source": rec.source,
                "split": rec.split,
            }
            writer.write(rec.id, enc.audio, meta, text)
            rows.append(
                {
                    **meta,
                    "shard": f"shards/{shard_name}",
                    "num_channels": enc.num_channels,
                    "text": text,
                }
            )
    table = pa.Table.from_pylist(rows) if rows else schemas.empty("manifest")
    quarantine.write(storage.join(out, "parts", f"{index:06d}.quarantine.parquet"))
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
    _check_settings(out, {"source": source, "config": cfg.to_dict()})
    seen: set[str] = set()
    for index, chunk in _chunks(records, cfg.utterances_per_shard):
        part = storage.join(out, "parts", f"{index:06d}.manifest.parquet")
        if storage.exists(part):  # done in an earlier run
            seen.update(storage.read_parquet(part).column("id").to_pylist())
            continue
        _write_chunk(index, chunk, out, cfg, seen)
    return _collect(out)


def _concat_parts(out: str, kind: str) -> pa.Table:
    parts = storage.list_files(storage.join(out, "parts"), f".{kind}.parquet")
    tables = [schemas.validate(storage.read_parquet(p), kind) for p in parts]
    return pa.concat_tables(tables) if tables else schemas.empty(kind)


def _collect(out: str) -> StageSummary:
    """Concatenate the chunk parts into manifest.parquet and quarantine.parquet."""
    manifest = _concat_parts(out, "manifest")
    quarantine = _concat_parts(out, "quarantine")
    storage.write_parquet(manifest, storage.join(out, "manifest.parquet"))
    storage.write_parquet(quarantine, storage.join(out, "quarantine.parquet"))
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
        },
    )
