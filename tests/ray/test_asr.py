"""Tokenizer -> CTC fine-tuning -> evaluation -> pseudo-labels -> noisy student on local Ray.

One small TTS corpus and one teacher per module: Ray Train runs are the slow part.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigssl import schemas
from bigssl.data.features import FeaturizeConfig
from bigssl.eval import aggregate, utterance_errors
from bigssl.eval.wer import COUNTS
from bigssl.stages.evaluate import EvaluateConfig, run_evaluate
from bigssl.stages.featurize import run_featurize
from bigssl.stages.finetune import FinetuneConfig, run_finetune
from bigssl.stages.label import LabelConfig, run_label
from bigssl.stages.prepare import prepare_tts
from bigssl.stages.pretrain import PretrainConfig, run_pretrain
from bigssl.stages.split import split_main
from bigssl.stages.student import StudentConfig, run_student
from bigssl.stages.tokenizer import tokenizer_main
from bigssl.text import normalize

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
FT = [
    "scaling.num_workers=1",
    "scaling.cpus_per_worker=1",
    "scaling.threads_per_worker=2",
    "scaling.strategy=ddp",
    "bucket.max_frames=3000",
    "optim.peak_lr=3e-3",
    "head_lr=3e-3",
    "train.log_every=25",
]
POOL = ["pool.replicas=2", "pool.cpus_per_replica=0.5"]


@pytest.fixture(scope="module")
def ordered_ingest(ray_session):
    """Ray Data hands blocks over as their read tasks finish, so a training worker's rows
    arrive in another order each run; with lengths that tie (88 distinct among the 108
    rows of the 30 % budget) the bucketed batches, and so the trained teacher, differ run
    to run (measured: two 40-step runs, losses apart from step 1; with the order preserved,
    identical). This module's bounds hold for one teacher, not for a draw: Ray Train takes
    the driver's DataContext to its workers' ingest, so preserving the order here makes it."""
    import ray

    options = ray.data.DataContext.get_current().execution_options
    before, options.preserve_order = options.preserve_order, True
    yield
    options.preserve_order = before


@pytest.fixture(scope="module")
def asr(ordered_ingest, tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    corpus, splits, features = root / "corpus", root / "splits", root / "features"
    prepare_tts(str(corpus), None, ["tts.hours=0.3", "tts.seed=5", "utterances_per_shard=40"])
    split_main(
        str(corpus / "manifest.parquet"),
        str(splits),
        None,
        # Nested budgets: adding the 10 % subset leaves the 30 % and 100 % ones as they were.
        ["fractions=0.1,0.3,1", "test_hours=0.03", "seed=0"],
    )
    run_featurize(str(corpus), str(features), FeaturizeConfig())
    tokenizer_main(
        str(splits / "labeled_100pct.parquet"),
        str(root / "tok"),
        None,
        ["model_type=char", "vocab_size=40"],
    )
    cfg = FinetuneConfig.load(
        ROOT / "configs" / "finetune-tiny.yaml",
        [
            *FT,
            f"features={features}",
            f"manifest={splits / 'labeled_30pct.parquet'}",
            f"tokenizer={root / 'tok' / 'tokenizer.model'}",
            "train.max_steps=150",
            "train.checkpoint_every=150",
            "run_name=teacher",
        ],
    )
    summary = run_finetune(cfg, str(root / "runs"))
    return {
        "root": root,
        "splits": splits,
        "features": features,
        "corpus": corpus,
        "teacher": summary.extra["checkpoint"],
        "summary": summary,
    }


def test_finetune_checkpoint_is_self_contained(asr):
    ckpt = Path(asr["teacher"])
    assert (ckpt / "tokenizer.model").stat().st_size > 0
    assert asr["summary"].extra["steps"] == 150 and asr["summary"].extra["vocab_size"] < 45
    metrics = pq.read_table(ckpt.parent / "metrics.parquet").to_pylist()
    assert metrics[-1]["loss"] < 0.6 * metrics[0]["loss"], (metrics[0], metrics[-1])


def test_dev_scoring_selects_averages_and_prunes_checkpoints(asr):
    """Validation while training: dev WER every 20 steps falls, retention keeps the two best
    and the newest checkpoint only, and the average of the two best is no worse on dev than
    the best single one; the run folder then resolves to that selected model.

    From scratch, 120 steps are far from converged: there the average of steps 100 and 120
    was worse (dev WER 0.99 against 0.95) and the run kept the best single one, as it should."""
    from bigssl.training import selection
    from bigssl.training.checkpoint import resolve_checkpoint

    dev = asr["splits"] / "dev.parquet"
    assert pq.read_table(dev).num_rows > 10  # the split's default dev_hours holds a dev set out
    cfg = FinetuneConfig.load(
        ROOT / "configs" / "finetune-tiny.yaml",
        [
            *FT,
            f"features={asr['features']}",
            f"manifest={asr['splits'] / 'labeled_100pct.parquet'}",
            f"tokenizer={asr['root'] / 'tok' / 'tokenizer.model'}",
            f"dev={dev}",
            # Checkpoints worth averaging sit in one basin: continue from the teacher's
            # encoder at a low LR (a fresh head), as the tail of a converged run would.
            f"init={asr['teacher']}",
            "optim.peak_lr=3e-4",
            "optim.warmup_steps=10",
            "head_lr=2e-3",
            "head_warmup_steps=10",
            "select.metric=dev_cer",  # finer than WER at this toy scale (WER ~0.9)
            "train.max_steps=120",
            "train.eval_every=20",
            "train.checkpoint_every=1000",
            "train.keep_last=1",
            "select.keep_best=2",
            "run_name=selected",
        ],
    )
    summary = run_finetune(cfg, str(asr["root"] / "runs"))
    run_dir = asr["root"] / "runs" / "selected"
    scored = [
        r
        for r in pq.read_table(run_dir / "metrics.parquet").to_pylist()
        if r.get("dev_wer") is not None
    ]
    assert [r["step"] for r in scored] == [20, 40, 60, 80, 100, 120]
    assert scored[-1]["dev_cer"] < 0.95 * scored[0]["dev_cer"], scored  # measured 0.415 -> 0.363
    assert min(r["dev_wer"] for r in scored[3:]) < scored[0]["dev_wer"], scored
    history = [(r["step"], r["dev_cer"], r["dev_loss"]) for r in scored]
    best_two = {s for s, *_ in sorted(history, key=lambda h: (h[1], h[2], -h[0]))[:2]}
    left = {step for step, _ in selection.checkpoints(str(run_dir))}
    assert left == best_two | {120}, (left, history)
    # The average of the two best was scored, and the final model is the better of it and
    # the best single checkpoint (here, still improving at step 120, the single one won:
    # dev CER 0.363 against 0.367 for the average).
    chosen = summary.extra["selected"]
    averaged, single = chosen["averaged_scores"], chosen["best_single"]["scores"]
    if averaged["dev_cer"] <= single["dev_cer"]:
        assert chosen["kind"] == "average" and sorted(chosen["steps"]) == sorted(best_two)
    else:
        assert chosen["kind"] == "best" and chosen["steps"] == [chosen["best_single"]["step"]]
    assert resolve_checkpoint(str(run_dir)) == str(run_dir / "final")
    assert summary.extra["checkpoint"] == str(run_dir / "final")
    # Scored again through `bigssl evaluate` (Ray Data, the audio re-featurized): the
    # selected model is no worse on dev than the best single checkpoint.
    scored_final = run_evaluate(
        str(run_dir), str(dev), str(asr["root"] / "eval-final"), EvaluateConfig.load(None, POOL)
    )
    assert scored_final.extra["cer"] <= single["dev_cer"] + 1e-9, (scored_final.extra, single)
    assert scored_final.extra["cer"] == pytest.approx(chosen["scores"]["dev_cer"], abs=1e-9)


def test_evaluate_reaches_bound_and_sums_its_utterance_rows(asr):
    out = asr["root"] / "eval"
    summary = run_evaluate(
        asr["teacher"],
        str(asr["splits"] / "test.parquet"),
        str(out),
        EvaluateConfig.load(None, POOL),
    )
    table = pa.concat_tables(
        [pq.read_table(f) for f in sorted((out / "utterances").glob("*.parquet"))]
    )
    schemas.validate(table, "utterance_scores")
    test_ids = pq.read_table(asr["splits"] / "test.parquet").column("id").to_pylist()
    assert sorted(table.column("id").to_pylist()) == sorted(test_ids)
    rows = table.to_pylist()
    # Each replica's row holds its own utterance's counts (tests/unit/test_wer.py checks
    # those against hand-worked values), and the summary is their corpus sum, not a mean.
    for row in rows:
        own = utterance_errors(row["reference"], row["hypothesis"])
        assert {k: row[k] for k in COUNTS} == {k: own[k] for k in COUNTS}, row
    errors, words = sum(r["errors"] for r in rows), sum(r["words"] for r in rows)
    assert summary.extra["wer"] == pytest.approx(errors / words)
    assert summary.extra["cer"] == pytest.approx(aggregate(rows)["cer"])
    assert (summary.extra["words"], summary.used) == (words, len(rows))
    assert all(r["reference"] == normalize(r["reference"]) for r in rows)
    # Measured: 150 steps on 30 % of 0.3 h of TTS speech, 1 worker: CER 0.41-0.45, WER 0.85-0.9.
    assert summary.extra["cer"] < 0.6, summary.to_dict()
    assert summary.extra["wer"] < 1.0, summary.to_dict()


def test_pretrained_init_beats_scratch_on_the_smallest_budget(asr):
    """The paper's claim at toy scale: BEST-RQ on the unlabeled pool, then CTC on the
    10 % budget (42 utterances, 97 s of speech); the pre-trained init has the lower
    CER after the same fine-tuning steps, same data, same seed."""
    root, splits = asr["root"], asr["splits"]
    single = ["scaling.num_workers=1", "scaling.cpus_per_worker=1", "scaling.threads_per_worker=2"]
    pretrain_cfg = PretrainConfig.load(
        None,
        [
            *single,
            "scaling.strategy=ddp",
            f"features={asr['features']}",
            f"manifest={splits / 'unlabeled.parquet'}",
            "preset=tiny",
            "model.objective=bestrq",
            # 8192 codes (the paper's) made the init worse than scratch at this size
            # (0.27 h seen 33 times); 128-512 codes helped. Measured in plain loops.
            "model.bestrq.codebook_size=512",
            "optim.peak_lr=1e-3",
            "optim.warmup_steps=50",
            "bucket.max_frames=3000",
            "train.max_steps=300",
            "train.log_every=50",
            "train.checkpoint_every=300",
            "run_name=ssl",
        ],
    )
    pretrained = run_pretrain(pretrain_cfg, str(root / "ssl-runs"))
    assert pretrained.extra["steps"] == 300

    cer = {}
    for name, init in (("scratch", ""), ("ssl", pretrained.extra["checkpoint"])):
        cfg = FinetuneConfig.load(
            None,
            [
                *single,
                "scaling.strategy=ddp",
                "preset=tiny",
                f"features={asr['features']}",
                f"manifest={splits / 'labeled_10pct.parquet'}",
                f"tokenizer={root / 'tok' / 'tokenizer.model'}",
                f"init={init}",
                "optim.peak_lr=2e-3",  # the demo sweep's fine-tuning recipe
                "optim.warmup_steps=50",
                "head_lr=4e-3",
                "head_warmup_steps=25",
                "specaugment.freq_masks=2",
                "specaugment.time_masks=2",
                "bucket.max_frames=3000",
                "train.max_steps=50",
                "train.checkpoint_every=50",
                f"run_name=budget10-{name}",
            ],
        )
        tuned = run_finetune(cfg, str(root / "ssl-runs"))
        assert (tuned.extra["init"] != "scratch") == bool(init)
        scored = run_evaluate(
            tuned.extra["checkpoint"],
            str(splits / "test.parquet"),
            str(root / "ssl-eval" / name),
            EvaluateConfig.load(None, POOL),
        )
        cer[name] = scored.extra["cer"]
    # Measured here under Ray Train: scratch CER 0.889, pre-trained 0.763 (WER 0.997 both:
    # 50 steps on 97 s of speech spell letters, not yet words). In plain loops with other
    # batch orders: scratch 0.675, pre-trained 0.625-0.648 (codebooks 128-512, 300-600 steps).
    assert cer["ssl"] < cer["scratch"], cer


def test_rnnt_head_finetunes_and_evaluates_through_the_same_stages(asr):
    """head=rnnt behind the same interfaces: fine-tune from the CTC teacher's encoder,
    the checkpoint says its head, and `evaluate` decodes it with RNN-T greedy search."""
    root, splits = asr["root"], asr["splits"]
    cfg = FinetuneConfig.load(
        ROOT / "configs" / "finetune-tiny.yaml",
        [
            *FT,
            "head=rnnt",
            f"init={asr['teacher']}",
            f"features={asr['features']}",
            f"manifest={splits / 'labeled_30pct.parquet'}",
            f"tokenizer={root / 'tok' / 'tokenizer.model'}",
            "head_warmup_steps=10",
            "train.max_steps=60",
            "train.checkpoint_every=60",
            "run_name=rnnt",
        ],
    )
    tuned = run_finetune(cfg, str(root / "runs"))
    assert tuned.extra["head"] == "rnnt" and tuned.extra["steps"] == 60
    meta = json.loads((Path(tuned.extra["checkpoint"]) / "meta.json").read_text())
    assert meta["head"] == "rnnt" and meta["rnnt"]["ctc_weight"] == 0.3
    out = root / "rnnt-eval"
    summary = run_evaluate(
        tuned.extra["checkpoint"],
        str(splits / "test.parquet"),
        str(out),
        EvaluateConfig.load(None, POOL),
    )
    assert summary.extra["decoder"] == "rnnt-greedy"
    table = pa.concat_tables(
        [pq.read_table(f) for f in sorted((out / "utterances").glob("*.parquet"))]
    )
    schemas.validate(table, "utterance_scores")
    assert table.num_rows == pq.read_table(splits / "test.parquet").num_rows
    assert summary.extra["cer"] == pytest.approx(aggregate(table.to_pylist())["cer"])
    # Measured: CER 0.783, WER 0.932 after 60 steps (the CTC teacher: 0.441 after 150).
    # An untrained joiner emits nothing (CER 1.0); RNN-T learns slower than CTC here.
    assert summary.extra["cer"] < 0.9, summary.to_dict()


def _label_cli(teacher: str, manifest: str, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform"), "RAY_ADDRESS": ""}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bigssl.cli",
            "label",
            "--teacher",
            teacher,
            "--manifest",
            manifest,
            "--out",
            str(out),
            "--ray-address",
            "local",
            "pool.replicas=1",
            "pool.cpus_per_replica=0.5",
            *extra,
        ],
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_label_killed_half_way_resumes_without_duplicates(asr):
    out = asr["root"] / "labels"
    unlabeled = str(asr["splits"] / "unlabeled.parquet")
    proc = _label_cli(asr["teacher"], unlabeled, out)
    part = out / "teacher=teacher@150" / "generation=1"
    deadline = time.time() + 240
    try:
        while time.time() < deadline and len(list((part / "done").glob("*.json"))) < 2:
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = len(list((part / "done").glob("*.json")))
    shards = {r for r in pq.read_table(unlabeled).column("shard").to_pylist()}
    assert 2 <= done_before < len(shards), "the kill must land half-way"

    summary = run_label(asr["teacher"], str(out), LabelConfig.load(None, POOL), manifest=unlabeled)
    ledger = pa.concat_tables(
        [pq.read_table(f) for f in sorted((part / "ledger").glob("*.parquet"))]
    )
    schemas.validate(ledger, "pseudo_labels")
    ids = ledger.column("id").to_pylist()
    assert len(ids) == len(set(ids)), "one row per (utterance, teacher, generation)"
    assert set(ids) == set(pq.read_table(unlabeled).column("id").to_pylist())
    assert summary.read == summary.used + summary.quarantined == len(ids)
    for row in ledger.to_pylist():
        assert row["kept"] == (row["reason"] is None)
        if row["num_tokens"] == 0:
            assert row["reason"] == "blank-only hypothesis"

    # Another generation writes beside the first, never over it.
    again = run_label(
        asr["teacher"],
        str(out),
        LabelConfig.load(None, [*POOL, "generation=2", "filter.keep_top_fraction=0.5"]),
        manifest=unlabeled,
    )
    assert (out / "teacher=teacher@150" / "generation=2" / "ledger").is_dir()
    assert len(list((part / "ledger").glob("*.parquet"))) == len(shards)
    assert again.extra["kept"] <= 0.5 * again.used + 1


def test_one_noisy_student_generation_does_not_raise_wer(asr):
    cfg = StudentConfig.load(
        None,
        [
            f"teacher={asr['teacher']}",
            f"features={asr['features']}",
            f"manifest={asr['splits'] / 'labeled_30pct.parquet'}",
            f"unlabeled={asr['splits'] / 'unlabeled.parquet'}",
            f"init={asr['teacher']}",  # the student continues from its teacher's encoder
            f"eval_manifest={asr['splits'] / 'test.parquet'}",
            "generations=1",
            *[f"label.{p}" for p in POOL],
            *[f"evaluate.{p}" for p in POOL],
            # Measured on this corpus: the most confident 30 % of pseudo-labels, mixed 1:1
            # with the labeled side, at the teacher's end-of-schedule learning rate.
            "label.filter.keep_top_fraction=0.3",
            "finetune.pseudo_ratio=1",
            "finetune.preset=tiny",
            *[f"finetune.{o}" for o in FT],
            "finetune.optim.peak_lr=1e-3",
            "finetune.head_lr=1e-3",
            "finetune.optim.warmup_steps=20",
            "finetune.head_warmup_steps=20",
            "finetune.train.max_steps=150",
            "finetune.train.checkpoint_every=150",
            "finetune.train.log_every=1",  # every step's row: the first epoch's end is one
        ],
    )
    out = asr["root"] / "student"
    summary = run_student(cfg, str(out))
    teacher, student = summary.extra["generations"]
    # The student trained on the teacher's kept pseudo-labels, not only on the labeled
    # budget: the WER bound at the end would also pass a student that ignored them (it
    # continues from the teacher's encoder on the same labeled rows). Its checkpoint's
    # vocabulary is its training transcripts': the labeled ones and the ledger's kept texts.
    labeled = pq.read_table(asr["splits"] / "labeled_30pct.parquet").to_pylist()
    labeled_ids = {r["id"] for r in labeled}
    ledger = pa.concat_tables(
        [pq.read_table(f) for f in sorted(out.glob("labels/teacher=*/generation=1/ledger/*"))]
    ).to_pylist()
    pseudo = {r["id"]: r["text"] for r in ledger if r["kept"] and r["id"] not in labeled_ids}
    assert student["pseudo_labeled"] > 0 and summary.extra["pseudo_rows"] == len(pseudo) > 0
    labeled_words = {w for r in labeled if r["text"] for w in r["text"].split()}
    pseudo_words = {w for t in pseudo.values() for w in t.split()}
    assert pseudo_words - labeled_words  # the check below can tell the two apart
    words = (Path(summary.extra["checkpoint"]) / "words.txt").read_text().split()
    assert set(words) == labeled_words | pseudo_words
    # And its workers trained every selected row of its first epoch, pseudo-labeled ones
    # included, each as often as the mix says (one worker: the whole epoch is trained).
    repeat_labeled, repeat_pseudo = summary.extra["repeats"]
    epoch_rows = summary.extra["labeled_rows"] * repeat_labeled + len(pseudo) * repeat_pseudo
    metrics = pq.read_table(out / "student-gen1" / "metrics.parquet").to_pylist()
    assert max(r["epoch"] for r in metrics) >= 1, "the first epoch did not end"
    assert max(r["epoch_rows"] for r in metrics if r["epoch"] == 0) == epoch_rows
    # Measured: teacher and student both on the 30 % budget, the student plus the
    # pseudo-labels -- see the issue note for the figures.
    assert student["wer"] <= teacher["wer"] + 0.05, summary.extra["generations"]


def test_selection_overlays_pseudo_text_and_repeats_the_scarce_side():
    from bigssl.stages.labeled_rows import mix_repeats
    from bigssl.stages.training_data import _keep_selected

    batch = pa.table(
        {
            "id": pa.array(["a", "b", "c", "d"], pa.string()),
            "text": pa.array(["true a", None, None, None], pa.string()),
        }
    )
    out = _keep_selected(
        batch, pa.array(["a", "b", "c"]), pa.array(["b", "c"]), pa.array(["pb", "pc"]), 3, 1
    )
    assert out.to_pylist() == [
        {"id": "a", "text": "true a"},
        {"id": "a#1", "text": "true a"},
        {"id": "a#2", "text": "true a"},
        {"id": "b", "text": "pb"},
        {"id": "c", "text": "pc"},
    ]
    assert mix_repeats(10, 900, 9.0) == (10, 1)
    assert mix_repeats(100, 90, 9.0) == (1, 10)
    assert mix_repeats(10, 0, 9.0) == (1, 1)


def test_manifest_ids_missing_from_their_shard_are_quarantined_by_evaluate(asr, tmp_path):
    test = pq.read_table(asr["splits"] / "test.parquet")
    phantom = test.slice(0, 1).to_pylist()[0] | {"id": "not-in-any-shard"}
    # beside test.parquet: a manifest's shard paths are relative to its folder
    manifest = asr["splits"] / "test-with-phantom.parquet"
    pq.write_table(pa.concat_tables([test, pa.Table.from_pylist([phantom], test.schema)]), manifest)
    try:
        summary = run_evaluate(
            asr["teacher"], str(manifest), str(tmp_path / "eval"), EvaluateConfig.load(None, POOL)
        )
    finally:
        manifest.unlink()
    assert summary.read == test.num_rows + 1
    assert (summary.used, summary.quarantined) == (test.num_rows, 1)
    rows = pq.read_table(tmp_path / "eval" / "quarantine").to_pylist()
    assert [r["id"] for r in rows] == ["not-in-any-shard"]
    assert "not in shard" in rows[0]["reason"]


def test_evaluate_rerun_with_other_decode_settings_redoes_the_shards(asr, tmp_path):
    out = tmp_path / "eval"
    test = str(asr["splits"] / "test.parquet")

    def markers():
        return {p.name: json.loads(p.read_text()) for p in sorted((out / "done").glob("*.json"))}

    run_evaluate(asr["teacher"], test, str(out), EvaluateConfig.load(None, POOL))
    first = markers()
    assert first and all(m["decode"]["beam_size"] == 16 for m in first.values())
    run_evaluate(asr["teacher"], test, str(out), EvaluateConfig.load(None, POOL))
    assert markers() == first  # same checkpoint, same settings: nothing redone
    run_evaluate(
        asr["teacher"], test, str(out), EvaluateConfig.load(None, [*POOL, "decode.beam_size=4"])
    )
    second = markers()
    assert second.keys() == first.keys()
    assert all(m["decode"]["beam_size"] == 4 for m in second.values()), second
    assert all(second[k]["wall_s"] != first[k]["wall_s"] for k in first)  # each shard redone


def test_lexicon_of_the_training_words_keeps_hypotheses_in_vocabulary(asr, tmp_path):
    """Fine-tuning writes its training transcripts' words into the checkpoint; evaluate's
    ``decode.lexicon=train`` then emits only those (the greedy teacher misspells)."""
    labeled = pq.read_table(asr["splits"] / "labeled_30pct.parquet").column("text").to_pylist()
    vocabulary = {w for t in labeled if t for w in t.split()}
    words = (Path(asr["teacher"]) / "words.txt").read_text().split("\n")
    assert set(words) - {""} == vocabulary and words[-1] == ""

    def hypotheses(*decode: str) -> tuple[list[str], float]:
        out = tmp_path / ("-".join(decode) or "greedy")
        test = str(asr["splits"] / "test.parquet")
        summary = run_evaluate(
            asr["teacher"], test, str(out), EvaluateConfig.load(None, [*POOL, *decode])
        )
        table = pa.concat_tables([pq.read_table(f) for f in (out / "utterances").glob("*.parquet")])
        return table.column("hypothesis").to_pylist(), summary.extra["wer"]

    greedy, greedy_wer = hypotheses()
    assert any(set(h.split()) - vocabulary for h in greedy)  # misspelt words
    lexicon, lexicon_wer = hypotheses("decode.decoder=beam", "decode.lexicon=train")
    assert all(set(h.split()) <= vocabulary for h in lexicon)
    assert lexicon_wer < greedy_wer, (lexicon_wer, greedy_wer)
