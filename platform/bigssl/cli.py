"""The ``bigssl`` command: one subcommand per stage.

Every stage takes ``--out DIR`` (a local path or ``s3://...``), ``--config FILE``
and trailing ``key=value`` overrides of its typed config; explicit flags are
shorthands for overrides. It leaves ``DIR/summary.json`` and prints one line.

Exit codes: 0 done; 1 nothing usable remained (or anything quarantined under
``--strict``); 2 bad config or arguments (the message names the field); 3 missing
or unreadable input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from bigssl.config import ConfigError
from bigssl.summary import NothingUsable


def _common(parser: argparse.ArgumentParser, out: bool = True, strict: bool = True) -> None:
    if out:
        parser.add_argument(
            "--out", required=True, help="output folder: local path or s3://bucket/prefix"
        )
    parser.add_argument("--config", help="YAML config file (a short diff over the typed defaults)")
    if strict:
        parser.add_argument(
            "--strict", action="store_true", help="exit 1 if any input is quarantined"
        )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. fbank.num_mel_bins=40",
    )


def _ray(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--ray-address", help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)"
    )


def _overrides(args: argparse.Namespace, **flags: object) -> list[str]:
    extra = [f"{k}={v}" for k, v in flags.items() if v is not None]
    if getattr(args, "strict", False):
        extra.append("strict=true")
    return extra + list(args.overrides)


def _cmd_prepare(args: argparse.Namespace) -> dict:
    from bigssl.stages import prepare

    if args.source_kind == "dir":
        return prepare.prepare_dir(
            args.manifest, args.out, args.config, _overrides(args), source=args.source
        )
    if args.source_kind == "librispeech":
        return prepare.prepare_librispeech(
            args.root, args.out, args.config, _overrides(args), download=args.download
        )
    flags = {"tts.hours": args.hours, "tts.seed": args.seed, "tts.noise_prob": args.noise_prob}
    return prepare.prepare_tts(args.out, args.config, _overrides(args, **flags))


def _cmd_split(args: argparse.Namespace) -> dict:
    from bigssl.stages import split

    flags = {
        "hours": args.hours,
        "fractions": args.fractions,
        "dev_hours": args.dev_hours,
        "test_hours": args.test_hours,
        "seed": args.seed,
    }
    if args.no_speaker_disjoint:
        flags["speaker_disjoint"] = "false"
    return split.run_split(args.manifest, args.out, args.config, _overrides(args, **flags))


def _cmd_featurize(args: argparse.Namespace) -> dict:
    from bigssl.stages import featurize

    return featurize.featurize_main(
        args.shards, args.out, args.config, _overrides(args), args.ray_address
    )


def _cmd_pretrain(args: argparse.Namespace) -> dict:
    from bigssl.stages import pretrain

    return pretrain.pretrain_main(
        args.config, _overrides(args, features=args.features), args.out, args.ray_address
    )


def _cmd_demo(args: argparse.Namespace) -> dict:
    from bigssl.stages import demo

    return demo.run_demo(args.out, quick=args.quick, ray_address=args.ray_address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bigssl", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    prep = sub.add_parser(
        "prepare", help="import a corpus into webdataset shards + manifest + quarantine"
    )
    kinds = prep.add_subparsers(dest="source_kind", required=True)
    p = kinds.add_parser("dir", help="a JSONL/CSV/TSV list of audio (+ optional text, speaker)")
    p.add_argument("--manifest", required=True, help="list file; 'audio' paths are relative to it")
    p.add_argument(
        "--source", help="source name recorded per utterance (default: the list's folder)"
    )
    _common(p)
    p = kinds.add_parser(
        "librispeech", help="LibriSpeech layout, or plain folders of unlabeled audio"
    )
    p.add_argument(
        "--root", required=True, help="folder holding speaker/chapter/*.flac (+ *.trans.txt)"
    )
    p.add_argument(
        "--download", metavar="SUBSET", help="fetch this LibriSpeech subset into --root first"
    )
    _common(p)
    p = kinds.add_parser("tts", help="the embedded synthetic voice-search corpus (espeak-ng)")
    p.add_argument("--hours", type=float, help="hours of audio to synthesize")
    p.add_argument("--seed", type=int, help="corpus seed (deterministic)")
    p.add_argument("--noise-prob", type=float, help="probability of additive noise per utterance")
    _common(p)

    p = sub.add_parser("split", help="nested label budgets, dev/test and the unlabeled pool")
    p.add_argument("--manifest", required=True, help="manifest.parquet written by prepare")
    p.add_argument("--hours", help="budgets in hours, e.g. 0.1,1,34")
    p.add_argument(
        "--fractions", help="budgets as fractions of the labeled pool, e.g. 0.003,0.03,1"
    )
    p.add_argument("--dev-hours", type=float, help="hold out this much for dev")
    p.add_argument("--test-hours", type=float, help="hold out this much for test")
    p.add_argument(
        "--no-speaker-disjoint", action="store_true", help="hold out by utterance, not speaker"
    )
    p.add_argument("--seed", type=int)
    _common(p)

    p = sub.add_parser("featurize", help="shards -> 80-dim log-mel feature parquet on Ray Data")
    p.add_argument("--shards", required=True, help="folder of .tar shards (or a prepare output)")
    _ray(p)
    _common(p)

    p = sub.add_parser(
        "pretrain", help="self-supervised pre-training (wav2vec2 / BEST-RQ) on Ray Train"
    )
    p.add_argument("--features", help="featurize output folder (or features=DIR)")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser(
        "demo", help="the pipeline end to end on the embedded TTS corpus, on local Ray"
    )
    p.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    p.add_argument("--quick", action="store_true", help="toy scale, for smoke tests")
    _ray(p)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "prepare": _cmd_prepare,
    "split": _cmd_split,
    "featurize": _cmd_featurize,
    "pretrain": _cmd_pretrain,
    "demo": _cmd_demo,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"bigssl {args.command}: {err}", file=sys.stderr)
        return 2
    except NothingUsable as err:
        print(f"bigssl {args.command}: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, NotADirectoryError) as err:
        print(f"bigssl {args.command}: input not found: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
