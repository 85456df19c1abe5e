"""Prepare stage: corpus -> webdataset shards + manifest.parquet + quarantine.parquet.

Runs in-process: importing is I/O plus FLAC encoding and is restartable per chunk
(see ``bigssl.data.prepare``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bigssl.data.importers import download_librispeech, librispeech_records, manifest_records
from bigssl.data.prepare import PrepareConfig, prepare_corpus
from bigssl.data.tts import TtsConfig, generate_tts


@dataclass
class TtsPrepareConfig(PrepareConfig):
    tts: TtsConfig = field(default_factory=TtsConfig)


def prepare_dir(
    manifest: str, out: str, config: str | None, overrides: list[str], source: str | None = None
) -> dict:
    cfg = PrepareConfig.load(config, overrides)
    if not Path(manifest).is_file():
        raise FileNotFoundError(manifest)
    records = manifest_records(manifest, source=source)
    summary = prepare_corpus(
        records, out, cfg, {"kind": "dir", "manifest": str(Path(manifest).resolve())}
    )
    return summary.finish(out, strict=cfg.strict)


def prepare_librispeech(
    root: str, out: str, config: str | None, overrides: list[str], download: str | None = None
) -> dict:
    cfg = PrepareConfig.load(config, overrides)
    if download:
        root = str(download_librispeech(download, root))
    if not Path(root).is_dir():
        raise FileNotFoundError(root)
    summary = prepare_corpus(
        librispeech_records(root),
        out,
        cfg,
        {"kind": "librispeech", "root": str(Path(root).resolve())},
    )
    return summary.finish(out, strict=cfg.strict)


def prepare_tts(out: str, config: str | None, overrides: list[str]) -> dict:
    cfg = TtsPrepareConfig.load(config, overrides)
    summary = prepare_corpus(generate_tts(cfg.tts), out, cfg, {"kind": "tts"})
    return summary.finish(out, strict=cfg.strict)
