"""Featurize writes each utterance id once: repeats inside a shard and across shards are
quarantined naming where the kept copy is (no Ray: the per-shard work and the pass after it)."""

import pyarrow.parquet as pq
import pytest

from bigssl import storage
from bigssl.data import features as feat
from bigssl.data.features import FeaturizeConfig, drop_cross_shard_duplicates, featurize_shard
from corpora import sample_fields, write_tar

CFG = FeaturizeConfig()


def _featurized(tmp_path):
    shards = tmp_path / "shards"
    a = write_tar(shards / "a.tar", [(k, sample_fields(k)) for k in ("u1", "u2", "u1", "u3")])
    b = write_tar(shards / "b.tar", [(k, sample_fields(k)) for k in ("u4", "u2", "u5")])
    c = write_tar(shards / "c.tar", [(k, sample_fields(k)) for k in ("u3", "u6")])
    out = str(tmp_path / "feats")
    uris = [str(a), str(b), str(c)]
    for uri in uris:
        featurize_shard(uri, out, CFG)
    return out, uris


def _ids(out, stem):
    return pq.read_table(f"{out}/features/{stem}.parquet").column("id").to_pylist()


def _reasons(out, stem):
    return {
        r["id"]: r["reason"] for r in pq.read_table(f"{out}/quarantine/{stem}.parquet").to_pylist()
    }


def _assert_each_id_once(out, uris):
    assert _ids(out, "a") == ["u1", "u2", "u3"]
    assert _ids(out, "b") == ["u4", "u5"] and _ids(out, "c") == ["u6"]
    assert "duplicate id in its shard" in _reasons(out, "a")["u1"]
    assert _reasons(out, "b") == {"u2": "id also in shard a (kept there)"}
    assert _reasons(out, "c") == {"u3": "id also in shard a (kept there)"}
    for uri, (read, used) in zip(uris, [(4, 3), (3, 2), (2, 1)], strict=True):
        marker = storage.read_json(feat.done_marker(out, uri))
        assert (marker["read"], marker["used"], marker["quarantined"]) == (read, used, read - used)
        table = pq.read_table(feat.features_file(out, feat.shard_stem(uri)))
        assert marker["frames"] == sum(table.column("num_frames").to_pylist())


def test_repeated_ids_are_kept_once_and_the_rest_quarantined(tmp_path):
    out, uris = _featurized(tmp_path)
    assert drop_cross_shard_duplicates(out, uris, CFG.rows_per_group) == 2
    _assert_each_id_once(out, uris)
    assert drop_cross_shard_duplicates(out, uris, CFG.rows_per_group) == 0  # nothing left to do
    _assert_each_id_once(out, uris)


def test_a_crash_part_way_through_the_pass_is_finished_by_the_next_run(tmp_path, monkeypatch):
    out, uris = _featurized(tmp_path)
    real = feat._drop_rows
    calls = []

    def crash_on_second(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2:
            raise RuntimeError("killed")
        real(*args, **kwargs)

    monkeypatch.setattr(feat, "_drop_rows", crash_on_second)
    with pytest.raises(RuntimeError):
        drop_cross_shard_duplicates(out, uris, CFG.rows_per_group)
    assert _ids(out, "c") == ["u3", "u6"]  # not yet applied
    monkeypatch.setattr(feat, "_drop_rows", real)
    assert drop_cross_shard_duplicates(out, uris, CFG.rows_per_group) == 2  # the saved plan
    _assert_each_id_once(out, uris)
