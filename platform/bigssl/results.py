"""The results table: one row per trial of a sweep (schema ``results``).

Design decisions:
- ``(sweep, trial_id)`` is the key. Appending a row whose key exists replaces the
  old row, so a resumed or re-run sweep never counts a trial twice.
- ``append_results`` rewrites the whole ``results.parquet`` (read old + new, write a
  temporary file, rename): a results table holds thousands of rows, not millions,
  and a reader must never see half a table. On a local disk an advisory lock keeps
  writers on one machine from losing each other's rows; on an object store there is
  no lock, so append from one process (the sweep's driver).
- Plain Arrow types only (strings, numbers, lists, structs, a UTC timestamp): pandas,
  pyarrow and DuckDB read the file without the project installed.
- WER and CER are fractions (0.05 = 5 %), as jiwer returns them; the report shows %.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import numbers
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

import bigssl
from bigssl import schemas, storage
from bigssl.schemas import SchemaError

try:  # advisory locks exist on POSIX only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

SCHEMA = "results"
RESULTS_FILE = "results.parquet"
RECIPES = ("scratch", "ssl", "ssl+nst", "scratch+nst")
INITS = ("scratch", "ssl")
STATUSES = ("ok", "failed")
SCORE_KEYS = ("test_set", "wer", "cer", "words", "utterances")
_REQUIRED = ("sweep", "trial_id", "recipe", "budget", "labeled_hours")


def make_row(**fields: Any) -> dict[str, Any]:
    """One validated results row; fills defaults, JSON-encodes ``config``.

    Required: sweep, trial_id, recipe, budget, labeled_hours. ``config`` (a mapping
    or a typed ``Config``) may be given instead of ``config_json``. ``wer``/``cer``
    default to those of ``scores[0]``, the primary test set. ``init`` and
    ``nst_generations`` default from the recipe. Idempotent: ``make_row(**row)``
    of a made row returns the same row. Raises :class:`SchemaError` naming the field.
    """
    names = set(schemas.load(SCHEMA).names)
    unknown = sorted(set(fields) - names - {"config"})
    if unknown:
        raise SchemaError(f"{SCHEMA}: unknown fields {unknown}")
    missing = [k for k in _REQUIRED if fields.get(k) is None]
    if missing:
        raise SchemaError(f"{SCHEMA}: missing required fields {missing}")
    recipe = _choice("recipe", fields["recipe"], RECIPES)
    row: dict[str, Any] = {
        "sweep": _text("sweep", fields["sweep"]),
        "trial_id": _text("trial_id", fields["trial_id"]),
        "recipe": recipe,
        "init": _choice("init", fields.get("init", recipe.split("+")[0]), INITS),
        "nst_generations": _integer(
            "nst_generations", fields.get("nst_generations", int(recipe.endswith("+nst")))
        ),
        "preset": _optional_text("preset", fields.get("preset")),
        "seed": _integer("seed", fields.get("seed", 0), minimum=None),
        "budget": _text("budget", fields["budget"]),
        "labeled_hours": _real("labeled_hours", fields["labeled_hours"]),
        "stages": [_text("stages[]", s) for s in _sequence("stages", fields.get("stages", []))],
        "scores": _scores(fields.get("scores", [])),
        "steps": _integer("steps", fields.get("steps", 0)),
        "wall_s": _real("wall_s", fields.get("wall_s", 0.0)),
        "device_hours": _real("device_hours", fields.get("device_hours", 0.0)),
        "checkpoint": _optional_text("checkpoint", fields.get("checkpoint")),
        "config_json": _config_json(fields),
        "status": _choice("status", fields.get("status", "ok"), STATUSES),
        "error": _optional_text("error", fields.get("error")),
        "created_at": _timestamp(fields.get("created_at")),
        "bigssl_version": _text("bigssl_version", fields.get("bigssl_version", bigssl.__version__)),
    }
    _fill_primary_scores(row, fields)
    _check_consistency(row)
    schemas.validate(pa.Table.from_pylist([row]), SCHEMA)
    return {name: row[name] for name in schemas.load(SCHEMA).names}


def results_uri(uri: str) -> str:
    """The results file of ``uri``: itself if it names a ``.parquet`` file, else DIR/results.parquet."""
    return str(uri) if str(uri).endswith(".parquet") else storage.join(uri, RESULTS_FILE)


def append_results(uri: str, rows: list[dict[str, Any]]) -> str:
    """Add ``rows`` to the results file at ``uri`` (folder or .parquet); return its URI.

    Every row goes through :func:`make_row`. A row whose (sweep, trial_id) is
    already in the file, or later in ``rows``, replaces the earlier one.
    """
    target = results_uri(uri)
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for fields in rows:
        row = make_row(**fields)
        key = (row["sweep"], row["trial_id"])
        latest.pop(key, None)  # the last occurrence wins, in its own position
        latest[key] = row
    if not latest:
        return target
    new = schemas.validate(pa.Table.from_pylist(list(latest.values())), SCHEMA)
    with _writer_lock(target):
        if storage.exists(target):
            old = _read_one(target)
            new = pa.concat_tables([_without_keys(old, set(latest)), new])
        storage.write_parquet(new, target)
    return target


def read_results(paths: list[str]) -> pa.Table:
    """The merged, validated results of ``paths`` (results files or folders holding one).

    A (sweep, trial_id) present in several inputs is kept once: the last path wins.
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    tables = [_read_one(_input_file(str(p))) for p in paths]
    if not tables:
        return schemas.empty(SCHEMA)
    merged = pa.concat_tables(tables)
    keys = _keys(merged)
    last = {key: i for i, key in enumerate(keys)}
    if len(last) == len(keys):
        return merged
    return merged.take(pa.array(sorted(last.values()), pa.int64()))


