"""The pieces converged recipes are built from, in plain loops: schedules, speed perturbation,
dev scoring, checkpoint retention and averaging."""

import math

import numpy as np
import pytest
import torch

from bigssl.audio.perturb import mel_warp_positions, speed_perturb
from bigssl.config import ConfigError
from bigssl.training import selection as select
from bigssl.training.optim import OptimConfig, build_optimizer, build_scheduler
from bigssl.training.validation import rates, score_batches


def _lrs(cfg: OptimConfig, total: int, warmups: list[int]) -> list[float]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in warmups]
    optimizer = build_optimizer([{"params": [p]} for p in params], cfg)
    scheduler = build_scheduler(optimizer, warmups, cfg, total)
    out = []
    for _ in range(total):
        out.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return out


def test_tri_stage_warms_holds_and_decays_to_its_final_scale():
    cfg = OptimConfig(
        peak_lr=1e-3,
        schedule="tri_stage",
        warmup_fraction=0.1,
        hold_fraction=0.4,
        final_lr_scale=0.05,
    )
    lrs = _lrs(cfg, 200, [999, 5])  # fractions replace both groups' warm-ups
    assert lrs[0] == pytest.approx(1e-3 / 20)
    assert lrs[19] == pytest.approx(1e-3) and lrs[99] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[100:], lrs[101:], strict=False))
    assert lrs[-1] == pytest.approx(1e-3 * math.exp(math.log(0.05) * 99 / 100))
    # The Transformer schedule takes a warm-up fraction too.
    transformer = _lrs(OptimConfig(peak_lr=1e-3, warmup_fraction=0.25), 100, [1])
    assert max(transformer) == pytest.approx(1e-3) and transformer.index(max(transformer)) == 25


def test_fraction_schedules_need_the_run_length_and_bad_fractions_name_the_field():
    params = [torch.nn.Parameter(torch.zeros(1))]
    cfg = OptimConfig(schedule="tri_stage")
    with pytest.raises(ValueError, match="total_steps"):
        build_scheduler(build_optimizer([{"params": params}], cfg), [10], cfg, 0)
    with pytest.raises(ConfigError) as err:
        OptimConfig(warmup_fraction=0.5, hold_fraction=0.6)
    assert err.value.field == "hold_fraction"


def test_speed_perturbation_rescales_time_and_moves_energy_up_the_mel_axis():
    feats = np.zeros((2, 100, 80), np.float32)
    feats[0, :100, 30] = 1.0  # a steady "tone" in bin 30
    feats[1, :60, 30] = 1.0
    lengths = np.array([100, 60])
    same, same_lengths = speed_perturb(feats, lengths, 1.0)
    assert same is feats and same_lengths is lengths
    fast, fast_lengths = speed_perturb(feats, lengths, 1.1)
    assert fast.shape == (2, math.ceil(100 / 1.1), 80)
    assert fast_lengths.tolist() == [91, 55]
    assert not fast[1, 55:].any()  # padding stays zero
    assert int(fast[0, 40].argmax()) > 30  # played faster, the tone is higher
    slow, slow_lengths = speed_perturb(feats, lengths, 0.9)
    assert slow_lengths.tolist() == [111, 67] and int(slow[0, 40].argmax()) < 30
    positions = mel_warp_positions(80, 1.1)
    assert np.all(np.diff(positions) >= 0) and positions[30] < 30


class _Oracle(torch.nn.Module):
    """Emits given token sequences as CTC log-probs (one token per frame, blanks between)."""

    def __init__(self, sequences: list[list[int]], vocab: int = 6):
        super().__init__()
        self.sequences, self.vocab = sequences, vocab
        self.calls = 0

    def forward(self, feats, lengths):
        batch = feats.shape[0]
        frames = 2 * max(len(s) for s in self.sequences) + 1
        logits = torch.full((batch, frames, self.vocab), -10.0)
        logits[:, :, 0] = 0.0
        for b in range(batch):
            for i, token in enumerate(self.sequences[self.calls * batch + b]):
                logits[b, 2 * i + 1, token], logits[b, 2 * i + 1, 0] = 0.0, -10.0
        self.calls += 1
        return torch.log_softmax(logits, -1), torch.full((batch,), frames)


def _batch(texts: list[str]) -> dict:
    return {
        "feats": np.zeros((len(texts), 8, 4), np.float32),
        "lengths": np.full(len(texts), 8),
        "text": np.array(texts, dtype=object),
        "targets": np.ones((len(texts), 3), np.int64),
        "target_lengths": np.full(len(texts), 3),
    }


