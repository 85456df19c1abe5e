"""The demo: the pipeline end to end on the embedded TTS corpus, on local Ray.

Today it runs what exists: TTS corpus -> shards -> label budgets -> features ->
self-supervised pre-training of the tiny Conformer (configs/tiny.yaml), and prints
each stage's summary. Later stages (fine-tune, pseudo-label, student, sweep,
report) join here as they land.
"""

from __future__ import annotations

import time
from pathlib import Path

from bigssl import storage
from bigssl.stages.featurize import featurize_main
from bigssl.stages.prepare import prepare_tts
from bigssl.stages.pretrain import pretrain_main
from bigssl.stages.split import run_split

# (hours of TTS, budgets as fractions of the labeled pool: the paper's
# 100 h / 1 k h / 34 k h ratios, ~0.3 % / 3 % / 100 %, scaled to the corpus)
SCALES = {"quick": (0.05, "0.1,0.3,1", 20), "full": (1.0, "0.003,0.03,1", 300)}
CONFIGS = Path(__file__).resolve().parents[3] / "configs"


def run_demo(out: str, quick: bool = False, ray_address: str | None = None) -> dict:
    hours, fractions, pretrain_steps = SCALES["quick" if quick else "full"]
    start = time.perf_counter()
    print(
        f"== bigssl demo ({'quick' if quick else 'full'}): {hours} h of TTS speech -> {out}",
        flush=True,
    )
    corpus = storage.join(out, "corpus")
    steps = [
        (
            "prepare",
            lambda: prepare_tts(
                corpus, None, [f"tts.hours={hours}", "tts.seed=0", "utterances_per_shard=200"]
            ),
        ),
        (
            "split",
            lambda: run_split(
                storage.join(corpus, "manifest.parquet"),
                storage.join(out, "splits"),
                None,
                [f"fractions={fractions}", f"test_hours={hours * 0.05:.4f}"],
            ),
        ),
        (
            "featurize",
            lambda: featurize_main(corpus, storage.join(out, "features"), None, [], ray_address),
        ),
        (
            "pretrain",
            lambda: pretrain_main(
                str(CONFIGS / "tiny.yaml"),
                [f"features={storage.join(out, 'features')}", f"train.max_steps={pretrain_steps}"],
                out,
                ray_address,
            ),
        ),
    ]
    results = {}
    for number, (name, step) in enumerate(steps, start=1):
        print(f"-- [{number}/{len(steps)}] {name}", flush=True)
        results[name] = step()
    wall = time.perf_counter() - start
    storage.write_json(storage.join(out, "demo.json"), {"wall_s": wall, "stages": results})
    print(f"== demo done in {wall:.0f} s; outputs under {out}", flush=True)
    return results