def _input_file(path: str) -> str:
    fs, inner = storage.resolve(path)
    kind = fs.get_file_info(inner).type
    if kind == pafs.FileType.Directory:
        path = storage.join(path, RESULTS_FILE)
        kind = fs.get_file_info(storage.resolve(path)[1]).type
    if kind == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no results table at {path}")
    return path


def _read_one(uri: str) -> pa.Table:
    try:
        return schemas.validate(storage.read_parquet(uri), SCHEMA)
    except SchemaError as err:
        raise SchemaError(f"{uri}: {err}") from None


def _keys(table: pa.Table) -> list[tuple[str, str]]:
    sweeps, trials = table.column("sweep").to_pylist(), table.column("trial_id").to_pylist()
    return list(zip(sweeps, trials, strict=True))


def _without_keys(table: pa.Table, keys: set[tuple[str, str]]) -> pa.Table:
    return table.filter(pa.array([key not in keys for key in _keys(table)], pa.bool_()))


@contextmanager
def _writer_lock(target: str) -> Iterator[None]:
    """Serialise read-modify-write of a local results file across processes."""
    if storage.is_remote(target) or fcntl is None:
        yield
        return
    path = storage.resolve(target)[1]
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f".{name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# -- field checks: each raises SchemaError naming the field ---------------------------


def _fail(field: str, message: str) -> SchemaError:
    return SchemaError(f"{SCHEMA}.{field}: {message}")


