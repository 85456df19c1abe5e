"""Real speech from ../shared/data: import each corpus and featurize it (skips without ../shared)."""

import json

import pyarrow.parquet as pq
import pytest

from bigssl.data.features import FeaturizeConfig
from bigssl.stages.featurize import run_featurize
from bigssl.stages.prepare import prepare_dir

pytestmark = pytest.mark.ray

CORPORA = {"fsdd": (3000, 8000), "speech_commands": (2500, 16000), "ljspeech_part": (385, 22050)}


@pytest.mark.parametrize("name", sorted(CORPORA))
def test_real_corpus_imports_and_featurizes(ray_session, shared_data, tmp_path, name):
    count, rate = CORPORA[name]
    summary = prepare_dir(
        str(shared_data / name / "manifest.jsonl"),
        str(tmp_path / "c"),
        None,
        ["utterances_per_shard=400"],
    )
    assert summary["read"] == count and summary["used"] + summary["quarantined"] == count
    assert summary["used"] >= 0.99 * count
    manifest = pq.read_table(tmp_path / "c/manifest.parquet")
    assert set(manifest.column("sample_rate").to_pylist()) == {rate}
    listed = sum(
        json.loads(line)["duration"] for line in (shared_data / name / "manifest.jsonl").open()
    )
    assert summary["hours"] * 3600 == pytest.approx(listed, rel=0.01)
    feats = run_featurize(str(tmp_path / "c"), str(tmp_path / "f"), FeaturizeConfig())
    assert feats.used == summary["used"] and feats.quarantined == 0
