import random

import pyarrow as pa
import pytest

from bigssl.config import ConfigError
from bigssl.data.bucketing import (
    BucketConfig,
    bucket_batches,
    collate_features,
    greedy_cut,
    padding_ratio,
)
from bigssl.data.splits import SplitConfig, make_splits


def manifest(n: int = 400, speakers: int = 20, seed: int = 0) -> pa.Table:
    rng = random.Random(seed)
    rows = [
        {
            "id": f"u{i:04d}",
            "shard": "shards/x.tar",
            "duration_s": rng.uniform(1, 10),
            "sample_rate": 16000,
            "num_channels": 1,
            "speaker": f"s{i % speakers}",
            "text": None if i % 10 == 0 else f"text {i}",
            "source": "t",
            "split": None,
        }
        for i in range(n)
    ]
    return pa.Table.from_pylist(rows)


def ids(table: pa.Table) -> set[str]:
    return set(table.column("id").to_pylist())


def test_budgets_are_nested_hold_their_hours_and_are_deterministic():
    cfg = SplitConfig(hours=[0.05, 0.1, 0.3], dev_hours=0.05, test_hours=0.05, seed=3)
    out = make_splits(manifest(), cfg)
    small, mid, big = (out[f"labeled_{h:g}h"] for h in cfg.hours)
    assert ids(small) < ids(mid) < ids(big)
    for table, hours in ((small, 0.05), (mid, 0.1), (big, 0.3)):
        got = sum(table.column("duration_s").to_pylist()) / 3600
        assert hours <= got < hours + 10 / 3600  # shortest prefix: over by < one utterance
        assert table.column("text").null_count == 0
    assert ids(make_splits(manifest(), cfg)["labeled_0.05h"]) == ids(small)
    other = make_splits(
        manifest(), SplitConfig(hours=[0.05, 0.1, 0.3], dev_hours=0.05, test_hours=0.05, seed=4)
    )
    assert ids(other["labeled_0.05h"]) != ids(small)


def test_dev_test_are_speaker_disjoint_and_pool_drops_text():
    out = make_splits(manifest(), SplitConfig(fractions=[0.1, 1.0], dev_hours=0.05, test_hours=0.1))
    spk = {k: set(v.column("speaker").to_pylist()) for k, v in out.items()}
    assert spk["dev"] and spk["test"]
    assert not (spk["dev"] & spk["test"]) and not (spk["unlabeled"] & (spk["dev"] | spk["test"]))
    pool = out["unlabeled"]
    assert pool.column("text").null_count == len(pool)
    assert ids(out["labeled_100pct"]) < ids(pool)  # every labeled row is also in the pool
    assert len(pool) + len(out["dev"]) + len(out["test"]) == 400


def test_corpus_declared_splits_are_kept_when_no_hold_out_is_asked():
    table = manifest(50)
    table = table.set_column(
        table.schema.get_field_index("split"),
        "split",
        pa.array(["test" if i < 10 else "train" for i in range(50)]),
    )
    out = make_splits(table, SplitConfig(fractions=[1.0], dev_hours=0))
    assert len(out["test"]) == 10 and not ids(out["test"]) & ids(out["unlabeled"])
    assert len(out["dev"]) == 0


def test_official_test_set_stays_while_dev_is_carved_from_the_rest():
    """FSDD's case: the manifest names its test set, and the default dev_hours carves a dev
    set out of the other rows (by utterance here), so both are held out."""
    table = manifest(200)
    official = {f"u{i:04d}" for i in range(0, 200, 5)}
    table = table.set_column(
        table.schema.get_field_index("split"),
        "split",
        pa.array(["test" if f"u{i:04d}" in official else "train" for i in range(200)]),
    )
    cfg = SplitConfig(fractions=[1.0], speaker_disjoint=False)
    assert cfg.dev_hours > 0  # validation needs a dev set by default
    out = make_splits(table, cfg)
    assert ids(out["test"]) == official
    dev = ids(out["dev"])
    assert dev and not dev & official and not dev & ids(out["unlabeled"])
    assert sum(out["dev"].column("duration_s").to_pylist()) >= cfg.dev_hours * 3600
    assert len(out["unlabeled"]) + len(dev) + len(official) == 200
    # Asking for test hours instead carves a new test set and returns the official rows.
    carved = make_splits(table, SplitConfig(fractions=[1.0], test_hours=0.05, dev_hours=0.05))
    assert ids(carved["test"]) != official and official & ids(carved["unlabeled"])