def _text(field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(field, f"expected a non-empty string, got {value!r}")
    return value


def _optional_text(field: str, value: Any) -> str | None:
    return None if value is None else _text(field, value)


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise _fail(field, f"{value!r} is not one of {list(allowed)}")
    return value


def _integer(field: str, value: Any, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(field, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _fail(field, f"must be >= {minimum}, got {value}")
    return int(value)


def _real(field: str, value: Any, *, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(field, f"expected a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise _fail(field, f"must be a finite number >= 0, got {value}")
    return float(value)


def _sequence(field: str, value: Any) -> list[Any]:
    if isinstance(value, (str, bytes, Mapping)) or not hasattr(value, "__iter__"):
        raise _fail(field, f"expected a list, got {value!r}")
    return list(value)


def _scores(value: Any) -> list[dict[str, Any]]:
    scores = []
    for i, entry in enumerate(_sequence("scores", value)):
        where = f"scores[{i}]"
        if not isinstance(entry, Mapping):
            raise _fail(where, f"expected a mapping, got {entry!r}")
        unknown = sorted(set(entry) - set(SCORE_KEYS))
        if unknown:
            raise _fail(where, f"unknown keys {unknown}; allowed {list(SCORE_KEYS)}")
        score = {
            "test_set": _text(f"{where}.test_set", entry.get("test_set")),
            "wer": _real(f"{where}.wer", entry.get("wer")),
            "cer": _real(f"{where}.cer", entry.get("cer"), optional=True),
            "words": None,
            "utterances": None,
        }
        for key in ("words", "utterances"):
            if entry.get(key) is not None:
                score[key] = _integer(f"{where}.{key}", entry[key])
        scores.append(score)
    names = [s["test_set"] for s in scores]
    if len(set(names)) != len(names):
        raise _fail("scores", f"test sets repeat: {names}")
    return scores


def _fill_primary_scores(row: dict[str, Any], fields: dict[str, Any]) -> None:
    """Flat wer/cer are the first test set's; given ones must agree with it."""
    primary = row["scores"][0] if row["scores"] else {}
    for key in ("wer", "cer"):
        given = _real(key, fields.get(key), optional=True)
        from_scores = primary.get(key)
        if given is not None and from_scores is not None and not math.isclose(given, from_scores):
            raise _fail(key, f"{given} disagrees with scores[0].{key} = {from_scores}")
        row[key] = given if given is not None else from_scores


def _check_consistency(row: dict[str, Any]) -> None:
    if row["labeled_hours"] <= 0:
        raise _fail("labeled_hours", "must be > 0 (the report plots WER on log hours), got 0")
    if row["init"] != row["recipe"].split("+")[0]:
        raise _fail("init", f"{row['init']!r} contradicts recipe {row['recipe']!r}")
    with_nst = row["recipe"].endswith("+nst")
    if with_nst != (row["nst_generations"] > 0):
        raise _fail(
            "nst_generations",
            f"{row['nst_generations']} contradicts recipe {row['recipe']!r}",
        )
    if row["status"] == "ok":
        if row["wer"] is None:
            raise _fail("wer", "status 'ok' needs a WER (give wer= or scores=)")
        if row["error"] is not None:
            raise _fail("error", "status 'ok' cannot carry an error; use status='failed'")
    elif row["error"] is None:
        raise _fail("error", "status 'failed' needs error=<why the trial failed>")


def _config_json(fields: dict[str, Any]) -> str:
    if "config" in fields and fields.get("config_json") is not None:
        raise _fail("config_json", "give config or config_json, not both")
    if "config" in fields:
        config = fields["config"] or {}
        config = config.to_dict() if hasattr(config, "to_dict") else config
        if not isinstance(config, Mapping):
            raise _fail("config", f"expected a mapping or a Config, got {type(config).__name__}")
    else:
        raw = fields.get("config_json") or "{}"
        try:
            config = json.loads(_text("config_json", raw))
        except json.JSONDecodeError as err:
            raise _fail("config_json", f"not JSON: {err}") from None
    return json.dumps(config, sort_keys=True, default=str)


def _timestamp(value: Any) -> dt.datetime:
    """Aware UTC datetime from a datetime (naive = UTC), an ISO string, or None (= now)."""
    if value is None:
        return dt.datetime.now(dt.timezone.utc)
    if isinstance(value, str):
        try:  # Python 3.10's fromisoformat does not accept a trailing Z
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as err:
            raise _fail("created_at", str(err)) from None
    if not isinstance(value, dt.datetime):
        raise _fail("created_at", f"expected a datetime or ISO string, got {value!r}")
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)
