import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bigssl import schemas
from bigssl.cli import main
from bigssl.stages.demo import QUICK_STUDENT_STEPS
from corpora import fault_dir_corpus

pytestmark = pytest.mark.ray


def test_help_lists_every_stage():
    result = subprocess.run(
        [sys.executable, "-m", "bigssl.cli", "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for stage in ("prepare", "split", "featurize", "pretrain", "finetune", "sweep", "demo"):
        assert stage in result.stdout


def test_tts_prepare_split_featurize_through_the_cli(ray_session, tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(
            [
                "prepare",
                "tts",
                "--hours",
                "0.02",
                "--seed",
                "1",
                "--out",
                str(out / "corpus"),
                "utterances_per_shard=20",
            ]
        )
        == 0
    )
    prepared = json.loads((out / "corpus/summary.json").read_text())
    assert prepared["used"] > 20 and prepared["hours"] >= 0.02 and prepared["quarantined"] == 0
    assert (
        main(
            [
                "split",
                "--manifest",
                str(out / "corpus/manifest.parquet"),
                "--fractions",
                "0.1,1",
                "--test-hours",
                "0.003",
                "--dev-hours",
                "0.003",
                "--out",
                str(out / "splits"),
            ]
        )
        == 0
    )
    assert (out / "splits/labeled_10pct.parquet").exists() and (
        out / "splits/unlabeled.parquet"
    ).exists()
    assert main(["featurize", "--shards", str(out / "corpus"), "--out", str(out / "feats")]) == 0
    featurized = json.loads((out / "feats/summary.json").read_text())
    assert featurized["used"] == prepared["used"] and featurized["shards"] >= 2
    line = capsys.readouterr().out
    assert "[featurize] read=" in line and "[prepare] read=" in line


def _prepare_dir(listing, out, *extra: str) -> int:
    return main(["prepare", "dir", "--manifest", str(listing), "--out", str(out), *extra])


def test_exit_codes_name_the_field_and_honour_strict(tmp_path, capsys):
    listing = fault_dir_corpus(tmp_path / "c")
    assert _prepare_dir(listing, tmp_path / "a", "utterances_per_shard=0") == 2
    assert "utterances_per_shard" in capsys.readouterr().err
    assert _prepare_dir(listing, tmp_path / "b", "stpes=1") == 2
    assert _prepare_dir(listing, tmp_path / "c2", "max_duration_s=5") == 0
    assert _prepare_dir(listing, tmp_path / "d", "max_duration_s=5", "--strict") == 1
    assert (
        pq.read_table(tmp_path / "d/quarantine.parquet").num_rows == 11
    )  # written even when failing
    assert _prepare_dir(tmp_path / "nope.jsonl", tmp_path / "e") == 3


def test_demo_quick_runs_every_stage_end_to_end(ray_session, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    record = json.loads((out / "pipeline.json").read_text())
    sweep = record["sweep"]
    assert sweep["read"] == sweep["used"] == 3 and sweep["quarantined"] == 0, sweep
    table = pq.read_table(sweep["results"])
    schemas.validate(table, "results")
    assert sorted(table.column("recipe").to_pylist()) == ["scratch", "ssl", "ssl+nst"]
    # The quick demo's student is cut to QUICK_STUDENT_STEPS like its teachers are.
    steps = dict(
        zip(table.column("recipe").to_pylist(), table.column("steps").to_pylist(), strict=True)
    )
    assert steps == {"scratch": 60, "ssl": 60, "ssl+nst": QUICK_STUDENT_STEPS}, steps
    stages = {s for row in table.column("stages").to_pylist() for s in row}
    assert stages == {"pretrain", "finetune", "label", "student", "evaluate"}
    assert Path(sweep["plot"]).stat().st_size > 0
    # Pre-training read the split's training pool, never the test audio it is scored on.
    (pretrained,) = out.glob("**/cache/pretrain-tiny-*/CACHED.json")
    (split,) = out.glob("**/cache/split-*")
    pool = pq.read_table(split / "unlabeled.parquet").num_rows
    assert json.loads(pretrained.read_text())["result"]["used"] == pool
    test_ids = set(pq.read_table(split / "test.parquet").column("id").to_pylist())
    assert (
        test_ids
        and pool + len(test_ids) <= pq.read_table(out / "corpus" / "manifest.parquet").num_rows
    )
    printed = capsys.readouterr().out
    tail = printed[printed.rindex("# WER vs labeled hours") :]  # the table, then the paths
    assert "| ssl+nst |" in tail and sweep["report"] in tail and sweep["plot"] in tail


def test_a_config_file_that_is_no_yaml_mapping_is_exit_2_naming_the_file(tmp_path, capsys):
    listing = fault_dir_corpus(tmp_path / "c")
    (tmp_path / "binary.yaml").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00")
    (tmp_path / "broken.yaml").write_text("fbank: {num_mel_bins: 40\nseed: [")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "folder.yaml").mkdir()
    for name, says in [
        ("binary.yaml", "not UTF-8"),
        ("broken.yaml", "not valid YAML at line"),
        ("list.yaml", "must hold a mapping"),
        ("folder.yaml", "is a directory"),
    ]:
        out = tmp_path / f"out-{name}"
        assert _prepare_dir(listing, out, "--config", str(tmp_path / name)) == 2, name
        err = capsys.readouterr().err
        assert str(tmp_path / name) in err and says in err and "Traceback" not in err, err
        assert not out.exists()  # refused before anything was written
