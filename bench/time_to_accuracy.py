"""Time to accuracy: dev WER against wall seconds of training, for the shipped recipe on one corpus.

Trains (or reuses) ``bench/real_corpora.py``'s run of the corpus: the shipped
``configs/finetune-small-corpus.yaml`` with that corpus's overrides, scored on dev
every ``train.eval_every`` steps. Reads the run's ``metrics.parquet`` (each dev
scoring carries ``train_s``, seconds since training started in the worker),
prints the curve as a table, draws it to ``OUT/CORPUS/time_to_accuracy.png`` and
prints the minutes to reach the target dev WER last (the first scoring at or under
it; "not reached" with the best seen otherwise).

    python bench/time_to_accuracy.py --corpus fsdd              # target: the corpus's test target
    python bench/time_to_accuracy.py --corpus speech_commands --target-wer 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_corpora import CORPORA, ROOT, run_corpus  # noqa: E402  (bench/ is the script's folder)


def curve(run_dir: Path) -> list[dict]:
    rows = pq.read_table(run_dir / "metrics.parquet").to_pylist()
    return [r for r in rows if r.get("dev_wer") is not None and r.get("train_s") is not None]


def plot(points: list[dict], target: float, title: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    minutes = [p["train_s"] / 60 for p in points]
    axes.plot(minutes, [p["dev_wer"] * 100 for p in points], marker="o", label="dev WER")
    axes.plot(minutes, [p["dev_cer"] * 100 for p in points], marker=".", label="dev CER")
    axes.axhline(target * 100, color="grey", linestyle="--", label=f"target WER {target:.0%}")
    axes.set_xlabel("training wall time (min, 2-core CPU)")
    axes.set_ylabel("%")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="fsdd", choices=sorted(CORPORA))
    parser.add_argument("--target-wer", type=float, help="default: the corpus's test target")
    parser.add_argument("--out", default=str(ROOT / "runs" / "real_corpora"))
    parser.add_argument("--retrain", action="store_true", help="train again even if a run exists")
    args = parser.parse_args()
    out = Path(args.out)
    target = args.target_wer or CORPORA[args.corpus]["targets"]["wer"]
    run_dir = out / args.corpus / "runs" / "finetune"
    if args.retrain or not (run_dir / "metrics.parquet").exists() or not curve(run_dir):
        from bigssl.stages.runtime import init_ray

        init_ray(None)
        row = run_corpus(args.corpus, out, [])
        (out / args.corpus / "result.json").write_text(json.dumps(row, indent=2, default=str))
    points = curve(run_dir)
    print(f"{args.corpus}: dev WER against training wall time (shipped recipe)")
    print(f"{'step':>6} {'epoch':>6} {'train min':>10} {'dev WER %':>10} {'dev CER %':>10}")
    for p in points:
        print(
            f"{p['step']:>6} {p['epoch']:>6} {p['train_s'] / 60:>10.2f} "
            f"{p['dev_wer'] * 100:>10.2f} {p['dev_cer'] * 100:>10.2f}"
        )
    png = out / args.corpus / "time_to_accuracy.png"
    plot(points, target, f"{args.corpus}: time to accuracy", png)
    print(f"plot: {png}")
    reached = next((p for p in points if p["dev_wer"] <= target), None)
    if reached is None:
        best = min(points, key=lambda p: p["dev_wer"])
        print(
            f"minutes to dev WER <= {target:.1%}: not reached "
            f"(best {best['dev_wer']:.1%} at {best['train_s'] / 60:.1f} min)"
        )
    else:
        print(f"minutes to dev WER <= {target:.1%}: {reached['train_s'] / 60:.1f}")


if __name__ == "__main__":
    main()
