"""Results table (schema, append/replace, merge, plain-parquet readers) and the report stage."""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bigssl import schemas
from bigssl.results import append_results, make_row, read_results
from bigssl.stages.report import report_main
from bigssl.summary import NothingUsable

CREATED = dt.datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone.utc)


def trial(recipe: str, budget: str, hours: float, seed: int, wer: float | None, **extra) -> dict:
    """A hand-made trial: test-clean is primary, test-other has twice its WER."""
    scores = []
    if wer is not None:
        scores = [
            {"test_set": "test-clean", "wer": wer, "cer": wer / 4, "words": 500, "utterances": 20},
            {"test_set": "test-other", "wer": 2 * wer, "cer": None, "words": 400},
        ]
    fields = {
        "sweep": "ablation",
        "trial_id": f"{recipe}-{budget}-s{seed}",
        "recipe": recipe,
        "preset": "tiny",
        "seed": seed,
        "budget": budget,
        "labeled_hours": hours,
        "stages": ["finetune", "evaluate"],
        "scores": scores,
        "steps": 100,
        "wall_s": 12.5,
        "device_hours": 0.01,
        "checkpoint": f"s3://bucket/ckpt/{recipe}-{budget}-s{seed}",
        "config": {"model": {"preset": "tiny"}, "seed": seed},
        "created_at": CREATED,
    }
    return {**fields, **extra}


def hand_rows() -> list[dict]:
    """Means by hand (WER %): scratch 100h 32 ± 2.83 (n=2), 1000h 21 ± 1.41 (n=2);
    ssl 100h 17 ± 2 (n=3), 1000h 10 (n=1); ssl+nst 100h 12 (n=1) plus a failed
    trial that carries a WER of 90 % which must not be averaged in."""
    return [
        trial("scratch", "100h", 100.0, 0, 0.30),
        trial("scratch", "100h", 100.0, 1, 0.34),
        trial("scratch", "1kh", 1000.0, 0, 0.20),
        trial("scratch", "1kh", 1000.0, 1, 0.22),
        trial("ssl", "100h", 100.0, 0, 0.15),
        trial("ssl", "100h", 100.0, 1, 0.17),
        trial("ssl", "100h", 100.0, 2, 0.19),
        trial("ssl", "1kh", 1000.0, 0, 0.10),
        trial("ssl+nst", "100h", 100.0, 0, 0.12),
        {
            **trial("ssl+nst", "100h", 100.0, 1, None, status="failed", error="OOM | step 7"),
            "wer": 0.90,
        },
    ]


def test_hand_made_rows_validate():
    rows = [make_row(**r) for r in hand_rows()]
    table = schemas.validate(pa.Table.from_pylist(rows), "results")
    assert table.num_rows == 10
    first = rows[0]
    assert (first["wer"], first["cer"]) == (0.30, 0.30 / 4)  # from scores[0]
    assert (first["init"], first["nst_generations"]) == ("scratch", 0)
    assert (rows[8]["init"], rows[8]["nst_generations"]) == ("ssl", 1)
    assert json.loads(first["config_json"]) == {"model": {"preset": "tiny"}, "seed": 0}
    assert rows[1]["scores"][1] == {
        "test_set": "test-other",
        "wer": 0.68,
        "cer": None,
        "words": 400,
        "utterances": None,
    }
    assert make_row(**first) == first  # idempotent: append_results re-makes rows


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"colour": "red"}, "unknown fields"),
        ({"labeled_hours": None}, "labeled_hours"),
        ({"labeled_hours": 0.0}, "labeled_hours"),
        ({"recipe": "magic"}, "recipe"),
        ({"init": "ssl"}, "init"),
        ({"nst_generations": 2}, "nst_generations"),
        ({"scores": []}, "wer"),  # ok without a WER
        ({"wer": 0.5}, "disagrees"),
        ({"status": "failed"}, "error"),  # failed without a reason
        ({"error": "boom"}, "error"),  # ok with an error
        ({"scores": [{"test_set": "a", "wer": 0.1, "ter": 1.0}]}, "ter"),
        ({"seed": 1.5}, "seed"),
        ({"created_at": "yesterday"}, "created_at"),
    ],
)
def test_make_row_rejects_bad_fields(change, match):
    with pytest.raises(schemas.SchemaError, match=match):
        make_row(**{**trial("scratch", "100h", 100.0, 0, 0.3), **change})


