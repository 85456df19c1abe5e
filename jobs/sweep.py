"""Ray job: the data-efficiency ablation as a Ray Tune grid (``bigssl sweep``).

    python jobs/sweep.py --config configs/sweep-demo.yaml --corpus s3://b/tts --out s3://b/sweep \\
        grid.seeds=0,1,2 finetune.scaling.use_gpu=true finetune.scaling.num_workers=8

Upstream artifacts (splits, features, tokenizer, one pre-training per preset) are
cached by content under ``cache=`` (default OUT/cache); re-submitting the same sweep
resumes its Tune experiments and runs only the trials without a result.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("sweep", __doc__.split("\n\n")[0])
    p.add_argument("--corpus", help="a `bigssl prepare` output folder (or corpus=DIR)")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import sweep

        return sweep.sweep_main(
            args.config, _common.overrides(args, corpus=args.corpus), args.out, args.address
        )

    return _common.run("sweep", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