def test_dev_scoring_counts_words_and_characters_and_skips_uncounted_batches():
    letters = " abcd"  # token t -> letters[t]
    model = _Oracle([[1, 2], [3, 1, 4], [1, 1, 1]])  # "ab", "c a d" wrongly as "cad", filler
    plan = [(_batch(["ab", "c a d"]), True), (_batch(["zzz"]), False)]
    counts = score_batches(model, plan, lambda ids: "".join(letters[i] for i in ids), "cpu")
    assert model.calls == 2  # the uncounted batch still ran (FSDP ranks stay in step)
    assert counts["utterances"] == 2 and counts["words"] == 4
    assert counts["errors"] == 3  # "cad" for "c a d": 1 substitution + 2 deletions
    out = rates(counts)
    assert out["dev_wer"] == pytest.approx(3 / 4)
    assert out["dev_cer"] == pytest.approx(counts["char_errors"] / counts["chars"])
    assert out["dev_loss"] > 0


def _fake_checkpoint(run_dir, step: int, value: float, score: float | None) -> None:
    model = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(model.weight, value)
    torch.nn.init.constant_(model.bias, value)
    select.save_model(str(run_dir / f"checkpoint_{step:09d}"), model, {"step": step}, {})
    (run_dir / f"checkpoint_{step:09d}" / "COMMITTED").write_text("")
    if score is not None:
        select.write_scores(str(run_dir / f"checkpoint_{step:09d}"), step, {"dev_wer": score})


def test_retention_keeps_the_k_best_and_the_newest_and_averaging_is_the_mean(tmp_path):
    scores = {10: 0.9, 20: 0.5, 30: 0.3, 40: 0.6, 50: 0.4, 60: 0.7}
    for step, score in scores.items():
        _fake_checkpoint(tmp_path, step, float(step), score)
    deleted = select.retain(str(tmp_path), keep_last=1, metric="dev_wer", keep_best=2)
    left = [step for step, _ in select.checkpoints(str(tmp_path))]
    assert left == [30, 50, 60] and len(deleted) == 3
    history = select.scored_checkpoints(str(tmp_path))
    assert [s.step for s in select.best(history, "dev_wer", 2)] == [30, 50]
    assert select.evaluations_since_best(history, "dev_wer") == 2  # 50 and 60 came after 30
    model = torch.nn.Linear(2, 1)
    averaged = select.average_weights(
        model, [str(tmp_path / f"checkpoint_{s:09d}") for s in (30, 50)]
    )
    assert torch.allclose(averaged["weight"], torch.full((1, 2), 40.0))
    # keep_last=0 keeps everything; an unscored run keeps only its newest.
    assert select.retain(str(tmp_path), keep_last=0) == []
    select.retain(str(tmp_path), keep_last=1)
    assert [step for step, _ in select.checkpoints(str(tmp_path))] == [60]


def test_metrics_log_keeps_columns_that_only_some_rows_have(tmp_path):
    """Dev scores come every eval_every steps only; the first row must not fix the columns."""
    import pyarrow.parquet as pq

    from bigssl.training.metrics import MetricsLog

    log = MetricsLog(str(tmp_path), tensorboard=False)
    log.log(10, {"loss": 2.0})
    log.log(20, {"loss": 1.5, "dev_wer": 0.5})
    log.close()
    rows = pq.read_table(tmp_path / "metrics.parquet").to_pylist()
    assert rows == [
        {"step": 10, "loss": 2.0, "dev_wer": None},
        {"step": 20, "loss": 1.5, "dev_wer": 0.5},
    ]


def _ctc_step(precision: str) -> tuple[float, list[torch.dtype]]:
    from bigssl.models.ctc import build_ctc_model
    from bigssl.models.presets import tiny
    from bigssl.training.step import Stepper

    torch.manual_seed(0)
    model = build_ctc_model(tiny(), 12)
    seen: list[torch.dtype] = []
    model.head.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    cfg = OptimConfig(peak_lr=1e-3, warmup_steps=1, precision=precision)
    optimizer = build_optimizer([{"params": list(model.parameters())}], cfg)
    stepper = Stepper(
        model,
        optimizer,
        build_scheduler(optimizer, [1], cfg),
        cfg,
        torch.device("cpu"),
        extra_keys=("targets", "target_lengths"),
    )
    rng = np.random.default_rng(0)
    batch = {
        "feats": rng.standard_normal((3, 120, 80)).astype(np.float32),
        "lengths": np.array([120, 100, 80]),
        "targets": rng.integers(1, 12, (3, 6)),
        "target_lengths": np.array([6, 5, 4]),
    }
    return stepper.step([batch])["loss"], seen


