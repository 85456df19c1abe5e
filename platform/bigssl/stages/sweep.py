"""Sweep stage: the data-efficiency ablation (WER vs labeled hours per recipe) as a Ray Tune grid.

``bigssl sweep --config configs/sweep-demo.yaml --corpus runs/tts --out runs/sweep``.

Design decisions:
- Upstream artifacts (splits, features, tokenizer, one pre-training per preset)
  are computed once, cached by content and shared by every trial
  (:mod:`bigssl.stages.upstream`).
- A trial is (recipe, budget, preset, seed). ``scratch`` and ``ssl`` fine-tune
  from a random or the pre-trained encoder; ``<init>+nst`` trains noisy students
  whose first teacher is the ``<init>`` trial of the same budget, preset and seed
  (the grid and its planning: :mod:`bigssl.stages.sweep_plan`; a student generation:
  :func:`bigssl.stages.student.run_nst_generation`).
  Trials run in one Tune experiment per noisy-student generation (``gen0`` first),
  so every teacher exists before its student starts, and the trials of a
  generation run side by side up to ``max_concurrent_trials``.
- Ray Train V2 refuses to run as a Tune trainable, so a trial is a function that
  calls the stages (``TorchTrainer.fit()`` inside) and holds a token 0.01 CPU; the
  Ray Train workers and inference actors ask for their own resources.
- Resume: an experiment found in ``tune/`` is restored (``Tuner.restore``) and runs
  only unfinished trials; each trial also leaves ``trials/<id>/row.json`` last, and
  a trial that finds its row returns it at once. Rows are appended by the driver
  (one writer) to ``results.parquet``, keyed by (sweep, trial_id).
- The summary's books count trials: a failed trial is quarantined as any stage
  quarantines an item, a row of ``quarantine.parquet`` with its reason (the error),
  and the results table keeps its row too (status ``failed``), so the report lists it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from typing import Any

from bigssl import storage
from bigssl.config import ConfigError
from bigssl.data.quarantine import Quarantine
from bigssl.models import expand_preset
from bigssl.results import append_results, make_row
from bigssl.stages.evaluate import run_evaluate
from bigssl.stages.finetune import FinetuneConfig, run_finetune
from bigssl.stages.student import run_nst_generation
from bigssl.stages.sweep_plan import (
    SweepConfig,
    plan_trials,
    student_finetune,
    teacher_params,
    trial_id,
)
from bigssl.stages.upstream import Upstream, build_upstream, content_key
from bigssl.summary import NothingUsable, StageSummary


def _dev_manifest(up: Upstream) -> str:
    """The split's dev manifest, when it holds labeled rows (model selection needs them)."""
    path = storage.join(up.splits, "dev.parquet")
    if not storage.exists(path):
        return ""
    table = storage.read_parquet(path, columns=["text"])
    return path if table.num_rows and table.column("text").null_count < table.num_rows else ""


def _finetune_config(cfg: SweepConfig, up: Upstream, params: dict[str, Any]) -> FinetuneConfig:
    finetune = student_finetune(cfg.finetune, cfg.student) if params["generation"] else cfg.finetune
    data = finetune.to_dict()
    data.update(
        features=up.features,
        manifest=storage.join(up.splits, f"labeled_{params['budget']}.parquet"),
        tokenizer=up.tokenizer,
        init=up.pretrained[params["preset"]] if params["init"] == "ssl" else "",
        dev=_dev_manifest(up) if finetune.head == "ctc" else "",
        run_name="finetune" if params["generation"] == 0 else f"student-gen{params['generation']}",
        preset=params["preset"],
    )
    data.pop("encoder")  # the preset decides the sizes (the checkpoint's, with init)
    data["train"]["seed"] = data["bucket"]["seed"] = params["seed"]
    return FinetuneConfig.from_dict(expand_preset(data))


