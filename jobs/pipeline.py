"""Ray job: the whole recipe, prepare a corpus then sweep it (``bigssl pipeline``).

    python jobs/pipeline.py --librispeech /mnt/LibriSpeech/train-clean-100 \\
        --config configs/sweep-demo.yaml --out s3://b/run grid.seeds=0,1,2

One corpus flag (``--tts-hours H``, ``--manifest LIST`` or ``--librispeech ROOT``);
every other setting is a ``key=value`` override of the sweep config. Re-submitting
resumes: prepare per chunk, upstream stages from their content cache, trials from
their Tune experiments.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("pipeline", __doc__.split("\n\n")[0])
    corpus = p.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--tts-hours", type=float, help="synthesize this much TTS speech")
    corpus.add_argument("--manifest", help="or import a JSONL/CSV/TSV list of audio")
    corpus.add_argument("--librispeech", help="or import a LibriSpeech-layout folder")
    _common.add_common(p, strict=False)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.config:
        print("jobs/pipeline: --config (a sweep config) is required", file=sys.stderr)
        return _common.EXIT_CONFIG

    def work() -> dict:
        from bigssl.stages import demo

        record = demo.run_pipeline(
            args.out,
            args.config,
            list(args.overrides),
            tts_hours=args.tts_hours,
            manifest=args.manifest,
            librispeech=args.librispeech,
            ray_address=args.address,
        )
        return record["sweep"]

    return _common.run("pipeline", work, lambda summary: f"{args.out}/sweep/summary.json")


if __name__ == "__main__":
    sys.exit(main())
