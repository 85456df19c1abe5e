"""Ray job: sentencepiece tokenizer on a split's labeled text (``bigssl tokenizer``).

    python jobs/tokenizer.py --manifest s3://bucket/splits/labeled_100h.parquet --out s3://bucket/tok vocab_size=1024

Runs on the driver (no Ray tasks): the text of even 34 k h fits one process.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("tokenizer", __doc__.split("\n\n")[0])
    p.add_argument("--manifest", required=True, help="labeled manifest (a label budget)")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import tokenizer

        return tokenizer.tokenizer_main(
            args.manifest, args.out, args.config, _common.overrides(args)
        )

    return _common.run("tokenizer", work, lambda summary: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
