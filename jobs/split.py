"""Ray job: nested label budgets, dev/test and the unlabeled pool (``bigssl split``).

    python jobs/split.py --manifest s3://bucket/corpus/manifest.parquet \\
        --out s3://bucket/splits hours=100,1000 test_hours=10

Runs in the driver process (reading and writing manifests, no Ray tasks); budgets and
held-out hours are ``key=value`` settings of ``SplitConfig``.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("split", __doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="manifest.parquet written by prepare")
    _common.add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import split

        return split.run_split(args.manifest, args.out, args.config, _common.overrides(args))

    return _common.run("split", work, lambda _: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
