"""Load the versioned Arrow schemas in ``schemas/`` and validate tables against them.

The JSON files are the source of truth, so anyone can read them without the project
installed. They ship as package data in ``bigssl/schemas/`` (the repository's
top-level ``schemas/`` is a symlink to it), so a wheel install finds them as an
editable one does. ``BIGSSL_SCHEMAS_DIR`` overrides where they are looked up.
"""

from __future__ import annotations

import functools
import json
import os
import re
from importlib import resources
from pathlib import Path

import pyarrow as pa

_SCALARS = {
    "string": pa.string(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "bool": pa.bool_(),
    # Plain UTC microseconds: pandas, DuckDB and Spark read it without extension types.
    "timestamp": pa.timestamp("us", tz="UTC"),
}


class SchemaError(ValueError):
    """A table does not match its declared schema."""


def schemas_dir() -> Path:
    """``$BIGSSL_SCHEMAS_DIR``, else the package's ``schemas/`` folder."""
    env = os.environ.get("BIGSSL_SCHEMAS_DIR")
    # bigssl installs as files (a wheel or an editable path), never zipped, so the
    # package's resource folder is a real directory and Path() of it is exact.
    return Path(env) if env else Path(str(resources.files("bigssl") / "schemas"))


def _split_top_level(text: str) -> list[str]:
    """``"a: int64, b: list<x>"`` -> ``["a: int64", "b: list<x>"]`` (commas inside <> kept)."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"<": 1, ">": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


def _arrow_type(name: str) -> pa.DataType:
    name = name.strip()
    match = re.fullmatch(r"list<(.+)>", name)
    if match:
        return pa.list_(_arrow_type(match.group(1)))
    match = re.fullmatch(r"struct<(.+)>", name)
    if match:
        members = [part.split(":", 1) for part in _split_top_level(match.group(1))]
        if any(len(m) != 2 or not m[0].strip() for m in members):
            raise SchemaError(f"struct members must look like 'name: type' in {name!r}")
        return pa.struct([pa.field(k.strip(), _arrow_type(t)) for k, t in members])
    if name not in _SCALARS:
        raise SchemaError(f"unknown schema type {name!r}")
    return _SCALARS[name]


@functools.cache
def load(name: str, version: int | None = None) -> pa.Schema:
    """The Arrow schema ``name`` at ``version`` (default: the newest)."""
    files = sorted(
        schemas_dir().glob(f"{name}.v*.json"), key=lambda p: int(p.stem.rsplit("v", 1)[1])
    )
    if version is not None:
        files = [f for f in files if f.stem == f"{name}.v{version}"]
    if not files:
        raise SchemaError(f"no schema {name!r} (version {version}) in {schemas_dir()}")
    spec = json.loads(files[-1].read_text())
    fields = [
        pa.field(f["name"], _arrow_type(f["type"]), nullable=f["nullable"]) for f in spec["fields"]
    ]
    return pa.schema(fields, metadata={"schema": name, "version": str(spec["version"])})


def validate(table: pa.Table, name: str) -> pa.Table:
    """Return ``table`` cast to schema ``name``; raise :class:`SchemaError` naming the column."""
    schema = load(name)
    missing = [f.name for f in schema if f.name not in table.column_names]
    extra = [c for c in table.column_names if c not in schema.names]
    if missing or extra:
        raise SchemaError(f"{name}: missing columns {missing}, unexpected columns {extra}")
    columns = []
    for field in schema:
        column = table.column(field.name)
        if not field.nullable and column.null_count:
            raise SchemaError(
                f"{name}.{field.name}: {column.null_count} nulls in a non-null column"
            )
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
            raise SchemaError(
                f"{name}.{field.name}: {column.type} is not {field.type}: {err}"
            ) from None
    return pa.Table.from_arrays(columns, schema=schema)


def empty(name: str) -> pa.Table:
    return load(name).empty_table()
