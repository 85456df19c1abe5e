"""Ray job: webdataset shards -> log-mel feature parquet (``bigssl featurize``).

    python jobs/featurize.py --shards s3://bucket/corpus --out s3://bucket/features [key=value ...]

Runs on Ray Data: one CPU task per shard (``num_cpus_per_task``), so on a cluster the
work lands on the CPU workers; restartable per shard.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("featurize", __doc__.split("\n\n")[0])
    p.add_argument("--shards", required=True, help="folder of .tar shards (or a prepare output)")
    _common.add_common(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import featurize

        return featurize.featurize_main(
            args.shards, args.out, args.config, _common.overrides(args), args.address
        )

    return _common.run("featurize", work, lambda _: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