def test_bad_split_configs_name_the_field():
    with pytest.raises(ConfigError) as err:
        SplitConfig(hours=[1.0, 0.5])
    assert err.value.field == "hours"
    with pytest.raises(ConfigError) as err:
        SplitConfig(fractions=[0.5, 2.0])
    assert err.value.field == "fractions"
    with pytest.raises(ConfigError, match="nothing is left"):
        make_splits(
            manifest(40, speakers=2), SplitConfig(fractions=[1.0], dev_hours=1, test_hours=1)
        )


def test_bucketing_bounds_padding_and_keeps_every_row_once():
    rng = random.Random(0)
    lengths = [rng.randint(50, 1500) for _ in range(3000)]
    rows = [{"id": i, "n": n} for i, n in enumerate(lengths)]
    cfg = BucketConfig(max_frames=6000, window=500)
    batches = list(bucket_batches(rows, lambda r: r["n"], cfg))
    assert sorted(r["id"] for b in batches for r in b) == list(range(3000))
    assert all(len(b) * max(r["n"] for r in b) <= cfg.max_frames for b in batches)
    bucketed = padding_ratio(batches, lambda r: r["n"])
    shuffled = rows[:]
    rng.shuffle(shuffled)
    naive = padding_ratio([shuffled[i : i + 8] for i in range(0, 3000, 8)], lambda r: r["n"])
    assert bucketed < 0.05 < naive / 4, (bucketed, naive)


def test_bucketing_balances_batches_without_adding_any():
    """No remainder batch of a row or two: data-parallel ranks wait for the largest."""

    def padded(batch):
        return len(batch) * max(r["n"] for r in batch)

    equal = [{"id": i, "n": 100} for i in range(61)]
    sizes = sorted(len(b) for b in bucket_batches(equal, lambda r: r["n"], BucketConfig(6000)))
    assert sizes == [30, 31]  # a greedy fill gives 60 and 1

    rng = random.Random(0)
    rows = [{"id": i, "n": rng.randint(150, 500)} for i in range(128 * 20)]
    cfg = BucketConfig(max_frames=6000, window=128)
    batches = list(bucket_batches(rows, lambda r: r["n"], cfg))
    greedy = [
        b
        for w in range(0, len(rows), cfg.window)
        for b in greedy_cut(
            sorted(rows[w : w + cfg.window], key=lambda r: r["n"]), lambda r: r["n"], 6000, 256
        )
    ]
    assert sorted(r["id"] for b in batches for r in b) == list(range(len(rows)))
    assert len(batches) == len(greedy)
    assert max(padded(b) for b in batches) <= cfg.max_frames
    assert min(padded(b) for b in greedy) < 0.25 * cfg.max_frames  # the data has remainders
    assert min(padded(b) for b in batches) > 0.75 * max(padded(b) for b in batches)


def test_greedy_cut_fills_each_batch_to_the_budget_or_the_cap():
    rows = sorted([{"n": n} for n in [100] * 25 + [300] * 10 + [2000]], key=lambda r: r["n"])
    sizes = [len(b) for b in greedy_cut(rows, lambda r: r["n"], 1000)]
    # 10 x 100 fills the budget; a 300 after five 100s would pad six rows to 1,800
    assert sizes == [10, 10, 5, 3, 3, 3, 1, 1]
    capped = [len(b) for b in greedy_cut(rows, lambda r: r["n"], 1000, max_batch_size=4)]
    assert capped == [4, 4, 4, 4, 4, 4, 3, 3, 3, 2, 1]  # the 25th 100 joins two 300s
    assert greedy_cut([], lambda r: r["n"], 1000) == []


def test_overlong_row_is_a_batch_of_one_and_order_depends_on_seed():
    rows = [{"id": i, "n": n} for i, n in enumerate([100, 9000, 120, 130])]
    batches = list(bucket_batches(rows, lambda r: r["n"], BucketConfig(max_frames=1000, window=10)))
    assert [rows[1]] in batches and sum(len(b) for b in batches) == 4
    many = [{"id": i, "n": 100 + i % 7} for i in range(200)]

    def order(seed):
        return [
            b[0]["id"]
            for b in bucket_batches(
                many, lambda r: r["n"], BucketConfig(max_frames=500, window=200, seed=seed)
            )
        ]

    assert order(0) == order(0) and order(0) != order(1)


def test_collate_pads_to_the_longest_row():
    import numpy as np

    rows = [
        {"id": "a", "feats": np.ones(3 * 4), "num_frames": 3, "num_mel_bins": 4, "text": "x"},
        {"id": "b", "feats": np.ones(5 * 4), "num_frames": 5, "num_mel_bins": 4, "text": "y"},
    ]
    batch = collate_features(rows)
    assert batch["feats"].shape == (2, 5, 4) and list(batch["lengths"]) == [3, 5]
    assert batch["feats"][0, 3:].sum() == 0 and batch["feats"][1].sum() == 20
