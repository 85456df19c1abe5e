"""Corpus importers: each yields :class:`RawUtterance` records lazily, never raises on bad rows.

A row that cannot be used still yields a record with ``error`` set, so prepare
quarantines it with its reason instead of dropping it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import re
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from bigssl.data.records import RawUtterance
from bigssl.data.shards import unsafe_name_reason

AUDIO_SUFFIXES = (".flac", ".wav", ".ogg", ".mp3", ".aiff", ".aif", ".au")
_LIBRISPEECH_ID = re.compile(r"\d+-\d+-\d+")
LIBRISPEECH_URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"


def id_from_path(relative: str) -> str:
    """A webdataset-safe utterance id from a relative audio path: no '/' or '.'."""
    stem = relative.rsplit(".", 1)[0] if "." in posixpath.basename(relative) else relative
    return stem.strip("/").replace("/", "-").replace(".", "_")


def _decode_line(raw: bytes) -> str:
    # surrogateescape keeps undecodable bytes visible to the transcript check in
    # prepare, which quarantines them as non-UTF-8 instead of guessing an encoding.
    return raw.decode("utf-8", "surrogateescape").rstrip("\r\n")


def _manifest_rows(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """(line number, row dict or None, parse error) for a JSONL, CSV or TSV manifest."""
    lines = [_decode_line(raw) for raw in path.read_bytes().splitlines()]
    if path.suffix in (".csv", ".tsv"):
        reader = csv.DictReader(
            io.StringIO("\n".join(lines)), delimiter="," if path.suffix == ".csv" else "\t"
        )
        for number, row in enumerate(reader, start=2):
            yield number, {k: v for k, v in row.items() if v not in ("", None)}, None
        return
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            yield number, None, f"unparseable manifest line: {err}"
            continue
        yield (
            number,
            (row if isinstance(row, dict) else None),
            (None if isinstance(row, dict) else "manifest line is not an object"),
        )


def _escapes_by_link(root: Path, relative: str) -> str | None:
    """A relative path whose symlinks lead outside ``root``: as unsafe as an absolute one."""
    real_root = os.path.realpath(root)
    target = os.path.realpath(root / relative)
    if os.path.commonpath([real_root, target]) != real_root:
        return f"{relative!r} is a link that leads outside the manifest's folder"
    return None


def manifest_records(manifest: str | Path, source: str | None = None) -> Iterator[RawUtterance]:
    """Records of a JSONL/CSV/TSV list with ``audio`` (relative path), ``text``, ``speaker``.

    Optional columns: ``id`` (else derived from the path) and ``split``.
    """
    path = Path(manifest)
    root = path.parent
    source = source or root.name or path.stem
    for number, row, error in _manifest_rows(path):
        if row is None:
            yield RawUtterance(id=f"{path.name}:{number}", source=source, error=error)
            continue
        audio = row.get("audio")
        if not isinstance(audio, str) or not audio:
            yield RawUtterance(
                id=f"{path.name}:{number}", source=source, error="row has no 'audio' path"
            )
            continue
        uid = str(row.get("id") or id_from_path(audio))
        unsafe = unsafe_name_reason(audio) or _escapes_by_link(root, audio)
        text = row.get("text")
        yield RawUtterance(
            id=uid,
            source=source,
            text=None if text is None else str(text),
            speaker=None if row.get("speaker") is None else str(row["speaker"]),
            audio_path=None if unsafe else str(root / audio),
            split=row.get("split"),
            error=f"unsafe audio path: {unsafe}" if unsafe else None,
        )


def _transcripts(trans_file: Path) -> Iterator[tuple[str, str]]:
    for raw in trans_file.read_bytes().splitlines():
        line = _decode_line(raw)
        if line.strip():
            uid, _, text = line.partition(" ")
            yield uid, text


def librispeech_records(root: str | Path, source: str | None = None) -> Iterator[RawUtterance]:
    """LibriSpeech layout (``speaker/chapter/*.flac`` + ``*.trans.txt``) or plain audio folders.

    Audio with a transcript line is labeled; audio without one is unlabeled (the
    Libri-Light case); a transcript line without audio is a missing file.
    """
    root = Path(root)
    source = source or f"librispeech/{root.name}"
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        folder = Path(directory)
        texts: dict[str, str] = {}
        for name in sorted(f for f in files if f.endswith(".trans.txt")):
            texts.update(_transcripts(folder / name))
        audio = {
            f.rsplit(".", 1)[0]: f for f in sorted(files) if f.lower().endswith(AUDIO_SUFFIXES)
        }
        for stem in sorted(set(texts) | set(audio)):
            relative = (folder / audio.get(stem, stem)).relative_to(root).as_posix()
            speaker = relative.split("/")[0] if "/" in relative else None
            # LibriSpeech ids (speaker-chapter-utterance) are unique corpus-wide;
            # other stems are only unique within their folder.
            uid = (
                stem if stem in texts or _LIBRISPEECH_ID.fullmatch(stem) else id_from_path(relative)
            )
            yield RawUtterance(
                id=uid,
                source=source,
                text=texts.get(stem),
                speaker=stem.split("-")[0] if uid == stem else speaker,
                audio_path=str(folder / audio[stem]) if stem in audio else None,
                error=None
                if stem in audio
                else f"missing file: no audio for transcript line {stem!r}",
            )


def download_librispeech(subset: str, dest: str | Path, url: str | None = None) -> Path:
    """Download and unpack a LibriSpeech subset (e.g. ``train-clean-100``) under ``dest``.

    Returns the subset folder. Members are checked before extraction: a path that
    escapes ``dest`` aborts. ``url`` overrides the OpenSLR address (a mirror, or a
    ``file://`` archive in tests).
    """
    dest = Path(dest)
    target = dest / "LibriSpeech" / subset
    if target.is_dir():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"{subset}.tar.gz"
    with urllib.request.urlopen(url or LIBRISPEECH_URL.format(subset=subset)) as response:
        with open(archive.with_suffix(".part"), "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    archive.with_suffix(".part").rename(archive)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            reason = unsafe_name_reason(member.name)
            if reason:
                raise ValueError(f"refusing to extract {archive}: {reason}")
        tar.extractall(dest, filter="data")
    archive.unlink()
    if not target.is_dir():
        raise ValueError(f"{subset} archive did not contain LibriSpeech/{subset}")
    return target
