"""The sweep's grid, its dependency order and its content cache (no Ray started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bigssl.config import ConfigError
from bigssl.stages.sweep import _finetune_config
from bigssl.stages.sweep_plan import SweepConfig, plan_trials, trial_id
from bigssl.stages.upstream import Upstream, cached, content_key

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BUDGETS = ["1pct", "10pct", "100pct"]


def test_demo_grid_has_teachers_before_students_and_no_nst_on_the_full_budget():
    cfg = SweepConfig.load(CONFIGS / "sweep-demo.yaml")
    trials = plan_trials(cfg, BUDGETS)
    ids = [trial_id(t) for t in trials]
    assert len(ids) == len(set(ids)) == 8  # 3 scratch + 3 ssl + 2 ssl+nst
    students = [t for t in trials if t["generation"]]
    assert {t["budget"] for t in students} == {"1pct", "10pct"}
    for student in students:
        assert student["recipe"] == "ssl+nst"
        teacher = trial_id({**student, "generation": 0})
        assert teacher in ids and teacher.endswith("-ssl-seed0")
    # A trial fine-tunes the grid's preset: the sizes its pre-training had.
    up = Upstream("c", "s", "f", "t.model", dict.fromkeys(BUDGETS, 1.0), {"tiny": "pt/ckpt"})
    scratch = _finetune_config(cfg, up, trials[0])
    student = _finetune_config(cfg, up, students[0])
    assert scratch.encoder == cfg.pretrain.model.encoder
    assert scratch.init == "" and student.init == "pt/ckpt"
    assert student.run_name == "student-gen1" and student.manifest == "s/labeled_1pct.parquet"
    # The demo's student recipe overrides fine-tuning for students only.
    assert student.pseudo_ratio == 1 and scratch.pseudo_ratio == cfg.finetune.pseudo_ratio != 1
    assert student.train.max_steps == 150 != scratch.train.max_steps


def test_generations_seeds_and_budget_choice():
    cfg = SweepConfig.load(
        None,
        [
            "grid.recipes=scratch+nst",
            "grid.nst_generations=2",
            "grid.seeds=0,1",
            "grid.budgets=10pct",
            "grid.nst_budgets=10pct",
        ],
    )
    trials = plan_trials(cfg, BUDGETS)
    assert sorted(trial_id(t) for t in trials) == sorted(
        f"tiny-10pct-scratch{nst}-seed{s}" for s in (0, 1) for nst in ("", "-nst1", "-nst2")
    )
    assert {t["recipe"] for t in trials if t["generation"] == 0} == {"scratch"}


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("grid.recipes=ssl+rnnt", "grid.recipes"),
        ("grid.nst_generations=0", "grid.nst_generations"),
        ("name=a/b", "name"),
        ("grid.seed=1", "grid.seed"),
        ("finetune.train.max_stpes=3", "finetune.train.max_stpes"),
        ("student=train.max_stpes=3", "student[train.max_stpes]"),
        ("student=pseudo_ratio=0", "student[pseudo_ratio]"),
        ("student_init=scratch", "student_init"),
    ],
)
def test_bad_sweep_configs_name_the_field(override, field):
    with pytest.raises(ConfigError) as err:
        SweepConfig.load(CONFIGS / "sweep-demo.yaml", [override])
    assert err.value.field == field


def test_content_cache_produces_once_and_keys_follow_content(tmp_path, monkeypatch):
    calls = []

    def produce(folder: str) -> dict:
        calls.append(folder)
        return {"made": folder}

    key = content_key({"steps": 3}, "corpus-abc")
    assert key == content_key({"steps": 3}, "corpus-abc")
    assert key != content_key({"steps": 4}, "corpus-abc")
    import bigssl.stages.upstream as upstream

    with monkeypatch.context() as patch:  # another release never reuses this one's artifacts
        patch.setattr(upstream, "__version__", upstream.__version__ + ".post1")
        assert content_key({"steps": 3}, "corpus-abc") != key
    first = cached(str(tmp_path), "featurize", key, produce)
    again = cached(str(tmp_path), "featurize", key, produce)
    assert first == again and len(calls) == 1
    other = cached(str(tmp_path), "featurize", content_key({"steps": 4}, "corpus-abc"), produce)
    assert other[0] != first[0] and len(calls) == 2


def test_quick_demo_cuts_the_student_and_keeps_its_recipe():
    from bigssl.stages.demo import QUICK_STUDENT_STEPS, quick_overrides
    from bigssl.stages.sweep_plan import student_finetune

    path = CONFIGS / "sweep-demo.yaml"
    full = SweepConfig.load(path)
    quick = SweepConfig.load(path, quick_overrides(path))
    f = student_finetune(full.finetune, full.student)
    q = student_finetune(quick.finetune, quick.student)
    assert q.train.max_steps == q.train.checkpoint_every == QUICK_STUDENT_STEPS
    assert f.train.max_steps > q.train.max_steps and quick.finetune.train.max_steps == 60
    same = ("pseudo_ratio", "head_lr", "head_warmup_steps")
    assert [getattr(q, k) for k in same] == [getattr(f, k) for k in same]
    assert (q.optim.peak_lr, q.optim.warmup_steps) == (f.optim.peak_lr, f.optim.warmup_steps)


def test_failed_trials_are_quarantined_with_their_error():
    """The sweep's books count trials: ``quarantined`` is the failed ones, each a row of its
    quarantine.parquet naming the trial and its error, as every stage quarantines an item."""
    from bigssl.results import make_row
    from bigssl.stages.sweep import failed_trials

    common = dict(sweep="s", recipe="scratch", budget="100pct", labeled_hours=0.5)
    rows = [
        make_row(**common, trial_id="scratch-100pct-s0", wer=0.3, cer=0.1),
        make_row(**common, trial_id="scratch-100pct-s1", status="failed", error="OOM | step 7"),
    ]
    table = failed_trials(rows, "out/results.parquet").table().to_pylist()
    assert table == [
        {
            "id": "scratch-100pct-s1",
            "source": "out/results.parquet",
            "stage": "sweep",
            "reason": "OOM | step 7",
        }
    ]
