"""Which manifest rows training reads, and the count of those it cannot (featurize's quarantine)."""

import pyarrow as pa
import pyarrow.parquet as pq

from bigssl.stages.labeled_rows import select_rows
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


def test_utterances_too_short_for_their_ctc_transcript_are_counted_and_named(tmp_path):
    from bigssl.models.conformer import ConformerConfig
    from bigssl.stages.labeled_rows import too_short_for_ctc, training_transcripts, vocabulary
    from bigssl.stages.training_data import Selection
    from bigssl.text import TokenizerConfig, train_tokenizer

    texts = ["three", "six", "seven", "one two"] * 30
    tokenizer = train_tokenizer(texts, TokenizerConfig(model_type="char", vocab_size=30))
    (tmp_path / "features").mkdir()
    # "three" is 6 pieces with its leading "▁" and needs 7 frames (a blank between
    # the two "e"): 24 input frames give 6 at 4x, too few; 28 give 7, enough.
    table = pa.table(
        {
            "id": ["short", "enough", "pseudo"],
            "num_frames": pa.array([24, 28, 24], pa.int32()),
            "text": ["three", "three", None],
        }
    )
    pq.write_table(table, tmp_path / "features" / "shard-000000.parquet")
    selection = Selection(ids=["short", "enough", "pseudo"], shards={"shard-000000"})
    selection.pseudo = {"pseudo": "six"}  # 4 pieces: 6 frames are enough
    transcripts = training_transcripts(str(tmp_path), selection)
    assert sorted(transcripts) == [
        ("enough", 28, "three"),
        ("pseudo", 24, "six"),
        ("short", 24, "three"),
    ]
    assert vocabulary(transcripts) == "six\nthree\n"  # words.txt: the pseudo-label's too
    out = too_short_for_ctc(transcripts, tokenizer, ConformerConfig())
    assert out == {"utterances": 1, "share": round(1 / 3, 4), "ids": ["short"]}
    # At 2x subsampling the same audio has 12 frames: nothing is too short.
    at_2x = too_short_for_ctc(transcripts, tokenizer, ConformerConfig(subsampling_factor=2))
    assert at_2x["utterances"] == 0
