"""The ``bigssl`` command: one subcommand per stage.

Every stage takes ``--out DIR`` (a local path or ``s3://...``), ``--config FILE``
and trailing ``key=value`` overrides of its typed config; explicit flags are
shorthands for overrides. It leaves ``DIR/summary.json``, prints its one-line summary,
and last says where the summary is. This is the only front door: each ``jobs/NAME.py``
(the entrypoints of ``ray job submit``) is ``main(["NAME", *sys.argv[1:]])``.

Ray: ``--address`` (alias ``--ray-address``), else ``$RAY_ADDRESS`` (which ``ray job
submit`` sets for the driver), else a fresh local Ray; a stage connects only when it
needs Ray, so a missing input fails in a second, not after a Ray start.

Exit codes: 0 done; 1 nothing usable remained (or anything quarantined under
``--strict``); 2 bad config or arguments (the message names the field); 3 missing
or unreadable input; 4 a training run failed (the line names the rank and the checkpoint a
re-run resumes from).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

from bigssl.config import ConfigError
from bigssl.summary import NothingUsable, TrainingFailed


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
        "--address",
        "--ray-address",
        dest="ray_address",
        help="Ray cluster address (default: $RAY_ADDRESS, which `ray job submit` sets; "
        "else a local Ray)",
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
    return split.split_main(args.manifest, args.out, args.config, _overrides(args, **flags))


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


def _cmd_tokenizer(args: argparse.Namespace) -> dict:
    from bigssl.stages import tokenizer

    return tokenizer.tokenizer_main(args.manifest, args.out, args.config, _overrides(args))


def _cmd_finetune(args: argparse.Namespace) -> dict:
    from bigssl.stages import finetune

    flags = dict(
        features=args.features, manifest=args.manifest, tokenizer=args.tokenizer, init=args.init
    )
    return finetune.finetune_main(
        args.config, _overrides(args, **flags), args.out, args.ray_address
    )


def _cmd_evaluate(args: argparse.Namespace) -> dict:
    from bigssl.stages import evaluate

    return evaluate.evaluate_main(
        args.checkpoint, args.manifest, args.out, args.config, _overrides(args), args.ray_address
    )


def _cmd_label(args: argparse.Namespace) -> dict:
    from bigssl.stages import label

    return label.label_main(
        args.teacher,
        args.out,
        args.config,
        _overrides(args),
        shards=args.shards,
        manifest=args.manifest,
        ray_address=args.ray_address,
    )


def _cmd_student(args: argparse.Namespace) -> dict:
    from bigssl.stages import student

    flags = dict(
        teacher=args.teacher,
        features=args.features,
        manifest=args.manifest,
        unlabeled=args.unlabeled,
        init=args.init,
        generations=args.generations,
    )
    return student.student_main(args.config, _overrides(args, **flags), args.out, args.ray_address)


def _cmd_sweep(args: argparse.Namespace) -> dict:
    from bigssl.stages import sweep

    return sweep.sweep_main(
        args.config, _overrides(args, corpus=args.corpus), args.out, args.ray_address
    )


def _cmd_report(args: argparse.Namespace) -> dict:
    from bigssl.stages import report

    results = [*args.results, *(args.results_flag or [])]
    if not results:
        raise ConfigError("results", "give one or more results.parquet files or folders")
    return report.report_main(results, args.out)


def _cmd_pipeline(args: argparse.Namespace) -> dict:
    from bigssl.stages import pipeline

    return pipeline.run_pipeline(
        args.out,
        args.config,
        list(args.overrides),
        tts_hours=args.tts_hours,
        manifest=args.manifest,
        librispeech=args.librispeech,
        ray_address=args.ray_address,
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

    p = sub.add_parser("tokenizer", help="train the sentencepiece tokenizer on a split's text")
    p.add_argument("--manifest", required=True, help="a (labeled) manifest, e.g. a label budget")
    _common(p)

    p = sub.add_parser("finetune", help="CTC fine-tuning on a label budget on Ray Train")
    p.add_argument("--features", help="featurize output folder (or features=DIR)")
    p.add_argument("--manifest", help="label-budget manifest from `bigssl split`")
    p.add_argument("--tokenizer", help="tokenizer.model from `bigssl tokenizer`")
    p.add_argument("--init", help="pre-training checkpoint or run folder (default: scratch)")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser(
        "evaluate", help="WER/CER of a checkpoint on a manifest (Ray Data batch inference)"
    )
    p.add_argument("--checkpoint", required=True, help="fine-tuning checkpoint or run folder")
    p.add_argument("--manifest", required=True, help="manifest to transcribe and score")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser("label", help="pseudo-label unlabeled shards with a teacher (actor pool)")
    p.add_argument("--teacher", required=True, help="fine-tuning checkpoint or run folder")
    p.add_argument("--shards", help="folder of unlabeled .tar shards (or a prepare output)")
    p.add_argument("--manifest", help="or: label only this manifest's rows")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser("student", help="noisy-student training: label -> student, N generations")
    p.add_argument("--teacher", help="generation-1 teacher checkpoint or run folder")
    p.add_argument("--features", help="featurize output folder")
    p.add_argument("--manifest", help="labeled budget manifest")
    p.add_argument("--unlabeled", help="unlabeled pool manifest")
    p.add_argument("--init", help="student encoder init (pre-training checkpoint)")
    p.add_argument("--generations", type=int, help="teacher -> student rounds")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser(
        "sweep", help="the data-efficiency ablation: a Ray Tune grid -> results.parquet + report"
    )
    p.add_argument("--corpus", help="a `bigssl prepare` output (or corpus=DIR)")
    _ray(p)
    _common(p, strict=False)

    p = sub.add_parser("report", help="markdown table + WER-vs-labeled-hours plot of results")
    p.add_argument("results", nargs="*", help="results.parquet files (or folders holding one)")
    p.add_argument("--results", dest="results_flag", nargs="+", help="the same, as a flag")
    p.add_argument("--out", required=True, help="output folder: local path or s3://bucket/prefix")

    p = sub.add_parser("pipeline", help="prepare a corpus, then sweep it (the whole recipe)")
    corpus = p.add_mutually_exclusive_group(required=True)
    corpus.add_argument("--tts-hours", type=float, help="synthesize this much TTS speech")
    corpus.add_argument("--manifest", help="or import a JSONL/CSV/TSV list of audio")
    corpus.add_argument("--librispeech", help="or import a LibriSpeech-layout folder")
    p.add_argument("--out", required=True, help="output folder: local path or s3://bucket/prefix")
    p.add_argument("--config", required=True, help="sweep config, e.g. configs/sweep-demo.yaml")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="sweep config overrides")
    _ray(p)

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
    "tokenizer": _cmd_tokenizer,
    "finetune": _cmd_finetune,
    "evaluate": _cmd_evaluate,
    "label": _cmd_label,
    "student": _cmd_student,
    "sweep": _cmd_sweep,
    "report": _cmd_report,
    "pipeline": _cmd_pipeline,
    "demo": _cmd_demo,
}


def _summary_at(args: argparse.Namespace, summary: dict) -> str:
    """Where the command's summary.json is: a training run's own folder, else under --out."""
    if isinstance(summary, dict) and summary.get("run_dir"):
        return f"{summary['run_dir']}/summary.json"
    if args.command in ("pipeline", "demo"):
        return f"{args.out}/sweep/summary.json"
    return f"{args.out}/summary.json"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    try:
        summary = COMMANDS[args.command](args)
    except ConfigError as err:
        print(f"bigssl {args.command}: {err}", file=sys.stderr)
        return 2
    except NothingUsable as err:
        print(f"bigssl {args.command}: {err}", file=sys.stderr)
        return 1
    except (FileNotFoundError, NotADirectoryError) as err:
        print(f"bigssl {args.command}: input not found: {err}", file=sys.stderr)
        return 3
    except TrainingFailed as err:
        print(f"bigssl {args.command}: {err}", file=sys.stderr)
        return 4
    wall = time.perf_counter() - start
    print(
        f"bigssl {args.command}: done in {wall:.1f} s; summary at {_summary_at(args, summary)}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
