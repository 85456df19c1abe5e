"""Ray job: self-supervised pre-training (wav2vec2 / BEST-RQ) on Ray Train (``bigssl pretrain``).

    python jobs/pretrain.py --config configs/xl.yaml --features s3://bucket/features \\
        --out s3://bucket/pretrain [key=value ...]

``scaling.use_gpu=true`` (as in configs/xl.yaml) puts one Ray Train worker on each GPU;
re-running the same ``run_name`` resumes from its newest checkpoint.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("pretrain", __doc__.split("\n\n")[0])
    p.add_argument("--features", help="featurize output folder (or features=DIR)")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import pretrain

        return pretrain.pretrain_main(
            args.config, _common.overrides(args, features=args.features), args.out, args.address
        )

    return _common.run("pretrain", work, lambda summary: f"{summary['run_dir']}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
