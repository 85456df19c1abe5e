"""Typed configs: dataclasses that reject unknown keys and name the bad field.

Design decisions (see docs/DESIGN.md, "Configs"):
- A config is a plain ``@dataclass`` subclassing :class:`Config`; each field has a
  default and a one-line docstring-comment next to it. Nested configs are fields
  whose type is another ``Config``.
- YAML files are short diffs over these defaults. Unknown keys are errors, never
  silently ignored: torchtitan dropped TOML because ``training.stpes`` fell back to
  a default without a word.
- ``key=value`` overrides address dotted paths (``fbank.num_mel_bins=40``); values
  are parsed as YAML scalars, then checked against the field's type.
- Validation is type checking plus each class's ``validate()``; every error is a
  :class:`ConfigError` naming the dotted field.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

C = TypeVar("C", bound="Config")


class ConfigError(ValueError):
    """A config value or key is wrong; ``field`` is the dotted path of the culprit."""

    def __init__(self, field: str, message: str):
        self.field, self.message = field, message
        super().__init__(f"config field '{field}': {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # crosses Ray process boundaries
        return (type(self), (self.field, self.message))


@dataclasses.dataclass
class Config:
    """Base class of every typed config."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Subclasses check cross-field constraints here; raise :class:`ConfigError`."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any] | None, prefix: str = "") -> C:
        return _build(cls, data or {}, prefix)

    @classmethod
    def load(cls: type[C], path: str | Path | None = None, overrides: list[str] | None = None) -> C:
        """Defaults, then the YAML file at ``path``, then ``key=value`` overrides."""
        return cls.from_dict(load_dict(path, overrides))


def _read_yaml(path: Path) -> Any:
    """The YAML document in ``path``; a file that is a folder, not text or not YAML is a
    :class:`ConfigError` naming the file (a missing file stays ``FileNotFoundError``)."""
    if path.is_dir():
        raise ConfigError("<file>", f"{path} is a directory, not a YAML config file")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ConfigError("<file>", f"{path} is not UTF-8 text (byte {err.start})") from None
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(err, "problem", None) or type(err).__name__
        raise ConfigError("<file>", f"{path} is not valid YAML{at}: {problem}") from None


def load_dict(path: str | Path | None = None, overrides: list[str] | None = None) -> dict[str, Any]:
    """The raw mapping of a YAML file with ``key=value`` overrides applied (not yet typed)."""
    data: dict[str, Any] = {}
    if path is not None:
        loaded = _read_yaml(Path(path)) or {}
        if not isinstance(loaded, dict):
            raise ConfigError("<root>", f"{path} must hold a mapping, got {type(loaded).__name__}")
        data = loaded
    for item in overrides or []:
        apply_override(data, item)
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``dotted.key=value`` override to a nested dict in place."""
    if "=" not in item:
        raise ConfigError(item, "an override must look like key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(key, "empty key segment")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(key, f"'{part}' is a value, not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def _build(cls: type[C], data: dict[str, Any], prefix: str) -> C:
    if not isinstance(data, dict):
        raise ConfigError(prefix or "<root>", f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(name, f"unknown key (known: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in data.items():
        path = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(hints[name], value, path)
    try:
        return cls(**kwargs)
    except ConfigError as err:  # validate() names fields relative to its own class
        if not prefix:
            raise
        raise ConfigError(f"{prefix}.{err.field}", str(err).split(": ", 1)[1]) from None


def _coerce(tp: Any, value: Any, path: str) -> Any:
    """Check ``value`` against type ``tp``; convert where lossless (int -> float, list -> tuple)."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(path, f"{value!r} does not match {tp}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(path, f"{value!r} is not one of {list(get_args(tp))}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str) and "," in value:  # CLI convenience: a=1,2,3
            value = [yaml.safe_load(v) for v in value.split(",")]
        if not isinstance(value, (list, tuple)):
            value = [value]
        (item_tp, *_rest) = get_args(tp) or (Any,)
        items = [_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        return _build(tp, value, path)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    raise ConfigError(path, f"unsupported config type {tp}")


def check(condition: bool, field: str, message: str) -> None:
    """Raise :class:`ConfigError` for ``field`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(field, message)
