import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from bigssl.data.bucketing import BucketConfig
from bigssl.data.features import FeaturizeConfig
from bigssl.stages.featurize import feature_dataset, iter_bucketed, run_featurize
from corpora import fault_shards, sample_fields, write_tar

pytestmark = pytest.mark.ray


def small_shards(folder, shards: int, per_shard: int) -> None:
    """Clean shards s0, s1, ... of ``per_shard`` half-second utterances s<shard>u<i>."""
    for s in range(shards):
        write_tar(
            folder / f"s{s}.tar",
            [(f"s{s}u{i}", sample_fields(f"s{s}u{i}", 0.5)) for i in range(per_shard)],
        )


def test_fault_shards_quarantine_with_reasons_and_keep_what_is_readable(ray_session, tmp_path):
    expected = fault_shards(tmp_path / "shards")
    summary = run_featurize(str(tmp_path / "shards"), str(tmp_path / "out"), FeaturizeConfig())
    assert summary.read == summary.used + summary.quarantined
    for stem, (used, quarantined, reasons) in expected.items():
        done = json.loads((tmp_path / "out/done" / f"{stem}.json").read_text())
        rows = pq.read_table(tmp_path / "out/quarantine" / f"{stem}.parquet").to_pylist()
        assert done["quarantined"] == quarantined == len(rows), stem
        if used is not None:
            assert done["used"] == used, stem
        for reason in reasons:
            assert any(reason in r["reason"] for r in rows), (stem, reason, rows)
    trunc = json.loads((tmp_path / "out/done/trunc.json").read_text())
    assert 0 < trunc["used"] < 6  # samples before the damage survive
    feats = pq.read_table(tmp_path / "out/features/mixed.parquet").to_pylist()
    assert {r["id"] for r in feats} == {"m0", "m7"}
    assert [r["text"] for r in sorted(feats, key=lambda r: r["id"])] == ["a b c", None]


def test_rerun_after_a_crash_finishes_only_the_missing_shards(ray_session, tmp_path):
    small_shards(tmp_path / "shards", shards=4, per_shard=5)
    out = tmp_path / "out"
    run_featurize(str(tmp_path / "shards"), str(out), FeaturizeConfig())
    # Simulate a crash that lost shard s2's work: its marker and outputs never landed.
    (out / "done/s2.json").unlink()
    (out / "features/s2.parquet").unlink()
    before = (out / "features/s0.parquet").stat().st_mtime_ns
    summary = run_featurize(str(tmp_path / "shards"), str(out), FeaturizeConfig())
    assert summary.extra["shards_this_run"] == 1 and summary.used == 20
    assert (out / "features/s0.parquet").stat().st_mtime_ns == before  # done work untouched
    ids = pq.read_table(out / "features").column("id").to_pylist()
    assert sorted(ids) == sorted(f"s{s}u{i}" for s in range(4) for i in range(5))


def test_a_shard_that_fails_after_its_row_fails_the_stage(ray_session, tmp_path):
    # Each task yields its row before it works (to save an executor poll per shard);
    # an unexpected error after that row must still fail the run, not pass unnoticed.
    small_shards(tmp_path / "shards", shards=3, per_shard=3)
    out = tmp_path / "out"
    (out / "features/s1.parquet").mkdir(parents=True)  # s1's output cannot be written
    with pytest.raises(Exception, match="IsADirectoryError"):
        run_featurize(str(tmp_path / "shards"), str(out), FeaturizeConfig())
    assert not (out / "done/s1.json").exists()
    shutil.rmtree(out / "features/s1.parquet")
    summary = run_featurize(str(tmp_path / "shards"), str(out), FeaturizeConfig())
    assert summary.used == 9 and (out / "done/s1.json").exists()


def test_feature_stream_yields_bucketed_padded_batches(ray_session, tmp_path):
    rng = np.random.default_rng(0)
    for s in range(3):
        write_tar(
            tmp_path / f"shards/s{s}.tar",
            [
                (f"s{s}u{i}", sample_fields(f"s{s}u{i}", float(rng.uniform(0.3, 3.0))))
                for i in range(12)
            ],
        )
    run_featurize(str(tmp_path / "shards"), str(tmp_path / "out"), FeaturizeConfig())
    cfg = BucketConfig(max_frames=1200, window=64)
    batches = list(iter_bucketed(feature_dataset(str(tmp_path / "out")), cfg))
    assert sum(len(b["lengths"]) for b in batches) == 36
    for b in batches:
        B, T, F = b["feats"].shape
        assert F == 80 and T == b["lengths"].max() and (B == 1 or B * T <= cfg.max_frames)
        # Padding frames are zeros, real frames are not.
        assert np.all(b["feats"][np.arange(T)[None, :] >= b["lengths"][:, None]] == 0)
    assert len({b["ids"][0] for b in batches}) == len(batches)


def test_nothing_usable_is_reported(ray_session, tmp_path):
    (tmp_path / "shards").mkdir()
    (tmp_path / "shards/bad.tar").write_bytes(b"junk" * 100)
    summary = run_featurize(str(tmp_path / "shards"), str(tmp_path / "out"), FeaturizeConfig())
    assert summary.used == 0 and summary.quarantined == 1
    shutil.rmtree(tmp_path / "out")


def test_rerun_with_other_feature_settings_is_refused_naming_the_field(ray_session, tmp_path):
    from bigssl.config import ConfigError

    small_shards(tmp_path / "shards", shards=2, per_shard=3)
    out = tmp_path / "out"
    run_featurize(str(tmp_path / "shards"), str(out), FeaturizeConfig())
    with pytest.raises(ConfigError) as err:
        run_featurize(
            str(tmp_path / "shards"),
            str(out),
            FeaturizeConfig.load(None, ["fbank.num_mel_bins=40"]),
        )
    assert err.value.field == "fbank.num_mel_bins" and "use a new --out" in str(err.value)
    recorded = json.loads((out / "featurize_config.json").read_text())
    assert recorded["fbank"]["num_mel_bins"] == 80  # the output still says what it holds
    # Settings that do not change what is written may differ on a re-run.
    again = run_featurize(
        str(tmp_path / "shards"), str(out), FeaturizeConfig.load(None, ["strict=true"])
    )
    assert again.used == 6 and again.extra["shards_this_run"] == 0
