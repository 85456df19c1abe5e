"""Model construction at scale: meta-device build + ``init_weights`` equals eager init, FSDP2's
meta -> fully_shard -> to_empty -> init_weights path, and per-block activation checkpointing
(CPU; FSDP2 over gloo at world size 1 in this process, and on two spawned ranks, where a
shard is not the whole tensor)."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from collections.abc import Callable

import psutil
import pytest
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn

from bigssl.config import ConfigError
from bigssl.models import (
    BestRQConfig,
    ConformerConfig,
    SSLConfig,
    build_ctc_model,
    build_rnnt_model,
    build_ssl_model_from_config,
    count_parameters,
)
from bigssl.models.initialize import init_weights
from bigssl.models.parallelize import build_parallel
from bigssl.models.presets import g, tiny
from bigssl.training.checkpoint import load_encoder_weights

torch.set_num_threads(1)  # tiny models on a shared 2-core box (see test_models.py)

VOCAB = 30
BESTRQ_SMALL = BestRQConfig(codebook_size=64)

FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "ctc": lambda: build_ctc_model(tiny(), VOCAB),
    "rnnt": lambda: build_rnnt_model(tiny(), VOCAB),
    "wav2vec2": lambda: build_ssl_model_from_config(SSLConfig(encoder=tiny())),
    "bestrq": lambda: build_ssl_model_from_config(
        SSLConfig(objective="bestrq", encoder=tiny(), bestrq=BESTRQ_SMALL)
    ),
}


def eager(factory: Callable[[], nn.Module], seed: int) -> tuple[nn.Module, torch.Tensor]:
    """Today's construction: seed the default generator, build on the CPU."""
    torch.manual_seed(seed)
    model = factory()
    return model, torch.get_rng_state()


