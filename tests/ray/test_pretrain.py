"""Pre-training on Ray Train with 2 CPU workers: FSDP2 and DDP, both objectives, fault and resume."""

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from bigssl.models import build_ssl_model_from_config
from bigssl.stages.pretrain import PretrainConfig, run_pretrain
from bigssl.training.checkpoint import load_model_weights, read_meta

pytestmark = pytest.mark.ray

BASE = [
    "optim.warmup_steps=3",
    "optim.peak_lr=2.0e-3",
    "bucket.max_frames=2500",
    "bucket.window=16",
    "model.wav2vec2.num_negatives=20",
    "scaling.num_workers=2",
    "scaling.cpus_per_worker=0.5",
    "train.log_every=1",
]


def pretrain(features: str, out: Path, *overrides: str):
    cfg = PretrainConfig.load(None, [*BASE, f"features={features}", *overrides])
    summary = run_pretrain(cfg, str(out))
    metrics = pq.read_table(out / cfg.run_name / "metrics.parquet").to_pylist()
    return cfg, summary, metrics


def mean_loss(rows: list[dict]) -> float:
    return sum(r["loss"] for r in rows) / len(rows)


# wav2vec 2.0 on 2-s toy utterances: single-frame masks (a span of 10 subsampled frames
# hides a fifth of an utterance from a Conformer without position embeddings) and 20
# warm-up steps (from a flat 2e-3 it stayed at chance). See configs/tiny.yaml.
WAV2VEC2 = [
    "model.wav2vec2.mask_length=1",
    "model.wav2vec2.mask_prob=0.3",
    "optim.warmup_steps=20",
]


# Both strategies with BEST-RQ (12 steps); wav2vec 2.0 (60 steps, ~60 s each here) under
# FSDP only: the strategy wraps every model alike (models/parallelize.py), so its DDP run
# tested no other code and cost a minute of CI's 30.
@pytest.mark.parametrize(
    ("objective", "strategy"), [("bestrq", "fsdp"), ("bestrq", "ddp"), ("wav2vec2", "fsdp")]
)
def test_loss_falls_under_each_strategy(tts_features, tmp_path, strategy, objective):
    """Both strategies under Ray Train with both objectives, on streamed batches.

    BEST-RQ's loss falls clearly in 12 steps. wav2vec 2.0's contrastive loss sits at
    chance, log(K + 1), until it takes off, so its run is longer and it is checked
    against chance, not against its own first steps. The take-off step varies with the
    streamed batch order: steps 20-28 here, ~40 on CI's machine (where 45 steps left
    the last five at 2.93 mean, just above the bound), hence 60 steps.
    """
    steps = 12 if objective == "bestrq" else 60
    cfg, summary, metrics = pretrain(
        tts_features,
        tmp_path,
        f"train.max_steps={steps}",
        f"train.checkpoint_every={steps}",
        f"scaling.strategy={strategy}",
        f"model.objective={objective}",
        *(WAV2VEC2 if objective == "wav2vec2" else []),
    )
    # Every step is in the run's own table; Ray Train got a throttled subset.
    assert [r["step"] for r in metrics] == list(range(1, steps + 1))
    assert summary.extra["steps"] == steps
    assert all(r["audio_hours_per_s"] > 0 for r in metrics)
    first, last = mean_loss(metrics[:3]), mean_loss(metrics[-3:])
    if objective == "bestrq":
        # Measured (12 steps, 2 workers): BEST-RQ fell 16-20 %.
        assert last < 0.9 * first, (first, last)
    else:
        chance = math.log(cfg.model.wav2vec2.num_negatives + 1)
        contrastive = [r["contrastive_loss"] for r in metrics]
        # Measured (FSDP, 70 steps, 3 runs): 3.0-3.1 until steps 18-25, 1.6-2.2 at steps 55-60.
        assert sum(contrastive[-5:]) / 5 < chance - 0.15, contrastive
        assert last < first and min(r["code_perplexity"] for r in metrics[-5:]) > 10.0


