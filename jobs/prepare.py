"""Ray job: import a corpus into webdataset shards + manifest + quarantine (``bigssl prepare``).

    python jobs/prepare.py tts --out s3://bucket/tts tts.hours=1
    python jobs/prepare.py dir --manifest /data/list.jsonl --out s3://bucket/corpus
    python jobs/prepare.py librispeech --root /data/LibriSpeech/train-clean-100 --out s3://bucket/ls100

Runs in the driver process (FLAC encoding, restartable per chunk), so the input list or
folder must be readable where the driver runs; give the driver CPUs
(``ray job submit --entrypoint-num-cpus 8``) so it lands on a worker, not the 0-CPU head.
"""

from __future__ import annotations

import argparse
import sys

import _common


def build_parser() -> argparse.ArgumentParser:
    p = _common.parser("prepare", __doc__.split("\n\n")[0])
    kinds = p.add_subparsers(dest="kind", required=True)
    sub = kinds.add_parser("tts", help="the embedded synthetic corpus (tts.hours=, tts.seed=)")
    _common.add_common(sub)
    sub = kinds.add_parser("dir", help="a JSONL/CSV/TSV list of audio (+ optional text, speaker)")
    sub.add_argument(
        "--manifest", required=True, help="list file; 'audio' paths are relative to it"
    )
    sub.add_argument("--source", help="source name recorded per utterance (default: its folder)")
    _common.add_common(sub)
    sub = kinds.add_parser("librispeech", help="LibriSpeech layout, or plain folders of audio")
    sub.add_argument("--root", required=True, help="folder holding speaker/chapter/*.flac")
    sub.add_argument("--download", metavar="SUBSET", help="fetch this LibriSpeech subset first")
    _common.add_common(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def work() -> dict:
        from bigssl.stages import prepare

        settings = _common.overrides(args)
        if args.kind == "dir":
            return prepare.prepare_dir(
                args.manifest, args.out, args.config, settings, source=args.source
            )
        if args.kind == "librispeech":
            return prepare.prepare_librispeech(
                args.root, args.out, args.config, settings, download=args.download
            )
        return prepare.prepare_tts(args.out, args.config, settings)

    return _common.run("prepare", work, lambda _: f"{args.out}/summary.json")


if __name__ == "__main__":
    sys.exit(main())
