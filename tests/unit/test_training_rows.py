"""Which manifest rows training reads, and the count of those it cannot (featurize's quarantine)."""

import pyarrow as pa
import pyarrow.parquet as pq

from bigssl.stages.finetune import select_rows
from bigssl.stages.training_data import pool_selection


def _features_and_manifest(tmp_path):
    features = tmp_path / "features"
    (features / "quarantine").mkdir(parents=True)
    pq.write_table(
        pa.table({"id": ["b"], "source": ["s"], "stage": ["featurize"], "reason": ["bad audio"]}),
        features / "quarantine" / "shard-000000.parquet",
    )
    manifest = tmp_path / "labeled.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b", "c", "d"],
                "shard": ["shards/shard-000000.tar"] * 2 + ["shards/shard-000001.tar"] * 2,
                "duration_s": [1.0, 2.0, 3.0, 4.0],
                "text": ["x", "y", "z", None],
            }
        ),
        manifest,
    )
    return str(features), str(manifest)


def test_finetune_counts_the_labeled_rows_featurize_quarantined(tmp_path):
    features, manifest = _features_and_manifest(tmp_path)
    selection, totals, hours = select_rows(features, manifest)
    assert sorted(selection.ids) == ["a", "c"]  # d has no text: not a labeled row
    assert selection.skipped == 1  # b: quarantined by featurize, counted, not dropped
    assert totals == {"shard-000000": 1, "shard-000001": 1}
    assert hours == (1.0 + 3.0) / 3600


def test_pretraining_pool_counts_every_listed_row_featurize_quarantined(tmp_path):
    features, manifest = _features_and_manifest(tmp_path)
    selection, totals, _ = pool_selection(features, manifest)
    assert sorted(selection.ids) == ["a", "c", "d"] and selection.skipped == 1