def test_killed_worker_resumes_from_checkpoint_without_rereading_consumed_shards(
    tts_features, tmp_path, kill_worker
):
    kill_worker(tmp_path / "faulty", step=5, rank=1)
    cfg, summary, metrics = pretrain(
        tts_features,
        tmp_path,
        "train.max_steps=9",
        "train.checkpoint_every=3",
        "scaling.max_failures=1",
        "scaling.strategy=fsdp",
        "model.objective=wav2vec2",
        "run_name=faulty",
    )
    run = tmp_path / "faulty"
    assert summary.extra["steps"] == 9
    # The codebook stays in use across the restart (2.0 would be one code per group).
    # Measured: an early dip (14.8 at step 2 with one init), then 36-100+ from step 3.
    perplexity = [r["code_perplexity"] for r in metrics]
    assert min(perplexity) > 10.0 and min(perplexity[3:]) > 20.0, perplexity
    assert all(math.isfinite(r["loss"]) and r["audio_hours_per_s"] > 0 for r in metrics)
    assert [r["step"] for r in metrics] == list(range(1, 10))  # each step once, none replayed
    # Steps 1-3 are the first attempt's; the restart (rank 1 died at step 5) restored step 3.
    assert [r["resumed_from_step"] for r in metrics] == [0] * 3 + [3] * 6, metrics
    position = json.loads((run / "checkpoint_000000003" / "train_state.json").read_text())[
        "position"
    ]
    assert position["consumed"]
    assert metrics[3]["epoch"] >= position["epoch"]
    # What the restart was given again and skipped: at most checkpoint 3's trained rows of
    # its partial shards (fewer when the other worker's end of epoch cut a rank's stream
    # short), never a consumed shard's rows.
    partial_rows = sum(len(ids) for ids in position["partial"].values())
    assert metrics[-1]["skipped_rows"] <= partial_rows, (metrics[-1], position)
    # The final checkpoint loads into a fresh single-process model for export.
    final = run / "checkpoint_000000009"
    assert read_meta(final)["step"] == 9
    model = build_ssl_model_from_config(cfg.model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_model_weights(final, model)
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_kill_before_registration_resumes_where_ray_train_restores_on_fewer_workers(
    tts_features, tmp_path, kill_worker
):
    """Rank 1 dies right after its report of checkpoint 4 returns, before the controller
    collects it: Ray Train never registers 4, though rank 0's files are there. The re-run,
    on one worker instead of two, must take its data position from the checkpoint Ray
    Train restores: no shard consumed there is read again, none left unread is skipped."""
    from bigssl.summary import TrainingFailed

    args = [
        "train.max_steps=12",  # the resumed run finishes the interrupted epoch
        "train.checkpoint_every=2",
        "train.keep_last=0",
        "model.objective=bestrq",
        "scaling.strategy=fsdp",
        "run_name=race",
    ]
    kill_worker(tmp_path / "race", step=4, rank=1, at="report")
    with pytest.raises(TrainingFailed):
        pretrain(tts_features, tmp_path, *args)
    run = tmp_path / "race"
    assert (run / "checkpoint_000000004").is_dir()  # uploaded by at least one rank
    committed = sorted(p.parent.name for p in run.glob("checkpoint_*/COMMITTED"))
    assert committed and committed[-1] in ("checkpoint_000000002", "checkpoint_000000004")
    one_worker = ["scaling.num_workers=1", "scaling.cpus_per_worker=1"]
    _, summary, metrics = pretrain(tts_features, tmp_path, *args, *one_worker)
    assert summary.extra["steps"] == 12 and metrics[-1]["step"] == 12
    restored = int(committed[-1].rsplit("_", 1)[1])  # what Ray Train restores
    assert [r["resumed_from_step"] for r in metrics] == [0] * restored + [restored] * (
        12 - restored
    ), metrics
    state = json.loads((run / committed[-1] / "train_state.json").read_text())["position"]
    consumed, epoch = set(state["consumed"]), state["epoch"]
    files = sorted((Path(tts_features) / "features").glob("*.parquet"))
    assert consumed and consumed < {f.stem for f in files}  # the restored epoch was under way
    resumed = [r for r in metrics if r["step"] > restored]
    assert resumed[-1]["epoch"] > epoch, "the resumed run did not finish the interrupted epoch"
    # No shard left unread is skipped: the interrupted epoch ends with every row trained
    # (the restored ones included; one worker, so no other worker's end cuts it short).
    (end_of_epoch, *_) = [r for r in reversed(resumed) if r["epoch"] == epoch]
    assert end_of_epoch["epoch_rows"] == sum(pq.read_metadata(f).num_rows for f in files)
    # No consumed shard is read again: the one worker was given again exactly the restored
    # rows of the partial shards, and skipped them.
    partial_rows = sum(len(ids) for ids in state["partial"].values())
    assert resumed[-1]["skipped_rows"] == partial_rows, (resumed[-1], state)


def test_held_out_loss_is_scored_and_retention_keeps_the_best_and_the_newest(
    tts_features, tmp_path
):
    """Pre-training with dev=: its BEST-RQ loss on held-out audio every 3 steps, falling;
    retention keeps the lowest dev_loss and the newest checkpoint, deletes the rest."""
    manifest = pq.read_table(Path(tts_features).parent / "corpus" / "manifest.parquet")
    held_out = pa.array([i % 4 == 0 for i in range(manifest.num_rows)])  # every 4th row
    pq.write_table(manifest.filter(held_out), tmp_path / "dev.parquet")
    pq.write_table(manifest.filter(pc.invert(held_out)), tmp_path / "pool.parquet")
    cfg, summary, metrics = pretrain(
        tts_features,
        tmp_path,
        "train.max_steps=12",
        "train.checkpoint_every=100",
        "train.eval_every=3",
        "train.keep_last=1",
        "select.keep_best=1",
        "scaling.strategy=ddp",
        "model.objective=bestrq",
        f"manifest={tmp_path / 'pool.parquet'}",
        f"dev={tmp_path / 'dev.parquet'}",
        "run_name=held_out",
    )
    scored = {r["step"]: r["dev_loss"] for r in metrics if r.get("dev_loss") is not None}
    assert sorted(scored) == [3, 6, 9, 12], scored
    assert all(0 < r["dev_accuracy"] <= 1 for r in metrics if r.get("dev_loss") is not None)
    # Measured: held-out loss 8.67 at step 3, 7.63 at step 12 (train loss 8.77 -> 7.43).
    assert scored[12] < 0.95 * scored[3], scored
    best_step = min(scored, key=scored.get)
    assert summary.extra["best_checkpoint"]["step"] == best_step
    assert summary.extra["dev_loss"] == pytest.approx(scored[12])
    kept = sorted(p.name for p in (tmp_path / "held_out").glob("checkpoint_0*"))
    assert kept == sorted({f"checkpoint_{s:09d}" for s in (best_step, 12)}), kept


def test_a_killed_worker_without_restarts_is_one_line_naming_the_checkpoint_to_resume(
    tts_features, tmp_path, capsys, kill_worker
):
    from bigssl.cli import main

    args = ["pretrain", "--features", tts_features, "--out", str(tmp_path), *BASE]
    # keep_last=1: retention deletes checkpoint 2 once 4 is registered, and Ray Train's
    # snapshot still names it; the re-run must resume all the same (it once refused the
    # "corrupted run directory").
    args += ["train.max_steps=6", "train.checkpoint_every=2", "train.keep_last=1"]
    args += ["run_name=killed"]
    kill_worker(tmp_path / "killed", step=5, rank=1)
    assert main(args) == 4
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "training run 'killed' failed (rank 1:" in err, err
    resumed_from = err.rsplit("resumes from ", 1)[-1]
    assert resumed_from in ("checkpoint_000000002", "checkpoint_000000004"), err
    committed = sorted(p.parent.name for p in (tmp_path / "killed").glob("checkpoint_*/COMMITTED"))
    assert committed == [resumed_from], committed  # retention kept only the newest
    # Re-running the same command resumes there and finishes (the fault fires only once).
    assert main(args) == 0
    summary = json.loads((tmp_path / "killed" / "summary.json").read_text())
    assert summary["steps"] == 6
    metrics = pq.read_table(tmp_path / "killed" / "metrics.parquet").to_pylist()
    steps = [r["step"] for r in metrics]
    assert steps[-1] == 6 and len(steps) == len(set(steps))
    named = int(resumed_from.rsplit("_", 1)[1])  # the run restored what the line named
    assert {r["resumed_from_step"] for r in metrics if r["step"] > named} == {named}
