"""The whole pipeline, and the demo: the BigSSL ablation end to end on local Ray or a cluster.

``run_pipeline``: prepare a corpus (the embedded TTS speech, a list of files, or a
LibriSpeech folder) -> the sweep of a sweep config: split into nested label
budgets -> features -> pre-training -> CTC fine-tuning from scratch and from the
pre-trained encoder at every budget -> pseudo-labels -> noisy students -> results
table -> report. It ends by printing the table and the paths of the report and plot.

``run_demo`` is the pipeline on 1.5 h of TTS speech with ``configs/sweep-demo.yaml``
(``make demo``); ``--quick`` runs the same stages at toy scale.
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path

from bigssl import storage
from bigssl.stages.prepare import prepare_dir, prepare_librispeech, prepare_tts
from bigssl.stages.sweep import SweepConfig, print_report, run_sweep

# The shipped recipes are package data (the repository's top-level configs/ links here),
# so the demo runs from a wheel install as from a clone.
CONFIGS = Path(str(resources.files("bigssl") / "configs"))
DEMO_HOURS = {"full": 1.5, "quick": 0.12}
# Toy scale: one budget (half the pool, so the other half is there to pseudo-label),
# scratch / ssl / ssl+nst on it, a few dozen steps: enough for a teacher that emits text.
QUICK = [
    "split.fractions=0.5",
    "grid.nst_budgets=50pct",
    "split.test_hours=0.01",
    "pretrain.train.max_steps=20",
    "finetune.train.max_steps=60",
    "finetune.train.log_every=20",
]
QUICK_STUDENT_STEPS = 30  # half the teacher's steps, as in the full demo (150 after 300)


def quick_overrides(sweep_config: str | Path) -> list[str]:
    """QUICK, plus the config's own student recipe cut to QUICK_STUDENT_STEPS.

    The student's steps live in the config's ``student`` list, which QUICK's
    ``finetune.*`` keys do not reach: without this the quick demo's student
    trained 150 steps after a 60-step teacher (~55 s more of a ~5 min run here).
    """
    student = SweepConfig.load(sweep_config).student
    if any("," in item for item in student):  # the override below is a comma list
        raise ValueError(f"student overrides with commas cannot be shortened: {student}")
    cut = ("train.max_steps", "train.checkpoint_every")
    kept = [item for item in student if item.split("=", 1)[0] not in cut]
    return [*QUICK, "student=" + ",".join([*kept, *(f"{k}={QUICK_STUDENT_STEPS}" for k in cut)])]


def run_pipeline(
    out: str,
    sweep_config: str | Path,
    overrides: list[str],
    *,
    tts_hours: float | None = None,
    manifest: str | None = None,
    librispeech: str | None = None,
    ray_address: str | None = None,
) -> dict:
    """Prepare one corpus into ``OUT/corpus``, then sweep it into ``OUT/sweep``."""
    if sum(x is not None for x in (tts_hours, manifest, librispeech)) != 1:
        raise ValueError("give exactly one corpus: tts_hours, manifest or librispeech")
    start = time.perf_counter()
    corpus = storage.join(out, "corpus")
    cfg = SweepConfig.load(sweep_config, [*overrides, f"corpus={corpus}"])  # fails fast
    print("-- [1/2] prepare the corpus", flush=True)
    if manifest is not None:
        prepared = prepare_dir(manifest, corpus, None, [])
    elif librispeech is not None:
        prepared = prepare_librispeech(librispeech, corpus, None, [])
    else:
        prepared = prepare_tts(
            corpus, None, [f"tts.hours={tts_hours}", "tts.seed=0", "utterances_per_shard=200"]
        )
    print("-- [2/2] sweep: split, features, pre-training, fine-tuning, noisy student", flush=True)
    sweep_out = storage.join(out, "sweep")
    swept = run_sweep(cfg, sweep_out, ray_address).finish(sweep_out)
    wall = time.perf_counter() - start
    record = {"wall_s": wall, "prepare": prepared, "sweep": swept}
    storage.write_json(storage.join(out, "pipeline.json"), record)
    print_report(swept.get("report"))
    print(
        f"== done in {wall / 60:.1f} min\n"
        f"   results: {swept['results']}\n   report:  {swept['report']}\n"
        f"   plot:    {swept['plot']}",
        flush=True,
    )
    return record


def run_demo(out: str, quick: bool = False, ray_address: str | None = None) -> dict:
    scale = "quick" if quick else "full"
    print(f"== bigssl demo ({scale}): {DEMO_HOURS[scale]} h of TTS speech -> {out}", flush=True)
    return run_pipeline(
        out,
        CONFIGS / "sweep-demo.yaml",
        quick_overrides(CONFIGS / "sweep-demo.yaml") if quick else [],
        tts_hours=DEMO_HOURS[scale],
        ray_address=ray_address,
    )