def test_bf16_precision_autocasts_the_cpu_forward_and_keeps_the_loss():
    loss32, dtypes32 = _ctc_step("auto")  # auto on CPU: float32
    loss16, dtypes16 = _ctc_step("bf16")
    assert dtypes32 == [torch.float32] and dtypes16 == [torch.bfloat16]
    assert math.isfinite(loss16) and loss16 == pytest.approx(loss32, rel=0.02)
    with pytest.raises(ConfigError, match="precision"):
        OptimConfig.from_dict({"precision": "fp16"})


def test_mask_dropout_drops_at_rate_p_scales_the_rest_and_is_the_identity_in_eval():
    from bigssl.models.conformer import ConformerEncoder, MaskDropout
    from bigssl.models.presets import tiny

    torch.manual_seed(0)
    drop = MaskDropout(0.25)
    x = torch.ones(200, 500, requires_grad=True)
    y = drop(x)
    zeros = float((y == 0).float().mean())
    assert zeros == pytest.approx(0.25, abs=0.01)
    assert torch.allclose(y[y != 0], torch.full_like(y[y != 0], 1 / 0.75))
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / 0.75)  # the same mask in the backward
    drop.eval()
    assert torch.equal(drop(x), x)
    encoder = ConformerEncoder(tiny())
    plain = [m for m in encoder.modules() if type(m) is torch.nn.Dropout]
    assert not plain and any(isinstance(m, MaskDropout) for m in encoder.modules())


def test_held_out_ssl_loss_sees_the_same_masks_every_scoring_and_weights_by_masked_frames():
    from bigssl.models import SSLConfig, build_ssl_model_from_config
    from bigssl.training.validation import score_ssl_batches, ssl_rates

    cfg = SSLConfig.from_dict(
        {
            "objective": "bestrq",
            "encoder": {
                "d_model": 32,
                "num_layers": 1,
                "num_heads": 2,
                "ffn_dim": 64,
                "subsampling_channels": 8,
            },
        }
    )
    model = build_ssl_model_from_config(cfg)
    torch.manual_seed(0)
    batches = [
        {"feats": torch.randn(2, 120, 80).numpy(), "lengths": np.array([120, 90])},
        {"feats": torch.randn(1, 200, 80).numpy(), "lengths": np.array([200])},
    ]
    plan = [(b, True) for b in batches] + [(batches[0], False)]
    model.train()
    first = score_ssl_batches(model, plan, torch.device("cpu"))
    torch.rand(7)  # the global RNG moved on: scoring must not depend on it
    second = score_ssl_batches(model, plan, torch.device("cpu"))
    assert first == second  # fixed masks: the curve moves only with the model
    assert model.training  # put back as it was
    assert first["utterances"] == 3 and first["masked"] > 0  # the uncounted batch is left out
    out = ssl_rates(first)
    assert out["dev_loss"] == pytest.approx(first["loss_sum"] / first["masked"])
    assert 0 <= out["dev_accuracy"] <= 1


def test_pretrain_config_scores_only_dev_loss():
    from bigssl.stages.pretrain import PretrainConfig

    with pytest.raises(ConfigError, match="select.metric"):
        PretrainConfig.load(None, ["select.metric=dev_wer"])
    assert PretrainConfig.load(None, []).select.metric == "dev_loss"


def test_resuming_a_run_with_another_config_names_the_field_unless_it_only_runs_longer(
    tmp_path,
):
    from bigssl.stages.finetune import FinetuneConfig
    from bigssl.stages.launch import check_resume

    saved = FinetuneConfig.load(None, ["features=f", "manifest=m", "tokenizer=t"])
    model = torch.nn.Linear(2, 1)
    folder = tmp_path / "checkpoint_000000010"
    select.save_model(str(folder), model, {"step": 10, "config": saved.to_dict()}, {})
    (folder / "COMMITTED").write_text("")

    def resume(*overrides: str) -> None:
        cfg = FinetuneConfig.load(None, ["features=f", "manifest=m", "tokenizer=t", *overrides])
        check_resume(str(tmp_path), "ft", cfg.to_dict())

    resume()  # the same config
    resume("train.max_steps=900", "scaling.num_workers=1", "train.log_every=3")  # runs longer
    with pytest.raises(ConfigError) as err:
        resume("optim.peak_lr=1e-2", "encoder.dropout=0.3")
    assert err.value.field == "encoder.dropout" and "optim.peak_lr" in str(err.value)
    with pytest.raises(ConfigError, match="manifest"):
        resume("manifest=other")
    check_resume(str(tmp_path / "fresh"), "new", saved.to_dict())  # nothing to resume
