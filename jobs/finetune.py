"""Ray job: CTC fine-tuning on a label budget on Ray Train (``bigssl finetune``).

    python jobs/finetune.py --config configs/finetune-tiny.yaml --features s3://b/features \\
        --manifest s3://b/splits/labeled_100h.parquet --tokenizer s3://b/tok/tokenizer.model \\
        --init s3://b/pretrain/run --out s3://b/ft [key=value ...]

``scaling.use_gpu=true`` puts one Ray Train worker per GPU; the same ``run_name`` resumes.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("finetune", __doc__.split("\n\n")[0])
    p.add_argument("--features", help="featurize output folder")
    p.add_argument("--manifest", help="label-budget manifest")
    p.add_argument("--tokenizer", help="tokenizer.model")
    p.add_argument("--init", help="pre-training checkpoint or run folder (default: scratch)")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import finetune

        return finetune.finetune_main(
            args.config,
            _common.overrides(
                args,
                features=args.features,
                manifest=args.manifest,
                tokenizer=args.tokenizer,
                init=args.init,
            ),
            args.out,
            args.address,
        )

    return _common.run("finetune", work, lambda summary: f"{summary['run_dir']}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