def train_trial(params: dict[str, Any], cfg: SweepConfig, up: Upstream, out: str) -> dict[str, Any]:
    """One trial end to end (no Tune in here): train, score, write ``row.json`` last."""
    tid = trial_id(params)
    folder = storage.join(out, "trials", tid)
    row_path = storage.join(folder, "row.json")
    if storage.exists(row_path):
        return storage.read_json(row_path)
    start = time.perf_counter()
    ft = _finetune_config(cfg, up, params)
    stages = ["pretrain"] if params["init"] == "ssl" else []
    if params["generation"]:
        teacher_row = storage.join(out, "trials", trial_id(teacher_params(params)), "row.json")
        if not storage.exists(teacher_row):
            raise RuntimeError(f"{tid}: its teacher's trial has no result ({teacher_row})")
        generation = run_nst_generation(
            storage.read_json(teacher_row)["checkpoint"],
            ft,
            storage.join(up.splits, "unlabeled.parquet"),
            cfg.label,
            params["generation"],
            folder,
            student_init=cfg.student_init,
            teacher_name="teacher",  # one teacher per trial folder
            name=tid,
        )
        ft, trained = generation.student, generation.trained
        stages += ["label"]
    else:
        trained = run_finetune(ft, folder)
    trained.finish(storage.join(folder, ft.run_name))
    checkpoint = trained.extra["checkpoint"]
    stages += ["student" if params["generation"] else "finetune", "evaluate"]
    scores = []
    for test_set in cfg.test_sets:
        scored = run_evaluate(
            checkpoint,
            storage.join(up.splits, f"{test_set}.parquet"),
            storage.join(folder, "eval", test_set),
            cfg.evaluate,
        )
        scores.append(
            {
                "test_set": test_set,
                "wer": scored.extra["wer"],
                "cer": scored.extra["cer"],
                "words": scored.extra["words"],
                "utterances": scored.used,
            }
        )
    wall = time.perf_counter() - start
    scaling = ft.scaling
    per_worker = 1.0 if scaling.use_gpu else scaling.cpus_per_worker
    row = make_row(
        **_trial_fields(cfg, up, params),
        stages=stages,
        scores=scores,
        steps=trained.extra["steps"],
        wall_s=wall,
        device_hours=trained.extra["wall_s"] * scaling.num_workers * per_worker / 3600,
        checkpoint=checkpoint,
        config={"trial": params, "finetune": ft.to_dict(), "label": cfg.label.to_dict()},
    )
    storage.write_json(row_path, _jsonable(row))
    return storage.read_json(row_path)