def test_append_twice_keeps_both(tmp_path):
    rows = hand_rows()
    path = append_results(str(tmp_path), rows[:4])
    assert path == str(tmp_path / "results.parquet")
    append_results(str(tmp_path), rows[4:])
    table = read_results([str(tmp_path)])
    assert table.num_rows == 10
    assert table.column("trial_id").to_pylist() == [r["trial_id"] for r in rows]


def test_reappend_same_trial_replaces_it(tmp_path):
    rows = hand_rows()
    append_results(str(tmp_path), rows)
    redo = trial("scratch", "100h", 100.0, 0, 0.25)
    # The same key twice in one call counts once too: the last wins.
    append_results(str(tmp_path), [trial("scratch", "100h", 100.0, 0, 0.99), redo])
    # Read the file itself: read_results would hide duplicates written to it.
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.num_rows == 10
    by_id = dict(
        zip(table.column("trial_id").to_pylist(), table.column("wer").to_pylist(), strict=True)
    )
    assert by_id["scratch-100h-s0"] == 0.25
    assert by_id["scratch-100h-s1"] == 0.34


def test_read_results_merges_tables(tmp_path):
    rows = hand_rows()
    first = append_results(str(tmp_path / "a"), rows[:5])
    other = [{**r, "sweep": "ablation-b"} for r in rows[5:]]
    append_results(str(tmp_path / "b" / "custom.parquet"), other)
    merged = read_results([first, str(tmp_path / "b" / "custom.parquet")])
    assert merged.num_rows == 10
    assert set(merged.column("sweep").to_pylist()) == {"ablation", "ablation-b"}
    assert merged.schema.equals(schemas.load("results"))
    # The same table given twice is not counted twice.
    assert read_results([first, first]).num_rows == 5
    with pytest.raises(FileNotFoundError):
        read_results([str(tmp_path / "missing")])


def test_plain_readers_see_identical_values(tmp_path):
    path = append_results(str(tmp_path), hand_rows())
    arrow = pq.read_table(path)
    assert not any(isinstance(f.type, pa.ExtensionType) for f in arrow.schema)
    frame = pd.read_parquet(path)
    assert list(frame.columns) == arrow.column_names
    expected = arrow.to_pylist()
    for i, row in enumerate(expected):
        got = frame.iloc[i]
        for name, value in row.items():
            cell = got[name]
            if name == "stages":
                assert list(cell) == value
            elif name == "scores":
                cell = [{k: (None if pd.isna(v) else v) for k, v in s.items()} for s in cell]
                assert cell == value
            elif value is None:
                assert pd.isna(cell), name
            else:
                assert cell == value, name
    assert frame["created_at"].iloc[0] == pd.Timestamp(CREATED)
    assert str(frame["created_at"].dtype).endswith("UTC]")


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_report_table_plot_and_summary(tmp_path, capsys):
    append_results(str(tmp_path / "results"), hand_rows())
    out = tmp_path / "report"
    summary = report_main([str(tmp_path / "results")], str(out))
    assert (summary["read"], summary["used"], summary["quarantined"]) == (10, 9, 1)
    assert json.loads((out / "summary.json").read_text())["failed_trials"] == [
        "ablation/ssl+nst-100h-s1"
    ]
    markdown = (out / "report.md").read_text()
    assert markdown in capsys.readouterr().out
    # preset | recipe | budget | hours | WER % (test-clean) | n | test-other WER %
    for line in [
        "| tiny | scratch | 100h | 100 | 32.00 ± 2.83 | 2 | 64.00 ± 5.66 |",
        "| tiny | scratch | 1kh | 1,000 | 21.00 ± 1.41 | 2 | 42.00 ± 2.83 |",
        "| tiny | ssl | 100h | 100 | 17.00 ± 2.00 | 3 | 34.00 ± 4.00 |",
        "| tiny | ssl | 1kh | 1,000 | 10.00 | 1 | 20.00 |",
        "| tiny | ssl+nst | 100h | 100 | 12.00 | 1 | 24.00 |",
        "| ssl | 17.00 ± 2.00 (n=3) | 10.00 (n=1) |",
        "| ssl+nst | 12.00 (n=1) | — |",
    ]:
        assert line in markdown, line
    failed = markdown.split("## Failed trials", 1)[1]
    assert "ssl+nst-100h-s1" in failed and "OOM \\| step 7" in failed
    assert "90.00" not in markdown and "51.00" not in markdown  # (12 + 90) / 2
    width, height = png_size((out / "wer_vs_hours.png").read_bytes())
    assert 400 <= width <= 3000 and 300 <= height <= 3000
    assert (out / "wer_vs_hours.png").stat().st_size > 10_000