def on_meta(factory: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return factory()


def poison(model: nn.Module) -> None:
    """Fill every tensor with values no initialiser gives, so one left alone shows."""
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.fill_(float("nan") if tensor.is_floating_point() else -7)


def assert_same_tensors(expected: nn.Module, actual: nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert want.keys() == got.keys()
    for name, tensor in want.items():
        value = got[name].full_tensor() if hasattr(got[name], "full_tensor") else got[name]
        assert torch.equal(tensor, value), name


def batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(3, 200, 80, generator=generator)
    lengths = torch.tensor([200, 170, 120])
    targets = torch.randint(1, VOCAB, (3, 8), generator=generator)
    return features, lengths, targets, torch.tensor([8, 6, 5])


# --- meta-device construction ------------------------------------------------------------


def test_g_preset_on_meta_allocates_no_parameter_memory() -> None:
    process = psutil.Process()
    before = process.memory_info().rss
    model = on_meta(lambda: build_ssl_model_from_config(SSLConfig(encoder=g())))
    grown = process.memory_info().rss - before
    assert count_parameters(model) > 7.5e9  # 31 GB in fp32, were it allocated
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    assert grown < 200e6, f"RSS grew by {grown / 1e6:.0f} MB"


@pytest.mark.parametrize("name", list(FACTORIES))
def test_meta_build_then_init_weights_equals_eager_bit_for_bit(name: str) -> None:
    reference, rng_after = eager(FACTORIES[name], seed=11)
    model = on_meta(FACTORIES[name])
    model.to_empty(device="cpu")
    poison(model)
    torch.manual_seed(11)
    model.init_weights()
    assert_same_tensors(reference, model)
    # Same draws in the same order: the run's later randomness does not see the difference.
    assert torch.equal(torch.get_rng_state(), rng_after)


def test_generator_seeds_init_weights_and_another_seed_differs() -> None:
    reference, _ = eager(FACTORIES["ctc"], seed=5)
    model = on_meta(FACTORIES["ctc"])
    model.to_empty(device="cpu")
    state = torch.get_rng_state()
    model.init_weights(torch.Generator().manual_seed(5))
    assert torch.equal(torch.get_rng_state(), state)  # the default generator is left alone
    assert_same_tensors(reference, model)
    model.init_weights(torch.Generator().manual_seed(6))
    weights = model.encoder.layers[0].ffn1.sequential[1].weight
    assert not torch.equal(weights, reference.encoder.layers[0].ffn1.sequential[1].weight)
    with pytest.raises(AssertionError):
        assert_same_tensors(reference, model)


def test_submodules_initialise_alone_like_their_eager_construction() -> None:
    reference, _ = eager(FACTORIES["wav2vec2"], seed=3)
    model = on_meta(FACTORIES["wav2vec2"])
    model.to_empty(device="cpu")
    # The quantizer is built after the encoder: skip the encoder's draws, then init it alone.
    torch.manual_seed(3)
    model.encoder.init_weights()
    model.quantizer.init_weights()
    assert torch.equal(model.quantizer.codevectors, reference.quantizer.codevectors)


def test_init_weights_refuses_a_module_it_cannot_fill() -> None:
    class Bare(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.ones(3))

    with pytest.raises(TypeError, match="Bare holds scale"):
        init_weights(nn.Sequential(nn.Linear(2, 2), Bare()))


# --- FSDP2: meta -> fully_shard -> to_empty -> init_weights ------------------------------------


@pytest.fixture(scope="module")
def process_group(tmp_path_factory):
    """A one-rank gloo group, so ``build_parallel`` takes its FSDP path in this process."""
    store = dist.FileStore(str(tmp_path_factory.mktemp("pg") / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_sharded_build_equals_eager(process_group) -> None:
    reference, rng_after = eager(FACTORIES["ctc"], seed=2)
    torch.manual_seed(2)
    model = build_parallel(FACTORIES["ctc"], "fsdp", torch.device("cpu"))
    assert type(model).__name__.startswith("FSDP")
    assert all(hasattr(p, "full_tensor") for p in model.parameters())
    assert_same_tensors(reference, model)
    assert torch.equal(torch.get_rng_state(), rng_after)


def test_sharded_build_loads_pretrained_encoder_after_init(process_group, tmp_path) -> None:
    pretrained, _ = eager(FACTORIES["wav2vec2"], seed=8)
    dcp.save({"model": pretrained.state_dict()}, checkpoint_id=str(tmp_path))
    reference, _ = eager(FACTORIES["ctc"], seed=9)
    torch.manual_seed(9)
    model = build_parallel(
        FACTORIES["ctc"],
        "fsdp",
        torch.device("cpu"),
        after_init=lambda m: load_encoder_weights(m.encoder, tmp_path),
    )
    assert_same_tensors(pretrained.encoder, model.encoder)
    assert torch.equal(model.head.weight.full_tensor(), reference.head.weight)


def _two_rank_worker(rank: int, store: str, pretrained: str) -> None:
    """One of two gloo ranks: sharded builds equal the eager build, whole tensors gathered."""
    import faulthandler

    faulthandler.dump_traceback_later(60, exit=True)  # a mismatched collective hangs
    torch.set_num_threads(1)
    dist.init_process_group("gloo", store=dist.FileStore(store, 2), rank=rank, world_size=2)
    try:
        reference, rng_after = eager(FACTORIES["ctc"], seed=2)  # both ranks seeded alike
        torch.manual_seed(2)
        model = build_parallel(FACTORIES["ctc"], "fsdp", torch.device("cpu"))
        weight = model.encoder.layers[0].ffn1.sequential[1].weight
        assert weight.to_local().shape[0] == weight.shape[0] // 2  # really sharded
        assert_same_tensors(reference, model)
        assert torch.equal(torch.get_rng_state(), rng_after)
        model = build_parallel(
            FACTORIES["ctc"],
            "fsdp",
            torch.device("cpu"),
            after_init=lambda m: load_encoder_weights(m.encoder, pretrained),
        )
        source, _ = eager(FACTORIES["wav2vec2"], seed=8)
        assert_same_tensors(source.encoder, model.encoder)
    finally:
        dist.destroy_process_group()
    # Every check passed. Skip the interpreter's teardown: about one exit in ten, a
    # background thread of the gloo group aborted it there ("terminate called without
    # an active exception", no Python frame left), failing a finished test.
    os._exit(0)


def test_sharded_build_on_two_ranks_equals_eager_and_loads_shards(tmp_path) -> None:
    import torch.multiprocessing as mp

    pretrained, _ = eager(FACTORIES["wav2vec2"], seed=8)
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process"
        warnings.simplefilter("ignore", UserWarning)
        dcp.save({"model": pretrained.state_dict()}, checkpoint_id=str(tmp_path), no_dist=True)
    mp.spawn(_two_rank_worker, (str(tmp_path / "store"), str(tmp_path)), nprocs=2)


def test_checkpointed_blocks_under_fsdp_give_the_plain_gradients(process_group) -> None:
    features, lengths, targets, target_lengths = batch()
    torch.manual_seed(4)
    plain = FACTORIES["ctc"]()
    torch.manual_seed(4)
    sharded = build_parallel(checkpointed_ctc, "fsdp", torch.device("cpu"))
    calls = []
    sharded.encoder.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    losses = []
    for model in (plain, sharded):
        torch.manual_seed(0)
        loss = model(features, lengths, targets, target_lengths)["loss"]
        loss.backward()
        losses.append(loss.detach())
    assert len(calls) == 2  # the sharded block was recomputed in backward
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), sharded.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad.full_tensor(), rtol=1e-4, atol=1e-5, msg=name)


# --- activation checkpointing -------------------------------------------------------------


def checkpointed_ctc(checkpointing: bool = True) -> nn.Module:
    return build_ctc_model(
        dataclasses.replace(tiny(), activation_checkpointing=checkpointing), VOCAB
    )


def step(checkpointing: bool) -> tuple[nn.Module, torch.Tensor, list[int]]:
    """One forward/backward of the tiny CTC model (dropout 0.1 on) from a fixed seed."""
    torch.manual_seed(1)
    model = checkpointed_ctc(checkpointing)
    calls = [0] * len(model.encoder.layers)
    for i, layer in enumerate(model.encoder.layers):
        layer.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
    torch.manual_seed(0)
    loss = model(*batch())["loss"]
    loss.backward()
    return model, loss.detach(), calls


def test_activation_checkpointing_recomputes_each_block_with_the_same_gradients() -> None:
    plain, plain_loss, plain_calls = step(checkpointing=False)
    ckpt, ckpt_loss, ckpt_calls = step(checkpointing=True)
    assert plain_calls == [1] * 4
    assert ckpt_calls == [2] * 4  # forward, then again in backward
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=0, atol=1e-5)
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    # BatchNorm counted the batch once, not once more when the block was recomputed.
    for name, buffer in plain.named_buffers():
        assert torch.equal(dict(ckpt.named_buffers())[name], buffer), name


def test_activation_checkpointing_is_off_outside_training() -> None:
    model = checkpointed_ctc()
    calls = []
    model.encoder.layers[0].register_forward_pre_hook(lambda *_: calls.append(1))
    features, lengths, targets, target_lengths = batch()
    model.eval()
    model(features, lengths, targets, target_lengths)["loss"].backward()
    assert len(calls) == 1


def test_activation_checkpointing_config_is_checked() -> None:
    assert ConformerConfig().activation_checkpointing is False
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        ConformerConfig(activation_checkpointing="yes")
    cfg = ConformerConfig.from_dict({"activation_checkpointing": True})
    assert ConformerConfig.from_dict(cfg.to_dict()).activation_checkpointing is True


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
def test_a_run_resumes_with_checkpointing_toggled_or_from_before_the_key(
    stage: str, tmp_path
) -> None:
    from bigssl.stages.finetune import FinetuneConfig
    from bigssl.stages.launch import check_resume
    from bigssl.stages.pretrain import PretrainConfig

    config_class, key = {
        "pretrain": (PretrainConfig, "model.encoder.activation_checkpointing"),
        "finetune": (FinetuneConfig, "encoder.activation_checkpointing"),
    }[stage]
    saved = config_class.load(None, []).to_dict()
    encoder = saved["model"]["encoder"] if stage == "pretrain" else saved["encoder"]
    del encoder["activation_checkpointing"]  # a checkpoint saved before the key existed
    folder = tmp_path / "checkpoint_000000010"
    folder.mkdir()
    (folder / "meta.json").write_text(json.dumps({"step": 10, "config": saved}))
    (folder / "COMMITTED").write_text("")
    for value in ("false", "true"):
        check_resume(str(tmp_path), stage, config_class.load(None, [f"{key}={value}"]).to_dict())
    with pytest.raises(ConfigError, match="dropout"):  # other encoder keys still count
        overrides = [f"{key.rsplit('.', 1)[0]}.dropout=0.3"]
        check_resume(str(tmp_path), stage, config_class.load(None, overrides).to_dict())
