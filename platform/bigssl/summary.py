"""The summary every stage leaves in ``OUT/summary.json`` and prints as one line."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from bigssl import storage


class NothingUsable(RuntimeError):
    """A stage ended with no usable output (or with quarantined input under --strict)."""


class TrainingFailed(RuntimeError):
    """A training run stopped on an error: the message says what failed, on which rank,
    and where re-running the same command resumes."""


@dataclass
class StageSummary:
    stage: str
    read: int = 0
    used: int = 0
    quarantined: int = 0
    hours: float = 0.0  # hours of audio in the used items
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.read != self.used + self.quarantined:
            raise AssertionError(
                f"{self.stage}: read {self.read} != used {self.used} + quarantined {self.quarantined}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "read": self.read,
            "used": self.used,
            "quarantined": self.quarantined,
            "hours": round(self.hours, 6),
            **self.extra,
        }

    def line(self) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in self.extra.items() if isinstance(v, (int, float, str))
        )
        return (
            f"[{self.stage}] read={self.read} = used={self.used} + quarantined={self.quarantined}"
            f" | {self.hours:.3f} h {extras}".rstrip()
        )

    def finish(self, out: str, *, strict: bool = False) -> dict[str, Any]:
        """Check the books, write OUT/summary.json, print the line; raise if nothing usable."""
        self.check()
        storage.write_json(storage.join(out, "summary.json"), self.to_dict())
        print(self.line(), file=sys.stdout, flush=True)
        if self.used == 0:
            raise NothingUsable(
                f"{self.stage}: nothing usable remains ({self.quarantined} quarantined)"
            )
        if strict and self.quarantined:
            raise NothingUsable(
                f"{self.stage}: {self.quarantined} inputs quarantined under --strict"
            )
        return self.to_dict()
