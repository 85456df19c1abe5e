"""Generated corpora for tests: clean ones and fault-injection ones (no audio is committed)."""

from __future__ import annotations

import io
import json
import tarfile
import zlib
from pathlib import Path

import numpy as np
import soundfile as sf

from bigssl.audio import encode_flac


def tone(seconds: float, rate: int = 16000, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    noise = 0.02 * np.random.default_rng(seed).standard_normal(len(t))
    return np.clip(0.3 * np.sin(2 * np.pi * freq * t) + noise, -1, 1).astype(np.float32)


def write_audio(
    path: Path, seconds: float, rate: int = 16000, channels: int = 1, fmt: str = "FLAC"
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # crc32, not hash(): str hashes are salted per process, so the audio would differ per run.
    samples = tone(seconds, rate, seed=zlib.crc32(path.name.encode()) % 1000)
    if channels > 1:
        samples = np.stack([samples] * channels, axis=1)
    sf.write(path, samples, rate, format=fmt)
    return path


# id (derived from the audio path) -> the reason substring prepare must record.
DIR_FAULTS = {
    "bad-undecodable": "undecodable",
    "bad-zero": "zero-length",
    "bad-long": "absurd duration",
    "bad-tiny": "absurd duration",
    "bad-emptytext": "empty transcript",
    "bad-nonutf8": "non-UTF-8",
    "bad-missing": "missing",
    "__-escape": "unsafe audio path",  # id derived from "../escape.flac"
    "etc-passwd": "unsafe audio path",
    "good-a": "duplicate id",  # the second row reusing good-a's id
    "list.jsonl:13": "unparseable",
}
DIR_GOOD = {"good-a", "good-b", "good-stereo", "good-unlabeled"}


def fault_dir_corpus(root: Path) -> Path:
    """A JSONL list whose rows hit every bad-input kind of prepare, plus four good rows."""
    write_audio(root / "good/a.flac", 1.2)
    write_audio(root / "good/b.wav", 0.8, rate=8000, fmt="WAV")
    write_audio(root / "good/stereo.flac", 1.0, rate=44100, channels=2)
    write_audio(root / "good/unlabeled.flac", 0.9, rate=22050)
    (root / "bad").mkdir(parents=True, exist_ok=True)
    (root / "bad/undecodable.flac").write_bytes(b"\x00garbage" * 100)
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(0, np.float32), 16000, format="WAV")
    (root / "bad/zero.wav").write_bytes(buffer.getvalue())
    write_audio(root / "bad/long.flac", 6.0)
    write_audio(root / "bad/tiny.flac", 0.01)
    write_audio(root / "bad/emptytext.flac", 1.0)
    write_audio(root / "bad/nonutf8.flac", 1.0)
    lines = [
        json.dumps({"audio": "good/a.flac", "text": "hello world", "speaker": "s1"}),
        json.dumps({"audio": "good/b.wav", "text": "good  morning ", "speaker": "s2"}),
        json.dumps({"audio": "good/stereo.flac", "text": "two channels", "speaker": "s1"}),
        json.dumps({"audio": "good/unlabeled.flac", "speaker": "s3"}),
        json.dumps({"audio": "bad/undecodable.flac", "text": "x"}),
        json.dumps({"audio": "bad/zero.wav", "text": "x"}),
        json.dumps({"audio": "bad/long.flac", "text": "x"}),
        json.dumps({"audio": "bad/tiny.flac", "text": "x"}),
        json.dumps({"audio": "bad/emptytext.flac", "text": "   "}),
        json.dumps({"audio": "bad/missing.flac", "text": "x"}),
        json.dumps({"audio": "../escape.flac", "text": "x"}),
        json.dumps({"audio": "/etc/passwd", "text": "x"}),
        "{this is not json",
        json.dumps({"audio": "good/b.wav", "id": "good-a", "text": "dup"}),
    ]
    raw = "\n".join(lines).encode() + b"\n"
    # A transcript that is not UTF-8 (latin-1 bytes), written raw.
    raw += b'{"audio": "bad/nonutf8.flac", "text": "caf\xe9"}\n'
    (root / "list.jsonl").write_bytes(raw)
    return root / "list.jsonl"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def sample_fields(
    key: str, seconds: float = 1.0, text: str | None = "a b c", rate: int = 16000
) -> dict[str, bytes]:
    fields = {
        "flac": encode_flac(tone(seconds, rate), rate),
        "json": json.dumps({"id": key, "duration_s": seconds, "speaker": "spk"}).encode(),
    }
    if text is not None:
        fields["txt"] = text.encode()
    return fields


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for key, fields in samples:
            for ext, data in sorted(fields.items()):
                _add(tar, f"{key}.{ext}", data)
    return path


# Fault shards: expected (used, quarantined) and reason substrings.
def fault_shards(root: Path) -> dict[str, tuple[int, int, list[str]]]:
    write_tar(root / "good.tar", [(f"g{i}", sample_fields(f"g{i}")) for i in range(4)])
    full = write_tar(root / "trunc.tar", [(f"t{i}", sample_fields(f"t{i}", 2.0)) for i in range(6)])
    data = full.read_bytes()
    full.write_bytes(data[: len(data) // 2])  # truncated mid-shard
    (root / "corrupt.tar").write_bytes(b"this is not a tar file" * 50)
    zero = io.BytesIO()  # libsndfile cannot parse a zero-frame FLAC; a WAV header sniffs fine
    sf.write(zero, np.zeros(0, np.float32), 16000, format="WAV")
    mixed = [
        ("m0", sample_fields("m0")),
        ("m1", {**sample_fields("m1"), "flac": b"garbage" * 20}),
        ("m2", {**sample_fields("m2"), "flac": zero.getvalue()}),
        ("m3", {**sample_fields("m3"), "txt": b"caf\xe9"}),
        ("m4", {**sample_fields("m4"), "txt": b"  "}),
        ("m5", {k: v for k, v in sample_fields("m5").items() if k != "flac"} | {"wav": b"RIFF"}),
        ("m6", sample_fields("m6", seconds=200.0, rate=8000)),
        ("m7", sample_fields("m7", text=None)),  # unlabeled: fine
    ]
    write_tar(root / "mixed.tar", mixed)
    with tarfile.open(root / "unsafe.tar", "w") as tar:
        for ext, data in sample_fields("u0").items():
            _add(tar, f"u0.{ext}", data)
        _add(tar, "../evil.flac", b"x")
        _add(tar, "/abs/path.flac", b"x")
    return {
        "good": (4, 0, []),
        "trunc": (None, 1, ["truncated"]),  # some used before the damage, the rest one row
        "corrupt": (0, 1, ["corrupt or truncated"]),
        "mixed": (
            2,
            6,
            [
                "undecodable",
                "zero-length",
                "non-UTF-8",
                "empty transcript",
                "dataset audio key is 'flac'",
                "absurd duration",
            ],
        ),
        "unsafe": (1, 2, ["unsafe tar member"]),
    }
