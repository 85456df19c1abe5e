"""Webdataset shards: writing (webdataset's TarWriter) and tolerant streaming reads.

Contract (docs/DESIGN.md, "Shards and manifests"): one sample per utterance,
``__key__`` = utterance id, ``flac`` = original audio, ``json`` = {id, duration_s,
sample_rate, speaker, source, split}, ``txt`` only when labeled.

Why a reader of our own instead of webdataset's or Ray's ``read_webdataset``: both
raise on a truncated or corrupt tar and lose the whole shard. Here a damaged tar
yields every sample before the damage, then one :class:`ShardError` naming it, so
the stage quarantines the rest and carries on. Member names are checked too: an
absolute path or ``..`` in a tar is never trusted.
"""

from __future__ import annotations

import json
import posixpath
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import webdataset as wds

AUDIO_KEYS = ("flac", "wav")


@dataclass
class ShardSample:
    """One webdataset sample: ``fields`` maps extension (``flac``, ``json``, ``txt``) to bytes."""

    key: str
    fields: dict[str, bytes] = field(default_factory=dict)

    def meta(self) -> dict[str, Any]:
        return json.loads(self.fields["json"]) if "json" in self.fields else {}


@dataclass
class ShardError:
    """Something in a shard that is not a usable sample; ``id`` names it for quarantine."""

    id: str
    reason: str


def unsafe_name_reason(name: str) -> str | None:
    """Why a tar member or manifest path must not be trusted, or None if it is fine."""
    if not name:
        return "empty name"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return f"absolute path {name!r}"
    if ".." in posixpath.normpath(name).split("/") or ".." in name.split("/"):
        return f"path escapes its root ({name!r} holds '..')"
    return None


def split_member_name(name: str) -> tuple[str, str]:
    """webdataset's rule: key = path up to the first dot of the basename, extension = rest."""
    directory, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(directory, stem) if directory else stem, ext


def iter_shard(fileobj: IO[bytes], shard_name: str) -> Iterator[ShardSample | ShardError]:
    """Stream the samples of one tar; damage ends the stream with a :class:`ShardError`."""
    current: ShardSample | None = None
    count = 0
    try:
        with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                reason = unsafe_name_reason(member.name)
                if reason:
                    yield ShardError(f"{shard_name}:{member.name}", f"unsafe tar member: {reason}")
                    continue
                key, ext = split_member_name(member.name)
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if current is not None and key != current.key:
                    count += 1
                    yield current
                    current = None
                if current is None:
                    current = ShardSample(key)
                current.fields[ext] = data
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:
        # The sample being assembled when the damage hit may be incomplete: it is
        # part of the quarantined remainder, not yielded as if whole.
        where = f"after {count} samples" + (f" (inside '{current.key}')" if current else "")
        yield ShardError(
            f"{shard_name}#rest", f"corrupt or truncated tar {where}: {type(err).__name__}: {err}"
        )
        return
    if current is not None:
        yield current


class ShardWriter:
    """Writes samples to one tar file object with deterministic headers (mtime 0)."""

    def __init__(self, fileobj: IO[bytes]):
        self._writer = wds.TarWriter(fileobj, mtime=0.0)
        self.num_samples = 0

    def write(self, key: str, audio: bytes, meta: dict[str, Any], text: str | None) -> None:
        sample: dict[str, Any] = {"__key__": key, "flac": audio, "json": json.dumps(meta).encode()}
        if text is not None:
            sample["txt"] = text.encode("utf-8")
        self._writer.write(sample)
        self.num_samples += 1

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
