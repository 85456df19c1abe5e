"""Noisy-student stage: teacher -> pseudo-labels -> student, for N generations.

``bigssl student --teacher CKPT --features F --manifest LABELED --unlabeled POOL --out DIR``
with ``generations=N``. Each generation labels the unlabeled pool with the current
teacher (:mod:`bigssl.stages.label`, the labeled budget excluded: a true label
wins), then trains a student on the labeled rows plus the kept pseudo-labels mixed
``finetune.pseudo_ratio`` : 1 per batch (BigSSL 9:1), with the recipe's noise
(SpecAugment and dropout, on by default in the fine-tuning config). The student
starts from ``init`` (the pre-trained encoder, as in BigSSL) or from scratch, and
becomes the next generation's teacher. ``presets`` grows the student per
generation when it starts from scratch.

Every piece is restartable on its own: labeling by shard, training by checkpoint;
re-running the stage skips what is finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bigssl import storage
from bigssl.config import Config, ConfigError, check, load_dict
from bigssl.data.ledger import partition
from bigssl.models import build_preset, expand_preset
from bigssl.stages.evaluate import EvaluateConfig, run_evaluate
from bigssl.stages.finetune import FinetuneConfig, run_finetune
from bigssl.stages.label import LabelConfig, run_label
from bigssl.summary import StageSummary
from bigssl.training import checkpoint as ckpt


@dataclass
class StudentConfig(Config):
    teacher: str = ""  # the generation-1 teacher: a fine-tuning checkpoint or run folder
    features: str = ""  # featurize output holding both labeled and unlabeled rows
    manifest: str = ""  # the labeled budget (as for fine-tuning)
    unlabeled: str = ""  # the unlabeled pool manifest (`bigssl split` writes unlabeled.parquet)
    init: str = ""  # student encoder init: a pre-training checkpoint; empty = scratch
    generations: int = 1  # teacher -> student rounds
    presets: list[str] = field(default_factory=list)  # per-generation student sizes (scratch only)
    eval_manifest: str = ""  # scored after every generation (e.g. dev or test)
    label: LabelConfig = field(default_factory=LabelConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)

    def validate(self) -> None:
        check(self.generations >= 1, "generations", "must be >= 1")
        check(
            not self.presets or len(self.presets) == self.generations,
            "presets",
            "one preset per generation (or none)",
        )
        check(not (self.presets and self.init), "presets", "growing needs init='' (scratch)")

    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None):
        data = load_dict(path, overrides)
        expand_preset(data.get("finetune", {}))  # as FinetuneConfig.load
        return cls.from_dict(data)


@dataclass
class Generation:
    """What one noisy-student generation made."""

    labels: StageSummary  # the teacher's labeling of the pool (`bigssl label`'s summary)
    student: FinetuneConfig  # the student's config as trained (pseudo_labels, init set)
    trained: StageSummary  # the student's fine-tuning summary (extra["checkpoint"])


def run_nst_generation(
    teacher: str,
    student: FinetuneConfig,
    unlabeled: str,
    label: LabelConfig,
    generation: int,
    out: str,
    *,
    student_init: Literal["recipe", "teacher"],
    teacher_name: str,
    name: str = "",
    ray_address: str | None = None,
) -> Generation:
    """One generation: ``teacher`` labels the ``unlabeled`` pool into ``OUT/labels`` (the
    student's labeled manifest excluded: a true label wins), then a student trains on its
    labeled rows plus the kept pseudo-labels into ``OUT/<student.run_name>``.

    ``student`` is the student's fine-tuning config but for its pseudo-labels. The
    callers differ in
    - ``student_init``: ``"recipe"`` starts the student from ``student.init`` (BigSSL:
      the pre-trained encoder, or scratch; the student stage), ``"teacher"`` from the
      teacher's checkpoint (iterative pseudo-labeling; a sweep's default);
    - ``teacher_name``: the ledger partition's name; ``""`` names it from the
      checkpoint's run and step (``run@step``: the student stage), a sweep trial says
      ``"teacher"`` (one teacher per trial folder).
    ``name`` prefixes the progress line (default: the student's run name).
    """
    labels_out = storage.join(out, "labels")
    label_cfg = dataclasses.replace(
        label, generation=generation, exclude=student.manifest, teacher_name=teacher_name
    )
    labels = run_label(teacher, labels_out, label_cfg, manifest=unlabeled, ray_address=ray_address)
    print(f"   {name or student.run_name}: {labels.extra['kept']} pseudo-labels kept", flush=True)
    student = dataclasses.replace(
        student,
        pseudo_labels=partition(labels_out, labels.extra["teacher"], generation),
        init=teacher if student_init == "teacher" else student.init,
    )
    trained = run_finetune(student, out, ray_address)
    return Generation(labels, student, trained)


def run_student(cfg: StudentConfig, out: str, ray_address: str | None = None) -> StageSummary:
    for name in ("teacher", "features", "manifest", "unlabeled"):
        if not getattr(cfg, name):
            raise ConfigError(name, "required (a path or s3:// URI)")
    teacher = ckpt.resolve_checkpoint(cfg.teacher)
    generations = []
    if cfg.eval_manifest:
        base = run_evaluate(
            teacher,
            cfg.eval_manifest,
            storage.join(out, "eval", "teacher"),
            cfg.evaluate,
            ray_address,
        )
        generations.append({"generation": 0, "checkpoint": teacher, "wer": base.extra["wer"]})
    summary = None
    for g in range(1, cfg.generations + 1):
        print(f"-- noisy student generation {g}/{cfg.generations}: teacher {teacher}", flush=True)
        ft = dataclasses.replace(
            cfg.finetune,
            features=cfg.features,
            manifest=cfg.manifest,
            tokenizer=storage.join(teacher, "tokenizer.model"),
            init=cfg.init,
            run_name=f"student-gen{g}",
        )
        if cfg.presets:
            ft = dataclasses.replace(
                ft, preset=cfg.presets[g - 1], encoder=build_preset(cfg.presets[g - 1])
            )
        generation = run_nst_generation(
            teacher,
            ft,
            cfg.unlabeled,
            cfg.label,
            g,
            out,
            student_init="recipe",
            teacher_name=cfg.label.teacher_name,
            ray_address=ray_address,
        )
        labels, summary = generation.labels, generation.trained
        teacher = summary.extra["checkpoint"]
        row = {
            "generation": g,
            "checkpoint": teacher,
            "pseudo_labeled": labels.extra["kept"],
            "labeled_by_teacher": labels.used,
        }
        if cfg.eval_manifest:
            scored = run_evaluate(
                teacher,
                cfg.eval_manifest,
                storage.join(out, "eval", f"gen{g}"),
                cfg.evaluate,
                ray_address,
            )
            row["wer"] = scored.extra["wer"]
        generations.append(row)
        print(f"   generation {g}: {row}", flush=True)
    assert summary is not None
    summary.stage = "student"
    summary.extra.update(generations=generations, checkpoint=teacher)
    return summary


def student_main(
    config: str | None, overrides: list[str], out: str, ray_address: str | None = None
) -> dict:
    cfg = StudentConfig.load(config, overrides)
    return run_student(cfg, out, ray_address).finish(out)
