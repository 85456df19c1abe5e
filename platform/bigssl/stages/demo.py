"""The demo: :func:`bigssl.stages.pipeline.run_pipeline` on 1.5 h of the embedded TTS
speech with ``configs/sweep-demo.yaml`` (``make demo``); ``--quick`` runs the same stages
at toy scale.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bigssl.stages.pipeline import run_pipeline
from bigssl.stages.sweep_plan import SweepConfig

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
