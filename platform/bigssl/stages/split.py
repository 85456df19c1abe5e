"""Split stage: a manifest -> nested label budgets, dev/test and the unlabeled pool."""

from __future__ import annotations

from dataclasses import dataclass

from bigssl import storage
from bigssl.data.splits import SplitConfig, write_splits
from bigssl.summary import StageSummary


@dataclass
class SplitStageConfig(SplitConfig):
    strict: bool = False  # accepted for symmetry: split quarantines nothing


def run_split(manifest: str, out: str, cfg: SplitConfig) -> StageSummary:
    """Split ``manifest`` into ``out``: nested label budgets, dev, test, the unlabeled pool."""
    if not storage.exists(manifest):
        raise FileNotFoundError(manifest)
    info = write_splits(manifest, out, cfg)
    for name, row in info.items():
        print(
            f"  {name:>20}: {row['utterances']:6d} utts {row['hours']:9.4f} h {row['speakers']:4d} speakers"
        )
    read = sum(info[n]["utterances"] for n in ("unlabeled", "dev", "test"))
    largest = [n for n in info if n.startswith("labeled_")][-1]
    return StageSummary(
        "split",
        read=read,
        used=read,
        quarantined=0,
        hours=sum(info[n]["hours"] for n in ("unlabeled", "dev", "test")),
        extra={"splits": info, "largest_budget_hours": info[largest]["hours"]},
    )


def split_main(manifest: str, out: str, config: str | None, overrides: list[str]) -> dict:
    return run_split(manifest, out, SplitStageConfig.load(config, overrides)).finish(out)
