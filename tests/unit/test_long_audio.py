"""Long recordings: prepare cuts unlabeled ones into bounded chunks; decoding chunks what is
longer than decode.max_chunk_s and quarantines what is longer than decode.max_duration_s."""

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch

from bigssl.audio.decode import decode_audio, encode_flac
from bigssl.config import ConfigError
from bigssl.data.grammar import sample_sentence
from bigssl.data.importers import manifest_records
from bigssl.data.prepare import PrepareConfig, prepare_corpus
from bigssl.data.segment import SegmentConfig, segment_bounds
from bigssl.data.shards import ShardSample, ShardWriter, iter_shard
from bigssl.decoding.ctc import Hypothesis
from bigssl.decoding.recognizer import DecodeConfig, Recognizer
from bigssl.models.asr import build_asr_model
from bigssl.models.conformer import ConformerConfig
from bigssl.models.rnnt import RNNTConfig
from bigssl.text import TokenizerConfig, train_tokenizer
from bigssl.training.selection import save_model

RATE = 16000
TEN_MIN = 600.0


def bursts(seconds: float, seed: int = 0) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Noise-and-tone bursts of 1.5-4 s between quiet gaps of 0.3-0.8 s (a -80 dB floor):
    (samples, gap intervals in seconds). Every 5 s of it holds a whole gap."""
    rng = np.random.default_rng(seed)
    total = int(seconds * RATE)
    pieces, gaps, at = [], [], 0
    while at < total:
        n = min(int(rng.uniform(1.5, 4.0) * RATE), total - at)
        tone = np.sin(2 * np.pi * rng.uniform(100, 900) * np.arange(n) / RATE)
        pieces.append(0.25 * tone + 0.1 * rng.standard_normal(n))
        at += n
        m = min(int(rng.uniform(0.3, 0.8) * RATE), total - at)
        if m > 0:
            pieces.append(1e-4 * rng.standard_normal(m))
            gaps.append((at / RATE, (at + m) / RATE))
            at += m
    return np.concatenate(pieces).astype(np.float32), gaps


def _listing(root: Path, rows: list[dict]) -> Path:
    path = root / "list.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def ten_minutes(tmp_path_factory) -> tuple[Path, np.ndarray, list[tuple[float, float]]]:
    root = tmp_path_factory.mktemp("long")
    samples, gaps = bursts(TEN_MIN + 5.5)  # a 5.5 s remainder past 20 fixed windows
    sf.write(root / "rec.flac", samples, RATE, format="FLAC", subtype="PCM_16")
    return root, samples, gaps


def _prepare(listing: Path, out: Path, **segment) -> dict:
    cfg = PrepareConfig.from_dict({"utterances_per_shard": 2, "segment": segment})
    summary = prepare_corpus(manifest_records(listing), str(out), cfg, {"kind": "dir"})
    return {
        "summary": summary,
        "manifest": pq.read_table(out / "manifest.parquet").to_pylist(),
        "segments": pq.read_table(out / "segments.parquet").to_pylist(),
        "quarantine": pq.read_table(out / "quarantine.parquet").to_pylist(),
    }


def _shard_samples(out: Path) -> dict[str, ShardSample]:
    samples = {}
    for shard in sorted((out / "shards").glob("*.tar")):
        with open(shard, "rb") as f:
            samples |= {s.key: s for s in iter_shard(f, shard.name) if isinstance(s, ShardSample)}
    return samples


def test_fixed_chunks_are_bounded_sum_to_the_recording_and_rerun_to_the_same_ids(
    ten_minutes, tmp_path
):
    root, samples, _ = ten_minutes
    listing = _listing(root, [{"audio": "rec.flac"}])
    got = _prepare(listing, tmp_path / "a", mode="fixed", max_s=30.0, min_s=1.0)
    manifest, segments = got["manifest"], got["segments"]
    assert [r["id"] for r in manifest] == [f"rec-c{i:04d}" for i in range(21)]
    assert all(r["duration_s"] <= 30.0 for r in manifest)
    assert sum(r["duration_s"] for r in manifest) == pytest.approx(len(samples) / RATE, abs=1e-9)
    assert manifest[-1]["duration_s"] == pytest.approx(5.5, abs=1e-3)  # >= min_s: kept
    ends = [s["offset_s"] + s["duration_s"] for s in segments]
    assert [s["offset_s"] for s in segments] == pytest.approx([0.0, *ends[:-1]])  # contiguous
    assert {s["source_id"] for s in segments} == {"rec"}
    assert got["summary"].extra["segmented_recordings"] == 1 and not got["quarantine"]
    # each chunk's audio is its slice of the recording, its offset in its shard json
    shard = _shard_samples(tmp_path / "a")
    chunk, _ = decode_audio(shard["rec-c0003"].fields["flac"])
    assert np.allclose(chunk, samples[90 * RATE : 120 * RATE], atol=1 / 32768)
    meta = shard["rec-c0003"].meta()
    assert (meta["source_id"], meta["offset_s"], meta["duration_s"]) == ("rec", 90.0, 30.0)
    # stable ids: another output, and a resumed one, hold the same rows and no duplicates
    again = _prepare(listing, tmp_path / "b", mode="fixed", max_s=30.0, min_s=1.0)
    assert again["segments"] == segments
    (tmp_path / "a/parts/000000.manifest.parquet").unlink()  # "crashed" before its marker
    resumed = _prepare(listing, tmp_path / "a", mode="fixed", max_s=30.0, min_s=1.0)
    assert resumed["manifest"] == manifest and resumed["segments"] == segments


def test_fixed_merges_a_remainder_shorter_than_min_s_without_passing_max_s():
    cfg = SegmentConfig(mode="fixed", max_s=30.0, min_s=10.0)
    bounds = segment_bounds(np.zeros(int(95.5 * RATE), np.float32), RATE, cfg)
    lengths = [(b - a) / RATE for a, b in bounds]
    assert lengths == pytest.approx([30.0, 30.0, 17.75, 17.75])  # 30 + 5.5 halved
    assert bounds[0][0] == 0 and bounds[-1][1] == int(95.5 * RATE)
    assert all(a == b for (_, a), (b, _) in zip(bounds[:-1], bounds[1:], strict=True))
    short = segment_bounds(np.zeros(20 * RATE, np.float32), RATE, cfg)
    assert short == [(0, 20 * RATE)]  # not longer than max_s: one piece


def test_energy_cuts_land_in_the_silent_gaps(ten_minutes):
    _, samples, gaps = ten_minutes
    cfg = SegmentConfig(mode="energy", max_s=30.0, min_s=1.0, search_s=5.0)
    bounds = segment_bounds(samples, RATE, cfg)
    lengths = [(b - a) / RATE for a, b in bounds]
    assert all(cfg.min_s <= n <= cfg.max_s for n in lengths)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(samples)
    assert all(a == b for (_, a), (b, _) in zip(bounds[:-1], bounds[1:], strict=True))
    cuts = [a / RATE for a, _ in bounds[1:]]

    def in_gap(t: float) -> bool:
        return any(lo < t < hi for lo, hi in gaps)

    assert len(cuts) >= 20 and all(in_gap(t) for t in cuts), [t for t in cuts if not in_gap(t)]
    # the check discriminates: fixed windows mostly cut through bursts
    fixed = segment_bounds(samples, RATE, SegmentConfig(mode="fixed", max_s=30.0))
    assert sum(not in_gap(a / RATE) for a, _ in fixed[1:]) >= 10


def test_energy_cuts_on_real_speech_land_in_pauses(shared_data):
    lj = shared_data / "ljspeech_part"
    rows = [json.loads(line) for line in (lj / "manifest.jsonl").read_text().splitlines()]
    pieces, total = [], 0
    for row in rows:
        audio, rate = sf.read(lj / row["audio"], dtype="float32")
        assert rate == 22050
        pieces.append(audio)
        total += len(audio)
        if total >= TEN_MIN * rate:
            break
    speech = np.concatenate(pieces)
    bounds = segment_bounds(speech, 22050, SegmentConfig(mode="energy", max_s=30.0))
    assert all((b - a) / 22050 <= 30.0 for a, b in bounds) and bounds[-1][1] == len(speech)
    frame = 2205  # 100 ms

    def db(at: int) -> float:
        window = speech[max(0, at - frame // 2) : at + frame // 2]
        return 10 * np.log10(np.mean(np.square(window, dtype=np.float64)) + 1e-12)

    loud = np.median([db(i) for i in range(frame, len(speech) - frame, frame)])
    assert all(db(a) < loud - 20 for a, _ in bounds[1:]), [db(a) - loud for a, _ in bounds[1:]]


def test_long_labeled_audio_stays_quarantined_with_the_reason(ten_minutes, tmp_path):
    root, *_ = ten_minutes
    sf.write(root / "talk.flac", bursts(150.0, seed=1)[0], RATE)
    listing = _listing(
        root,
        [{"audio": "talk.flac", "text": "a long talk"}, {"audio": "rec.flac", "id": "pool"}],
    )
    got = _prepare(listing, tmp_path / "on", mode="energy")
    reasons = {r["id"]: r["reason"] for r in got["quarantine"]}
    assert set(reasons) == {"talk"} and "transcript" in reasons["talk"]
    assert "without an alignment" in reasons["talk"]
    assert {r["id"].split("-c")[0] for r in got["manifest"]} == {"pool"}
    # off (the default): long unlabeled audio is quarantined too, and told how to cut it
    off = _prepare(listing, tmp_path / "off")
    reasons = {r["id"]: r["reason"] for r in off["quarantine"]}
    assert set(reasons) == {"talk", "pool"} and "segment.mode" in reasons["pool"]


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"segment": {"mode": "vad"}}, "segment.mode"),
        ({"segment": {"max_s": -1.0}}, "segment.max_s"),
        ({"segment": {"min_s": 20.0}}, "segment.min_s"),
        ({"segment": {"search_s": 0.0}}, "segment.search_s"),
        ({"segment": {"maxs": 10}}, "segment.maxs"),
        ({"segment": {"mode": "fixed", "max_s": 200.0}}, "segment.max_s"),
        ({"min_duration_s": 2.0, "segment": {"mode": "fixed"}}, "segment.min_s"),
    ],
)
def test_bad_segment_config_names_the_field(data, field):
    with pytest.raises(ConfigError) as err:
        PrepareConfig.from_dict(data)
    assert err.value.field == field


def test_default_prepare_settings_are_those_of_outputs_made_before_segmentation():
    assert "segment" not in PrepareConfig().settings()
    assert "segment" in PrepareConfig.from_dict({"segment": {"mode": "energy"}}).settings()


def test_bad_decode_limits_name_the_field():
    for data, field in (
        ({"max_chunk_s": 0.5}, "decode.max_chunk_s"),
        ({"max_duration_s": 0}, "decode.max_duration_s"),
    ):
        with pytest.raises(ConfigError) as err:
            DecodeConfig.from_dict(data, prefix="decode")
        assert err.value.field == field


def test_prepare_dir_cli_cuts_a_ten_minute_file(ten_minutes, tmp_path):
    from bigssl.cli import main

    root, samples, _ = ten_minutes
    listing = _listing(root, [{"audio": "rec.flac", "speaker": "s"}])
    out = tmp_path / "cli"
    code = main(
        ["prepare", "dir", "--manifest", str(listing), "--out", str(out), "segment.mode=energy"]
    )
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    manifest = pq.read_table(out / "manifest.parquet").to_pylist()
    assert summary["used"] == len(manifest) >= 21 and summary["quarantined"] == 0
    assert all(r["duration_s"] <= 30.0 and r["speaker"] == "s" for r in manifest)
    assert sum(r["duration_s"] for r in manifest) == pytest.approx(len(samples) / RATE, abs=1e-9)


# --- chunked inference -------------------------------------------------------------------


def _checkpoint(root: Path, head: str, tokenizer) -> str:
    torch.manual_seed(0)
    encoder = ConformerConfig(
        d_model=32, num_layers=1, num_heads=2, ffn_dim=64, subsampling_channels=16, dropout=0.0
    )
    rnnt = RNNTConfig(pred_dim=32, joint_dim=32, dropout=0.0, max_symbols_per_frame=2)
    model = build_asr_model(encoder, tokenizer.vocab_size, head, rnnt)
    with torch.no_grad():  # peaky outputs: no near-ties for batch shapes to flip
        out = model.head if head == "ctc" else model.head.joiner.out
        out.weight.mul_(30.0)
    meta = {"encoder": encoder.to_dict(), "vocab_size": tokenizer.vocab_size, "head": head}
    meta["rnnt"] = rnnt.to_dict()
    target = str(root / head)
    save_model(target, model, meta, {"tokenizer.model": tokenizer.model_bytes})
    return target


@pytest.fixture(scope="module")
def long_shard(tmp_path_factory) -> tuple[Path, object]:
    root = tmp_path_factory.mktemp("decode")
    rng = random.Random(0)
    tokenizer = train_tokenizer(
        [sample_sentence(rng) for _ in range(300)], TokenizerConfig(vocab_size=60)
    )
    with open(root / "shard-000000.tar", "wb") as f, ShardWriter(f) as writer:
        for key, seconds in (("short", 4.0), ("long", 180.0), ("toolong", 200.0)):
            audio = encode_flac(bursts(seconds, seed=len(key))[0], RATE)
            writer.write(key, audio, {"id": key, "duration_s": seconds}, "some words")
    return root, tokenizer


@pytest.mark.parametrize("head", ["ctc", "rnnt"])
def test_a_long_utterance_decodes_as_its_chunks_decoded_apart(long_shard, head):
    root, tokenizer = long_shard
    cfg = DecodeConfig(max_chunk_s=30.0, max_duration_s=190.0)
    recognizer = Recognizer(_checkpoint(root, head, tokenizer), cfg)
    rows, failed, read = recognizer.shard_rows(str(root / "shard-000000.tar"))
    assert read == 3 and sorted(r["id"] for r in rows) == ["long", "short"]
    assert [f.id for f in failed] == ["toolong"]
    assert "decode.max_duration_s=190" in failed[0].reason  # names the setting
    long = next(r for r in rows if r["id"] == "long")
    pieces = recognizer.chunks(long)
    assert len(pieces) == 6 and all(p["num_frames"] <= 3000 for p in pieces)
    feats = np.concatenate([np.asarray(p["feats"]).reshape(p["num_frames"], -1) for p in pieces])
    assert np.array_equal(feats, np.asarray(long["feats"]).reshape(long["num_frames"], -1))

    results = {row["id"]: (hyp, text) for row, hyp, text in recognizer.transcribe(rows)}
    hyp, text = results["long"]
    apart = [recognizer.transcribe([p])[0][1] for p in pieces]  # one utterance each
    assert hyp.tokens == [t for h in apart for t in h.tokens] and len(hyp.tokens) > 0
    assert text == tokenizer.decode(hyp.tokens)
    assert hyp.frames == sum(h.frames for h in apart)
    assert hyp.logprob == pytest.approx(sum(h.logprob for h in apart), rel=1e-4)
    assert hyp.avg_logprob == pytest.approx(hyp.logprob / hyp.frames)
    weighted = sum(h.mean_max_prob * h.frames for h in apart) / hyp.frames
    assert hyp.mean_max_prob == pytest.approx(weighted, rel=1e-4)
    short = next(r for r in rows if r["id"] == "short")
    assert recognizer.chunks(short) == [short]  # under max_chunk_s: decoded whole


def test_concatenating_one_hypothesis_is_the_identity_and_empty_chunks_add_nothing():
    one = Hypothesis.scored([3, 4], -2.0, 10, 0.5)
    assert Hypothesis.concatenate([one]) is one
    both = Hypothesis.concatenate([one, Hypothesis.scored([], 0.0, 0, 0.0)])
    assert (both.tokens, both.logprob, both.frames, both.mean_max_prob) == ([3, 4], -2.0, 10, 0.5)
