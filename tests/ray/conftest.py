"""Shared Ray-layer data: a small TTS corpus in 8 shards, featurized once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tts_features(ray_session, tmp_path_factory) -> str:
    from bigssl.data.features import FeaturizeConfig
    from bigssl.stages.featurize import run_featurize
    from bigssl.stages.prepare import prepare_tts

    root = tmp_path_factory.mktemp("tts")
    prepare_tts(
        str(root / "corpus"), None, ["tts.hours=0.05", "tts.seed=11", "utterances_per_shard=11"]
    )
    run_featurize(str(root / "corpus"), str(root / "features"), FeaturizeConfig())
    return str(root / "features")
