"""Data position: which rows of the current epoch have been trained, by shard.

Ray Data's iterators cannot resume mid-epoch (ray-project/ray#37633, #48224), so
the position is ours: every worker records the (shard, id) of each row it trains;
at a checkpoint the workers' records are merged; a shard whose trained rows reach
its total is *consumed* and only its name is kept, ids are kept only for shards
still in progress. On resume the data stage leaves consumed shards out of the
read entirely and the loop skips the few already-trained ids of partial shards,
so every row is trained exactly once per epoch across a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataPosition:
    epoch: int = 0
    consumed: set[str] = field(default_factory=set)  # shards fully trained this epoch
    partial: dict[str, set[str]] = field(default_factory=dict)  # shard -> trained ids

    def record(self, shards: Iterable[str], ids: Iterable[str]) -> None:
        for shard, uid in zip(shards, ids, strict=True):
            self.partial.setdefault(shard, set()).add(uid)

    def seen(self, shard: str, uid: str) -> bool:
        return shard in self.consumed or uid in self.partial.get(shard, ())

    def compact(self, totals: dict[str, int]) -> None:
        """Move shards whose trained ids reach ``totals[shard]`` rows to ``consumed``."""
        for shard in [
            s for s, ids in self.partial.items() if len(ids) >= totals.get(s, float("inf"))
        ]:
            self.consumed.add(shard)
            del self.partial[shard]

    @classmethod
    def merge(cls, positions: list[DataPosition], totals: dict[str, int]) -> DataPosition:
        """The union of several workers' positions in the same epoch."""
        epochs = {p.epoch for p in positions}
        if len(epochs) != 1:
            raise ValueError(f"workers are in different epochs {sorted(epochs)}")
        merged = cls(epoch=epochs.pop())
        for p in positions:
            merged.consumed |= p.consumed
            for shard, ids in p.partial.items():
                merged.partial.setdefault(shard, set()).update(ids)
        merged.compact(totals)
        return merged

    def num_trained(self, totals: dict[str, int]) -> int:
        return sum(totals[s] for s in self.consumed) + sum(len(v) for v in self.partial.values())

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "consumed": sorted(self.consumed),
            "partial": {s: sorted(ids) for s, ids in sorted(self.partial.items())},
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> DataPosition:
        return cls(
            epoch=int(state["epoch"]),
            consumed=set(state["consumed"]),
            partial={s: set(ids) for s, ids in state["partial"].items()},
        )
