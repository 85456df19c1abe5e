"""Ray job: teacher pseudo-labeling of unlabeled shards into a ledger (``bigssl label``).

    python jobs/label.py --teacher s3://b/ft/run --shards s3://b/unlabeled --out s3://b/labels

Restartable per shard; another teacher or generation writes beside, never over.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("label", __doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="fine-tuning checkpoint or run folder")
    p.add_argument("--shards", help="folder of unlabeled .tar shards")
    p.add_argument("--manifest", help="or: only this manifest's rows")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import label

        return label.label_main(
            args.teacher,
            args.out,
            args.config,
            _common.overrides(args),
            shards=args.shards,
            manifest=args.manifest,
            ray_address=args.address,
        )

    return _common.run("label", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
