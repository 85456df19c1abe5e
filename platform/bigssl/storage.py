"""Paths and URIs: every stage reads and writes through here, local or ``s3://``.

pyarrow's filesystems do the I/O (one code path for local disks and object
stores). Writes are atomic: a reader never sees half a file, which is what makes
every stage restartable by "skip outputs that exist". S3 PUTs are atomic already;
local files are written to a temporary name and renamed.

Object stores (``s3://bucket/prefix``):
- S3-compatible stores (MinIO, Ceph, R2, ...): set ``AWS_ENDPOINT_URL_S3`` or
  ``AWS_ENDPOINT_URL`` (the AWS SDKs' own variables, so boto3, the AWS CLI and the
  pyarrow filesystems Ray Data and Ray Train open by themselves agree with us), e.g.
  ``http://minio.internal:9000``; ``http://`` endpoints are spoken to in plain HTTP.
- Transient errors (throttling, 5xx, dropped connections) are retried with AWS's
  standard exponential backoff, ``BIGSSL_S3_MAX_ATTEMPTS`` attempts in all (default 10).
- Region: ``AWS_REGION``/``AWS_DEFAULT_REGION``, else asked of the bucket (AWS only).
- Credentials are never passed, stored or logged here: the AWS SDK's default chain
  finds them in the environment, a profile or the instance/pod role, on every node.
"""

from __future__ import annotations

import functools
import json
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

S3_MAX_ATTEMPTS = 10  # default attempts per S3 request (first try included); BIGSSL_S3_MAX_ATTEMPTS


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def s3_endpoint() -> str | None:
    """The S3-compatible endpoint override from the environment, or None for AWS itself."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


@functools.lru_cache(maxsize=64)
def _bucket_region(bucket: str) -> str:
    return pafs.resolve_s3_region(bucket)


@functools.lru_cache(maxsize=16)
def _s3_filesystem(
    endpoint: str | None, region: str | None, max_attempts: int
) -> pafs.S3FileSystem:
    kwargs: dict[str, Any] = {
        "region": region,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts),
    }
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        kwargs.update(
            endpoint_override=parsed.netloc + parsed.path.rstrip("/"), scheme=parsed.scheme
        )
    return pafs.S3FileSystem(**kwargs)


def s3_filesystem(bucket: str) -> pafs.S3FileSystem:
    """The S3 filesystem for ``bucket`` under the current environment (endpoint, region, retries)."""
    endpoint = s3_endpoint()
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region and not endpoint:
        region = _bucket_region(bucket)  # a bucket outside the SDK's default region answers 301
    attempts = int(os.environ.get("BIGSSL_S3_MAX_ATTEMPTS") or S3_MAX_ATTEMPTS)
    return _s3_filesystem(endpoint, region, max(1, attempts))


def resolve(uri: str | Path) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI."""
    uri = str(uri)
    if uri.startswith("s3://"):
        # Split by hand: a key may hold '?' or '#', which URL parsing would cut off.
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"{uri}: an s3:// URI needs a bucket (s3://bucket/prefix)")
        return s3_filesystem(bucket), posixpath.join(bucket, key).rstrip("/")
    if is_remote(uri):
        return pafs.FileSystem.from_uri(uri)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return pafs.LocalFileSystem(), os.path.abspath(uri)


def absolute(uri: str | Path) -> str:
    """``uri`` unchanged if remote, else an absolute local path (Ray workers have other cwds)."""
    return str(uri) if is_remote(str(uri)) else os.path.abspath(uri)


def join(base: str | Path, *parts: str) -> str:
    base = str(base)
    return posixpath.join(base, *parts) if is_remote(base) else os.path.join(base, *parts)


def exists(uri: str | Path) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def makedirs(uri: str | Path) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def list_files(uri: str | Path, suffix: str = "") -> list[str]:
    """Sorted URIs of the files directly in ``uri`` whose names end with ``suffix``."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    names = sorted(i.base_name for i in infos if i.type == pafs.FileType.File)
    return [join(uri, n) for n in names if n.endswith(suffix) and not n.startswith(".")]


def read_bytes(uri: str | Path) -> bytes:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read()


@contextmanager
def open_input(uri: str | Path) -> Iterator[IO[bytes]]:
    fs, path = resolve(uri)
    with fs.open_input_file(path) as f:
        yield f


@contextmanager
def atomic_output(uri: str | Path) -> Iterator[IO[bytes]]:
    """A binary file object whose content appears at ``uri`` only if the block succeeds."""
    fs, path = resolve(uri)
    if isinstance(fs, pafs.LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, "wb") as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return
    # Object stores: stage locally, then one upload (a PUT is atomic).
    with tempfile.NamedTemporaryFile(suffix=".part") as tmp:
        yield tmp
        tmp.flush()
        parent = posixpath.dirname(path)
        if parent:
            fs.create_dir(parent, recursive=True)
        pafs.copy_files(tmp.name, path, destination_filesystem=fs)


def write_bytes(uri: str | Path, data: bytes) -> None:
    with atomic_output(uri) as f:
        f.write(data)


def write_json(uri: str | Path, obj: Any) -> None:
    write_bytes(uri, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(uri: str | Path) -> Any:
    return json.loads(read_bytes(uri))


def write_parquet(table: pa.Table, uri: str | Path) -> None:
    with atomic_output(uri) as f:
        pq.write_table(table, f)


def read_parquet(uri: str | Path, columns: list[str] | None = None) -> pa.Table:
    fs, path = resolve(uri)
    return pq.read_table(path, filesystem=fs, columns=columns)


def list_dirs(uri: str | Path) -> list[str]:
    """Sorted URIs of the folders directly in ``uri`` (none when it does not exist)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=False))
    return [
        join(uri, n)
        for n in sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory)
    ]


def remove(uri: str | Path) -> None:
    """Delete one file (a no-op when it is gone already)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_file(path)


def remove_tree(uri: str | Path) -> None:
    """Delete a folder and everything in it (a no-op when it is gone already)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)
