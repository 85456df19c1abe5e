"""Ray job: WER/CER of a checkpoint on a manifest, Ray Data batch inference (``bigssl evaluate``).

    python jobs/evaluate.py --checkpoint s3://b/ft/run --manifest s3://b/splits/test.parquet --out s3://b/eval

One model replica per actor (``pool.replicas``; a GPU each when the cluster has GPUs).
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("evaluate", __doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint or run folder")
    p.add_argument("--manifest", required=True, help="manifest to transcribe and score")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import evaluate

        return evaluate.evaluate_main(
            args.checkpoint,
            args.manifest,
            args.out,
            args.config,
            _common.overrides(args),
            args.address,
        )

    return _common.run("evaluate", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