def _trial_fields(cfg: SweepConfig, up: Upstream, params: dict[str, Any]) -> dict[str, Any]:
    """The results columns that say which trial a row is."""
    return {
        "sweep": cfg.name,
        "trial_id": trial_id(params),
        "recipe": params["recipe"],
        "init": params["init"],
        "nst_generations": params["generation"],
        "preset": params["preset"],
        "seed": params["seed"],
        "budget": params["budget"],
        "labeled_hours": up.budgets[params["budget"]],
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


def _tune_trial(config: dict[str, Any], cfg: dict, up: dict, out: str) -> None:
    """The Tune function trainable: one trial, its final metrics reported to Tune."""
    from ray import tune

    row = train_trial(config["params"], SweepConfig.from_dict(cfg), Upstream(**up), out)
    tune.report({"wer": row["wer"], "cer": row["cer"], "steps": row["steps"]})


def _failed_row(cfg: SweepConfig, up: Upstream, params: dict[str, Any], error: str) -> dict:
    return make_row(
        **_trial_fields(cfg, up, params),
        status="failed",
        error=error[:2000],
        config={"trial": params},
    )


def _error_text(error: BaseException | None) -> str:
    """The exception line of a trial's error (Ray wraps it in the remote traceback)."""
    if error is None:
        return "the trial ended without a result"
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(error).__name__


@contextlib.contextmanager
def _credentials_not_in_runtime_env() -> Iterator[None]:
    """Tune copies the driver's ``AWS_*`` keys into every trainable's ``runtime_env``
    (``ray.tune.execution.class_cache``), and Ray's runtime-env agent logs each runtime
    env in clear text (``runtime_env_agent.log``): an S3 sweep wrote the secret key into
    the session logs. Trials do not need the copy: Ray workers inherit their node's
    environment (locally the one Ray started with; on a cluster the nodes' own, or an
    instance role), which is how every other stage's workers reach S3. So the keys are
    left out of Tune's list while the experiment runs (tests/ray/test_s3.py greps the
    logs)."""
    from ray.tune.execution import class_cache

    secret = {name for name in class_cache.ENV_VARS_TO_PROPAGATE if name.startswith("AWS_")}
    class_cache.ENV_VARS_TO_PROPAGATE -= secret
    try:
        yield
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE |= secret


def tune_generation(
    trials: list[dict[str, Any]], cfg: SweepConfig, up: Upstream, out: str, generation: int
) -> list[dict[str, Any]]:
    """One Tune experiment over ``trials`` (restored when interrupted); their results rows."""
    from ray import tune

    ids = sorted(trial_id(t) for t in trials)
    # The experiment's name pins its trial list: a changed grid starts a new experiment
    # (finished trials still return their row.json at once).
    name = f"gen{generation}-{content_key(ids)[:8]}"
    storage_path = storage.absolute(out)
    path = storage.join(storage_path, "tune", name)
    trainable = tune.with_resources(
        tune.with_parameters(
            _tune_trial, cfg=cfg.to_dict(), up=dataclasses.asdict(up), out=storage_path
        ),
        {"CPU": 0.01},
    )
    if tune.Tuner.can_restore(path):
        print(f"-- generation {generation}: resuming {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, restart_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space={"params": tune.grid_search(trials)},
            tune_config=tune.TuneConfig(max_concurrent_trials=cfg.max_concurrent_trials),
            run_config=tune.RunConfig(
                name=name, storage_path=storage.join(storage_path, "tune"), verbose=1
            ),
        )
    with _credentials_not_in_runtime_env():
        grid = tuner.fit()
    rows = []
    for result in grid:
        params = result.config["params"]
        row_path = storage.join(storage_path, "trials", trial_id(params), "row.json")
        if result.error is None and storage.exists(row_path):
            rows.append(storage.read_json(row_path))
        else:
            rows.append(_failed_row(cfg, up, params, _error_text(result.error)))
    return rows


def run_sweep(cfg: SweepConfig, out: str, ray_address: str | None = None) -> StageSummary:
    from bigssl.stages.report import report_main
    from bigssl.stages.runtime import init_ray

    if not cfg.corpus:
        raise ConfigError("corpus", "required: a `bigssl prepare` output folder")
    # Tune runs each trial in a working folder of its own: every path travels absolute.
    out = storage.absolute(out)
    cfg = dataclasses.replace(
        cfg,
        corpus=storage.absolute(cfg.corpus),
        cache=storage.absolute(cfg.cache) if cfg.cache else "",
    )
    start = time.perf_counter()
    init_ray(ray_address)
    up = build_upstream(cfg, out, ray_address)
    trials = plan_trials(cfg, list(up.budgets))
    print(f"-- {len(trials)} trials: {', '.join(trial_id(t) for t in trials)}", flush=True)
    results = storage.join(out, "results.parquet")
    rows: list[dict[str, Any]] = []
    for generation in sorted({t["generation"] for t in trials}):
        batch = [t for t in trials if t["generation"] == generation]
        done = tune_generation(batch, cfg, up, out, generation)
        append_results(results, done)  # after every generation: nothing finished is lost
        rows += done
    try:
        report = report_main([results], storage.join(out, "report"), echo=False)
    except NothingUsable:  # every trial failed: the report lists them; the summary says so
        report = {}
    ok = [r for r in rows if r["status"] == "ok"]
    failed_trials(rows, results).write(storage.join(out, "quarantine.parquet"))
    return StageSummary(
        "sweep",
        read=len(rows),
        used=len(ok),
        quarantined=len(rows) - len(ok),
        hours=sum(r["labeled_hours"] for r in ok),
        extra={
            "name": cfg.name,
            "trials": len(rows),
            "failed": [r["trial_id"] for r in rows if r["status"] != "ok"],
            "results": results,
            "report": report.get("report"),
            "plot": report.get("plot"),
            "upstream": dataclasses.asdict(up),
            "wall_s": round(time.perf_counter() - start, 1),
        },
    )


def failed_trials(rows: list[dict[str, Any]], results: str) -> Quarantine:
    """One quarantine row per trial that did not finish: its id, the results table, its error."""
    quarantine = Quarantine("sweep")
    for row in rows:
        if row["status"] != "ok":
            quarantine.add(row["trial_id"], results, row.get("error") or row["status"])
    return quarantine


def sweep_main(
    config: str | None, overrides: list[str], out: str, ray_address: str | None = None
) -> dict:
    cfg = SweepConfig.load(config, overrides)
    summary = run_sweep(cfg, out, ray_address)
    print_report(summary.extra.get("report"))
    return summary.finish(out)


def print_report(report: str | None) -> None:
    if report and storage.exists(report):
        print(storage.read_bytes(report).decode(), flush=True)
