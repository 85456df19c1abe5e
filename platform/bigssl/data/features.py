"""Featurize one shard: tolerant read -> validate -> log-mel -> feature parquet (no Ray).

The unit of work, of output and of restart is the input shard: ``featurize_shard``
writes ``features/NAME.parquet`` and ``quarantine/NAME.parquet``, then
``done/NAME.json`` with its counts last, all atomically. A re-run skips shards
whose done marker exists, so a crash never duplicates or loses rows. Memory is
one utterance plus one parquet row group, whatever the shard size.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from bigssl import schemas, storage
from bigssl.audio.decode import AudioError, decode_audio
from bigssl.audio.features import Fbank, FbankConfig
from bigssl.config import Config, check
from bigssl.data.quarantine import Quarantine
from bigssl.data.shards import AUDIO_KEYS, ShardError, ShardSample, iter_shard


@dataclass
class FeaturizeConfig(Config):
    fbank: FbankConfig = field(default_factory=FbankConfig)
    audio_key: str = "flac"  # one audio extension per dataset (mixing keys breaks Arrow columns)
    min_duration_s: float = 0.05  # shorter audio is quarantined
    max_duration_s: float = 120.0  # longer audio is quarantined
    rows_per_group: int = 256  # parquet row group size: bounds a task's memory
    num_cpus_per_task: float = 1.0  # Ray CPUs per shard task
    strict: bool = False  # exit non-zero if anything is quarantined

    def validate(self) -> None:
        check(self.audio_key in AUDIO_KEYS, "audio_key", f"must be one of {AUDIO_KEYS}")
        check(
            self.max_duration_s > self.min_duration_s >= 0,
            "max_duration_s",
            "must be > min_duration_s >= 0",
        )
        check(self.rows_per_group > 0, "rows_per_group", "must be > 0")
        check(0 < self.num_cpus_per_task <= 64, "num_cpus_per_task", "must be in (0, 64]")


def shard_stem(shard_uri: str) -> str:
    return posixpath.basename(str(shard_uri)).rsplit(".tar", 1)[0]


def done_marker(out: str, shard_uri: str) -> str:
    return storage.join(out, "done", f"{shard_stem(shard_uri)}.json")


def _text(sample: ShardSample) -> tuple[str | None, str | None]:
    """(transcript or None, quarantine reason or None)."""
    if "txt" not in sample.fields:
        return None, None
    try:
        text = sample.fields["txt"].decode("utf-8")
    except UnicodeDecodeError:
        return None, "non-UTF-8 transcript"
    text = " ".join(text.split())
    return (text, None) if text else (None, "empty transcript")


def featurize_sample(
    sample: ShardSample, shard: str, cfg: FeaturizeConfig, fbank: Fbank
) -> dict[str, Any]:
    """One sample -> one features row; raises AudioError/ValueError with the quarantine reason."""
    audio = sample.fields.get(cfg.audio_key)
    if audio is None:
        found = [k for k in sample.fields if k in AUDIO_KEYS]
        raise AudioError(
            f"no '{cfg.audio_key}' audio in sample (found keys {sorted(sample.fields)})"
            + (f"; dataset audio key is '{cfg.audio_key}', not {found}" if found else "")
        )
    try:
        meta = sample.meta()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"unparseable json metadata: {err}") from None
    text, reason = _text(sample)
    if reason:
        raise ValueError(reason)
    samples, rate = decode_audio(audio)
    duration = len(samples) / rate
    if not cfg.min_duration_s <= duration <= cfg.max_duration_s:
        raise AudioError(
            f"absurd duration {duration:.3f} s (allowed {cfg.min_duration_s}..{cfg.max_duration_s} s)"
        )
    feats = fbank.extract(samples, rate)
    if feats.shape[0] == 0:
        raise AudioError(f"audio too short for one {cfg.fbank.frame_length_ms} ms frame")
    return {
        "id": sample.key,
        "shard": shard,
        "feats": feats.reshape(-1),
        "num_frames": feats.shape[0],
        "num_mel_bins": feats.shape[1],
        "duration_s": duration,
        "speaker": meta.get("speaker"),
        "text": text,
    }


def _flush(writer: pq.ParquetWriter, rows: list[dict[str, Any]]) -> None:
    if rows:
        # Column-wise with the schema's types: row-wise from_pylist infers each
        # feature array's type and was 40x slower, as slow as the fbank itself.
        schema = schemas.load("features")
        columns = {name: [r[name] for r in rows] for name in schema.names}
        writer.write_table(pa.Table.from_pydict(columns, schema=schema))
        rows.clear()


def features_file(out: str, stem: str) -> str:
    return storage.join(out, "features", f"{stem}.parquet")


def _features_writer(f: Any) -> pq.ParquetWriter:
    # Log-mel floats neither dictionary-encode nor compress (snappy saved 0.6 % of the
    # bytes) and their min/max statistics prune nothing: skipping all three on feats
    # took ~20 % off the writer's CPU.
    schema = schemas.load("features")
    return pq.ParquetWriter(
        f,
        schema,
        use_dictionary=["id", "shard", "speaker", "text"],
        compression={name: "none" if name == "feats" else "snappy" for name in schema.names},
        write_statistics=[name for name in schema.names if name != "feats"],
    )


def featurize_shard(shard_uri: str, out: str, cfg: FeaturizeConfig) -> dict[str, Any]:
    """Featurize one shard into ``out``; returns (and records in its done marker) the counts."""
    stem = shard_stem(shard_uri)
    fbank = Fbank(cfg.fbank)
    quarantine = Quarantine("featurize")
    counts = {"shard": stem, "read": 0, "used": 0, "quarantined": 0, "seconds": 0.0, "frames": 0}
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    with storage.atomic_output(features_file(out, stem)) as f:
        with _features_writer(f) as writer:
            with storage.open_input(shard_uri) as stream:
                for item in iter_shard(stream, stem):
                    counts["read"] += 1
                    if isinstance(item, ShardError):
                        quarantine.add(item.id, shard_uri, item.reason)
                        continue
                    try:
                        row = featurize_sample(item, stem, cfg, fbank)
                    except (AudioError, ValueError) as err:
                        quarantine.add(item.key, shard_uri, str(err))
                        continue
                    if row["id"] in seen:
                        quarantine.add(
                            row["id"], shard_uri, "duplicate id in its shard (first kept)"
                        )
                        continue
                    seen.add(row["id"])
                    counts["used"] += 1
                    counts["seconds"] += row["duration_s"]
                    counts["frames"] += row["num_frames"]
                    rows.append(row)
                    if len(rows) >= cfg.rows_per_group:
                        _flush(writer, rows)
            _flush(writer, rows)
    counts["quarantined"] = len(quarantine)
    quarantine.write(storage.join(out, "quarantine", f"{stem}.parquet"))
    storage.write_json(done_marker(out, shard_uri), counts)
    return counts


def unflatten(row_feats: Any, num_frames: int, num_mel_bins: int):
    """Rebuild the (T, F) matrix of a features row (numpy)."""
    import numpy as np

    return np.asarray(row_feats, dtype=np.float32).reshape(num_frames, num_mel_bins)


def drop_cross_shard_duplicates(out: str, shard_uris: list[str], rows_per_group: int) -> int:
    """Keep each id in the first shard (in ``shard_uris`` order) that holds it: later copies
    leave their feature file and become quarantine rows naming the kept shard. Returns
    the copies dropped.

    Shards are featurized independently, so only a pass over all of them sees an id
    repeated across shards. It reads the id columns only. The plan is written before
    anything changes and applied idempotently, so a crash part-way is finished by the
    next run, and each done marker is recounted from its feature file.
    """
    plan_uri = storage.join(out, "duplicates.pending.json")
    plan: dict[str, dict[str, str]] = (
        storage.read_json(plan_uri) if storage.exists(plan_uri) else {}
    )
    if not plan:
        owner: dict[str, str] = {}
        for uri in shard_uris:
            stem = shard_stem(uri)
            ids = storage.read_parquet(features_file(out, stem), columns=["id"]).column("id")
            for uid in ids.to_pylist():
                kept = owner.setdefault(uid, stem)
                if kept != stem:
                    plan.setdefault(uri, {})[uid] = kept
        if not plan:
            return 0
        storage.write_json(plan_uri, plan)
    for uri, copies in plan.items():
        _drop_rows(out, uri, copies, rows_per_group)
    storage.remove(plan_uri)
    return sum(len(c) for c in plan.values())


def _drop_rows(out: str, shard_uri: str, copies: dict[str, str], rows_per_group: int) -> None:
    stem = shard_stem(shard_uri)
    q_uri = storage.join(out, "quarantine", f"{stem}.parquet")
    quarantine = Quarantine(
        "featurize", storage.read_parquet(q_uri).to_pylist() if storage.exists(q_uri) else []
    )
    listed = {r["id"] for r in quarantine.rows}
    for uid, kept in sorted(copies.items()):
        if uid not in listed:
            quarantine.add(uid, shard_uri, f"id also in shard {kept} (kept there)")
    table = storage.read_parquet(features_file(out, stem))
    keep = pc.invert(pc.is_in(table.column("id"), value_set=pa.array(list(copies))))
    table = table.filter(keep)
    quarantine.write(q_uri)
    with storage.atomic_output(features_file(out, stem)) as f, _features_writer(f) as writer:
        writer.write_table(table.cast(schemas.load("features")), row_group_size=rows_per_group)
    counts = storage.read_json(done_marker(out, shard_uri))
    counts.update(
        used=table.num_rows,
        quarantined=len(quarantine),
        seconds=float(pc.sum(table.column("duration_s")).as_py() or 0.0),
        frames=int(pc.sum(table.column("num_frames")).as_py() or 0),
    )
    storage.write_json(done_marker(out, shard_uri), counts)