def test_report_single_budget_and_merged_inputs(tmp_path):
    rows = [r for r in hand_rows() if r["budget"] == "100h" and "status" not in r]
    scratch = [r for r in rows if r["recipe"] == "scratch"]
    others = [{**r, "preset": "base"} for r in rows if r["recipe"] != "scratch"]
    a = append_results(str(tmp_path / "a"), scratch)
    b = append_results(str(tmp_path / "b"), others)
    summary = report_main([a, str(tmp_path / "b")], str(tmp_path / "out"))
    assert (summary["read"], summary["used"], summary["quarantined"]) == (6, 6, 0)
    assert summary["labeled_hours"] == [100.0]
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert "| tiny | scratch | 100h | 100 | 32.00 ± 2.83 | 2 |" in markdown
    assert "| base | ssl | 100h | 100 | 17.00 ± 2.00 | 3 |" in markdown
    assert "Failed trials" not in markdown and f"`{tmp_path / 'b'}`" in markdown
    assert b == str(tmp_path / "b" / "results.parquet")
    png_size((tmp_path / "out" / "wer_vs_hours.png").read_bytes())


def test_report_with_only_failed_trials_still_writes_then_raises(tmp_path):
    append_results(str(tmp_path), [hand_rows()[-1]])
    with pytest.raises(NothingUsable):
        report_main([str(tmp_path)], str(tmp_path / "out"))
    assert "No successful trials." in (tmp_path / "out" / "report.md").read_text()
    png_size((tmp_path / "out" / "wer_vs_hours.png").read_bytes())


def test_results_module_never_imports_ray():
    import subprocess
    import sys

    code = "import sys; sys.modules['ray'] = None\nimport bigssl.results, bigssl.stages.report\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_results_path_is_stable(tmp_path: Path):
    # A folder and the .parquet file inside it name the same table.
    append_results(str(tmp_path), hand_rows()[:2])
    append_results(str(tmp_path / "results.parquet"), hand_rows()[2:3])
    assert read_results([str(tmp_path)]).num_rows == 3


def test_append_and_report_on_s3(tmp_path, monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    server = moto_server.ThreadedMotoServer(port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }.items():
            monkeypatch.setenv(key, value)
        boto3.client("s3").create_bucket(Bucket="results-bucket")
        rows = hand_rows()
        append_results("s3://results-bucket/sweep", rows[:4])
        path = append_results("s3://results-bucket/sweep", rows[3:])  # rows[3] replaced
        assert path == "s3://results-bucket/sweep/results.parquet"
        assert read_results([path]).num_rows == 10
        summary = report_main(["s3://results-bucket/sweep"], "s3://results-bucket/report")
        assert (summary["used"], summary["quarantined"]) == (9, 1)
        local = tmp_path / "plot.png"
        boto3.client("s3").download_file("results-bucket", "report/wer_vs_hours.png", str(local))
        png_size(local.read_bytes())
    finally:
        server.stop()
