"""RNN-T head: loss, greedy decoding and its confidences, config checks (no Ray)."""

from __future__ import annotations

import pytest
import torch
from torchaudio.functional import rnnt_loss

from bigssl.config import ConfigError
from bigssl.decoding.rnnt import rnnt_greedy_decode
from bigssl.models import ConformerConfig, RNNTConfig, build_asr_model, build_rnnt_model
from bigssl.models.ctc import CTCModel
from bigssl.models.rnnt import RNNTModel

torch.set_num_threads(1)

SMALL = ConformerConfig(
    d_model=32, num_layers=1, num_heads=2, ffn_dim=64, subsampling_channels=16, dropout=0.0
)


def small_rnnt(vocab: int = 8, **rnnt) -> RNNTModel:
    torch.manual_seed(0)
    cfg = RNNTConfig(**{"pred_dim": 32, "joint_dim": 32, "dropout": 0.0, **rnnt})
    return build_rnnt_model(SMALL, vocab, cfg)


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(3, 64, 80, generator=generator)
    lengths = torch.tensor([64, 48, 32])
    targets = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0], [2, 2, 0, 0]])
    return features, lengths, targets, torch.tensor([4, 3, 2])


def trained(steps: int) -> RNNTModel:
    """Adam on the fixed batch: after ~60 steps some tokens are learnt, after ~80 all."""
    model = small_rnnt()
    features, lengths, targets, target_lengths = batch()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = model(features, lengths, targets, target_lengths)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def path_nll(model: RNNTModel, features, lengths, tokens: list[int]) -> float:
    """-log P(tokens | audio) summed over all alignments (torchaudio's loss, one utterance)."""
    with torch.no_grad():
        encoded, out_lengths = model.encode(features, lengths)
        encoded = encoded[:, : int(out_lengths.max())]
        previous = torch.tensor([[0, *tokens]])
        predicted, _ = model.head.predictor(previous)
        logits = model.head.joiner(encoded, predicted).float()
        return float(
            rnnt_loss(
                logits,
                torch.tensor([tokens], dtype=torch.int32),
                out_lengths.int(),
                torch.tensor([len(tokens)], dtype=torch.int32),
                blank=0,
                reduction="sum",
            )
        )


def test_loss_is_finite_and_reaches_every_part() -> None:
    model = small_rnnt()
    out = model(*batch())
    assert set(out) == {"loss", "rnnt_loss", "ctc_loss"}
    assert torch.isfinite(out["loss"]) and out["loss"].item() > 0
    expected = 0.7 * out["rnnt_loss"] + 0.3 * out["ctc_loss"]
    torch.testing.assert_close(out["loss"], expected)
    out["loss"].backward()
    for name in ("encoder.", "head.predictor", "head.joiner", "head.ctc"):
        grads = [p.grad for n, p in model.named_parameters() if n.startswith(name)]
        assert grads and all(g is not None for g in grads), name


def test_pure_rnnt_has_no_ctc_layer() -> None:
    model = small_rnnt(ctc_weight=0.0)
    assert model.head.ctc is None
    out = model(*batch())
    assert set(out) == {"loss", "rnnt_loss"}


def test_loss_ignores_padding_beyond_the_longest_lengths() -> None:
    """Extra padded frames or target columns do not change the loss."""
    model = small_rnnt().eval()
    features, lengths, targets, target_lengths = batch()
    base = model(features, lengths, targets, target_lengths)["loss"]
    padded = torch.nn.functional.pad(features, (0, 0, 0, 16))
    wide = torch.nn.functional.pad(targets, (0, 3))
    torch.testing.assert_close(model(padded, lengths, wide, target_lengths)["loss"], base)


def test_greedy_path_is_one_alignment_of_its_hypothesis() -> None:
    """The greedy path's log-prob can never exceed log P(hypothesis), the sum over all
    its alignments; decoding the batch equals decoding each utterance alone."""
    model = trained(60)  # half-trained: utterances emit different numbers of tokens
    features, lengths, _, _ = batch()
    hyps = rnnt_greedy_decode(model, features, lengths)
    assert any(hyp.tokens for hyp in hyps)
    assert [h.frames for h in hyps] == model.encoder.output_lengths(lengths).tolist()
    for b, hyp in enumerate(hyps):
        alone = rnnt_greedy_decode(model, features[b : b + 1, : lengths[b]], lengths[b : b + 1])[0]
        assert alone.tokens == hyp.tokens
        assert alone.logprob == pytest.approx(hyp.logprob, abs=1e-4)
        assert 0 not in hyp.tokens
        assert hyp.avg_logprob == pytest.approx(hyp.logprob / hyp.frames)
        assert 0.0 < hyp.mean_max_prob <= 1.0
        if hyp.tokens:
            nll = path_nll(model, features[b : b + 1], lengths[b : b + 1], hyp.tokens)
            assert hyp.logprob <= -nll + 1e-4


def test_symbols_per_frame_are_capped() -> None:
    """A joiner that never wants the blank still ends: max_symbols_per_frame each frame."""
    model = small_rnnt(max_symbols_per_frame=3).eval()
    with torch.no_grad():
        model.head.joiner.out.bias[0] = -1e4
    features, lengths, _, _ = batch()
    hyps = rnnt_greedy_decode(model, features, lengths)
    assert [len(h.tokens) for h in hyps] == [3 * h.frames for h in hyps]


def test_overfits_and_decodes_the_batch() -> None:
    """Training and greedy decoding agree: fixed utterances are learnt and read back,
    a repeated token included."""
    features, lengths, _, _ = batch()
    hyps = rnnt_greedy_decode(trained(150), features, lengths)
    assert [h.tokens for h in hyps] == [[1, 2, 3, 4], [5, 6, 7], [2, 2]]
    assert all(h.mean_max_prob > 0.5 for h in hyps)


def test_build_asr_model_dispatches_and_checks() -> None:
    assert isinstance(build_asr_model(SMALL, 8, "ctc"), CTCModel)
    assert isinstance(build_asr_model(SMALL, 8, "rnnt"), RNNTModel)
    with pytest.raises(ValueError, match="head"):
        build_asr_model(SMALL, 8, "las")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "field, value", [("pred_dim", 0), ("ctc_weight", 1.0), ("max_symbols_per_frame", 0)]
)
def test_bad_rnnt_configs_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        RNNTConfig.from_dict({field: value})
