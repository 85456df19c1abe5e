"""Where the CPU's CTC training step goes: preset x threads x batch shape x fp32/bf16, same run.

Item 5 of the converged-recipes issue: profile the fine-tuning step on this machine
before choosing a recipe's batch shape, threads and precision. One process, no Ray:
this is the ceiling the Ray Train worker (one worker, ``threads_per_worker``) runs under.
Each arm builds the same CTC model from the same seed, runs ``--warmup`` steps
(allocations, oneDNN primitive caches), then times ``--steps`` full steps (forward,
CTC loss, backward, AdamW) on one fixed batch of the given shape at the recipe's
frame budget, and reports the median seconds per step and audio seconds per second.

bf16 runs the encoder under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (the
CTC loss stays float32, as on GPU). "As accurate" is checked on the step itself:
the relative loss difference and the cosine between the fp32 and bf16 gradients
of the same batch from the same weights.

    python bench/cpu_step.py                         # tiny, 2 shapes, threads 1/2, fp32/bf16
    python bench/cpu_step.py --presets tiny,s --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch

FRAME_SECONDS = 0.01


def _batch(shape: tuple[int, int], mel: int, vocab: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    batch, frames = shape
    feats = torch.randn(batch, frames, mel, generator=generator)
    lengths = torch.full((batch,), frames, dtype=torch.long)
    tokens = max(2, frames // 12)  # ~ characters per 10 ms frame in read speech
    targets = torch.randint(1, vocab, (batch, tokens), generator=generator)
    return feats, lengths, targets, torch.full((batch,), tokens, dtype=torch.long)


def _model(preset: str, vocab: int):
    from bigssl.audio.specaugment import SpecAugmentConfig
    from bigssl.models.ctc import build_ctc_model
    from bigssl.models.presets import build_preset

    torch.manual_seed(0)
    return build_ctc_model(build_preset(preset), vocab, SpecAugmentConfig())


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()


def time_arm(preset, shape, threads, bf16, warmup, steps, mel=80, vocab=40) -> dict:
    torch.set_num_threads(threads)
    model = _model(preset, vocab)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    feats, lengths, targets, target_lengths = _batch(shape, mel, vocab)
    times = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        with _autocast(bf16):
            out = model(feats, lengths, targets, target_lengths)
        out["loss"].backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if index >= warmup:
            times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    audio_s = shape[0] * shape[1] * FRAME_SECONDS
    return {"step_s": step_s, "audio_per_s": audio_s / step_s}


def bf16_agreement(preset, shape, mel=80, vocab=40) -> dict:
    """fp32 vs bf16 autocast on one batch from the same weights: loss and gradient."""
    model = _model(preset, vocab)
    model.train()
    feats, lengths, targets, target_lengths = _batch(shape, mel, vocab, seed=1)
    results = []
    for bf16 in (False, True):
        torch.manual_seed(5)  # the same SpecAugment masks in both
        with _autocast(bf16):
            loss = model(feats, lengths, targets, target_lengths)["loss"]
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])
        results.append((float(loss.detach()), torch.cat([g.flatten().double() for g in grads])))
    (loss32, grad32), (loss16, grad16) = results
    cosine = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
    return {"loss_rel_diff": abs(loss16 - loss32) / abs(loss32), "grad_cosine": cosine}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument(
        "--shapes",
        default="40x150,10x600",
        help="BxT at the recipe's 6,000-frame budget: digits/words (1.5 s), sentences (6 s)",
    )
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    rows = []
    print("| preset | B x T | threads | precision | s / step | audio s / s |")
    print("|---|---|---:|---|---:|---:|")
    for preset in args.presets.split(","):
        for shape in shapes:
            for threads in (int(t) for t in args.threads.split(",")):
                for bf16 in (False, True):
                    row = time_arm(preset, shape, threads, bf16, args.warmup, args.steps)
                    row |= {"preset": preset, "shape": shape, "threads": threads, "bf16": bf16}
                    rows.append(row)
                    print(
                        f"| {preset} | {shape[0]} x {shape[1]} | {threads} "
                        f"| {'bf16' if bf16 else 'fp32'} | {row['step_s']:.3f} "
                        f"| {row['audio_per_s']:.0f} |",
                        flush=True,
                    )
    for preset in args.presets.split(","):
        agree = bf16_agreement(preset, shapes[0])
        print(
            f"{preset} bf16 vs fp32, one step: loss differs by {agree['loss_rel_diff']:.2%}, "
            f"gradient cosine {agree['grad_cosine']:.4f}"
        )
    by_key = {(r["preset"], r["shape"], r["threads"], r["bf16"]): r["step_s"] for r in rows}
    for preset in args.presets.split(","):
        for shape in shapes:
            threads = max(int(t) for t in args.threads.split(","))
            fp32, bf16 = (
                by_key[(preset, shape, threads, False)],
                by_key[(preset, shape, threads, True)],
            )
            print(
                f"{preset} {shape[0]}x{shape[1]} threads={threads}: "
                f"bf16 / fp32 step-time ratio {bf16 / fp32:.2f}"
            )


if __name__ == "__main__":
    main()
