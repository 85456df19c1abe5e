"""Training throughput: plain single-process torch loop vs Ray Train on all cores, same run.

Same model config, same feature rows, same bucketed batches (frame budget per
worker). (a) one process, one torch thread, rows in memory; (b) Ray Train with one
worker per core (FSDP2 by default), rows streamed by Ray Data. Throughput is audio
seconds per second in steady state: steps before ``--warmup`` (start-up, first
allocations) are not counted in either. Prints **parallel efficiency =
b / (cores x a)** last.

    python bench/train_step.py                          # tiny preset, BEST-RQ, FSDP2
    python bench/train_step.py --strategy ddp --objective wav2vec2
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import time
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]


def features(work: Path, hours: float) -> Path:
    from bigssl.data.features import FeaturizeConfig
    from bigssl.stages.featurize import run_featurize
    from bigssl.stages.prepare import prepare_tts

    corpus, feats = work / f"tts-{hours:g}h", work / f"feats-{hours:g}h"
    if not (corpus / "summary.json").exists():
        prepare_tts(
            str(corpus), None, [f"tts.hours={hours}", "tts.seed=3", "utterances_per_shard=100"]
        )
    if not (feats / "done").exists() or len(list((feats / "done").iterdir())) < len(
        list((corpus / "shards").iterdir())
    ):
        run_featurize(str(corpus), str(feats), FeaturizeConfig())
    return feats


def overrides(args: argparse.Namespace, feats: Path, steps: int) -> list[str]:
    return [
        f"features={feats}",
        f"model.objective={args.objective}",
        f"preset={args.preset}",
        f"bucket.max_frames={args.max_frames}",
        "bucket.window=128",
        "optim.warmup_steps=50",
        f"train.max_steps={steps}",
        f"train.log_every={args.log_every}",
        f"train.checkpoint_every={steps}",
        f"scaling.strategy={args.strategy}",
        "run_name=bench",
    ]


def baseline(args: argparse.Namespace, feats: Path) -> float:
    """Audio seconds per second of a plain loop with one torch thread."""
    import torch

    from bigssl.data.bucketing import bucket_batches, collate_features
    from bigssl.models import build_ssl_model_from_config
    from bigssl.stages.pretrain import PretrainConfig
    from bigssl.training.optim import build_optimizer, build_scheduler
    from bigssl.training.step import Stepper

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = PretrainConfig.load(None, overrides(args, feats, args.steps))
    rows = [
        r
        for f in sorted((feats / "features").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    model = build_ssl_model_from_config(cfg.model)
    optimizer = build_optimizer([{"params": list(model.parameters())}], cfg.optim)
    stepper = Stepper(
        model,
        optimizer,
        build_scheduler(optimizer, [cfg.optim.warmup_steps]),
        cfg.optim,
        torch.device("cpu"),
    )
    audio, start, step = 0.0, 0.0, 0
    for epoch in range(1000):
        for batch in bucket_batches(rows, lambda r: r["num_frames"], cfg.bucket, epoch=epoch):
            metrics = stepper.step([collate_features(batch)])
            step += 1
            if step == args.warmup:
                start = time.perf_counter()
            elif step > args.warmup:
                audio += metrics["audio_s"]
            if step == args.steps:
                return audio / (time.perf_counter() - start)
    raise RuntimeError("not enough data")


def platform(args: argparse.Namespace, feats: Path, cores: int) -> float:
    """Audio seconds per second of Ray Train, from its metrics windows after warm-up."""
    from bigssl.stages.pretrain import PretrainConfig, run_pretrain

    out = Path(args.work) / "ray-run"
    shutil.rmtree(out, ignore_errors=True)
    # Half a CPU per worker in Ray's books leaves room for Ray Data's reads; each
    # worker still computes with one thread on its own core.
    extra = [
        f"scaling.num_workers={cores}",
        f"scaling.cpus_per_worker={min(1.0, (cores - 1) / cores):g}",
    ]
    cfg = PretrainConfig.load(None, overrides(args, feats, args.steps) + extra)
    run_pretrain(cfg, str(out))
    rows = pq.read_table(out / "bench" / "metrics.parquet").to_pylist()
    steady = [r for r in rows if r["step"] > args.warmup]
    return statistics.mean(r["audio_hours_per_s"] * 3600 for r in steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--objective", default="bestrq", choices=["bestrq", "wav2vec2"])
    parser.add_argument("--strategy", default="fsdp", choices=["fsdp", "ddp"])
    parser.add_argument(
        "--max-frames", type=int, default=6000, help="padded frames per batch per worker"
    )
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10, help="steps not timed")
    parser.add_argument("--log-every", type=int, default=10)
    # Enough data that an epoch outlasts the timed steps: each new epoch restarts
    # Ray Data's execution (~1-2 s on 2 cores), a cost the in-memory baseline never pays.
    parser.add_argument("--hours", type=float, default=2.0, help="TTS hours to train on")
    parser.add_argument("--work", default=str(ROOT / "runs" / "bench-train"))
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    from bigssl.stages.runtime import init_ray

    init_ray()
    feats = features(Path(args.work), args.hours)
    a = baseline(args, feats)
    b = platform(args, feats, cores)
    print(
        f"model: {args.preset} {args.objective}, {args.strategy}, {args.max_frames} frames/batch/worker, {cores} cores"
    )
    print(f"(a) single-process loop : {a:.1f} audio s/s")
    print(f"(b) Ray Train x{cores}        : {b:.1f} audio s/s")
    print(f"parallel efficiency = b / (cores x a) = {b / (cores * a):.3f}")


if __name__ == "__main__":
    main()
