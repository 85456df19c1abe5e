"""Quarantine rows: every input a stage could not use, with its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from bigssl import schemas, storage


def safe_text(value: object) -> str:
    """Any value as a valid UTF-8 string (undecodable bytes escaped), for ids and reasons."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass
class Quarantine:
    """Collects (id, source, stage, reason) rows for one stage run."""

    stage: str
    rows: list[dict[str, str]] = field(default_factory=list)

    def add(self, id: str, source: str, reason: str) -> None:
        self.rows.append(
            {
                "id": safe_text(id),
                "source": safe_text(source),
                "stage": self.stage,
                "reason": safe_text(reason),
            }
        )

    def __len__(self) -> int:
        return len(self.rows)

    def table(self) -> pa.Table:
        if not self.rows:
            return schemas.empty("quarantine")
        return schemas.validate(pa.Table.from_pylist(self.rows), "quarantine")

    def write(self, uri: str) -> None:
        storage.write_parquet(self.table(), uri)
