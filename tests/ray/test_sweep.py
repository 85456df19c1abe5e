"""``bigssl sweep`` on local Ray: a two-trial grid, interrupted and resumed."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bigssl import schemas
from bigssl.stages.prepare import prepare_tts
from bigssl.stages.sweep import SweepConfig, run_sweep

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parents[2]
# Two scratch trials (two budgets), a handful of steps: the machinery, not the model.
GRID = [
    "name=resume",
    "split.fractions=0.5,1",
    "split.test_hours=0.01",
    "split.dev_hours=0.005",  # the default 0.05 h dev would take this 0.05 h corpus whole
    "grid.recipes=scratch",
    "finetune.train.max_steps=8",
    "finetune.train.log_every=4",
]


def _sweep_cli(corpus: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "platform"), "RAY_ADDRESS": ""}
    command = [sys.executable, "-m", "bigssl.cli", "sweep", "--config"]
    command += [str(ROOT / "configs" / "sweep-demo.yaml"), "--corpus", str(corpus)]
    command += ["--out", str(out), "--ray-address", "local", *GRID]
    return subprocess.Popen(
        command,
        env=env,
        start_new_session=True,  # its own process group: the kill takes its Ray with it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _snapshot(folder: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``folder``: (mtime in ns, content hash), by relative path."""
    return {
        str(f.relative_to(folder)): (
            f.stat().st_mtime_ns,
            hashlib.sha256(f.read_bytes()).hexdigest(),
        )
        for f in sorted(folder.rglob("*"))
        if f.is_file()
    }


def test_interrupted_sweep_resumes_only_the_missing_trial(ray_session, tmp_path, capsys):
    corpus, out = tmp_path / "corpus", tmp_path / "sweep"
    prepare_tts(str(corpus), None, ["tts.hours=0.05", "tts.seed=2", "utterances_per_shard=30"])
    proc = _sweep_cli(corpus, out)
    rows = out / "trials"
    deadline = time.time() + 400
    try:
        while time.time() < deadline and not list(rows.glob("*/row.json")):
            assert proc.poll() is None, "the sweep ended before the kill"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finished = list(rows.glob("*/row.json"))
    assert len(finished) == 1, "the kill must land between the two trials"
    first = finished[0]
    first_state = (first.stat().st_mtime_ns, first.read_bytes())
    first_metrics = first.parent / "finetune" / "metrics.parquet"
    metrics_mtime = first_metrics.stat().st_mtime_ns
    # The killed run made the upstream (split, features, tokenizer) before its first trial.
    entries = sorted(p.name for p in (out / "cache").iterdir())
    assert {e.split("-")[0] for e in entries} == {"split", "featurize", "tokenizer"}, entries
    upstream = _snapshot(out / "cache")
    capsys.readouterr()

    cfg = SweepConfig.load(ROOT / "configs" / "sweep-demo.yaml", [*GRID, f"corpus={corpus}"])
    summary = run_sweep(cfg, str(out))

    assert (first.stat().st_mtime_ns, first.read_bytes()) == first_state  # not run again
    assert first_metrics.stat().st_mtime_ns == metrics_mtime  # nor trained again
    assert len(list(rows.glob("*/row.json"))) == 2
    table = pq.read_table(out / "results.parquet")
    schemas.validate(table, "results")
    assert sorted(table.column("trial_id").to_pylist()) == [
        "tiny-100pct-scratch-seed0",
        "tiny-50pct-scratch-seed0",
    ]
    assert table.column("status").to_pylist() == ["ok", "ok"]
    assert all(s > 0 for s in table.column("labeled_hours").to_pylist())
    assert table.column("steps").to_pylist() == [8, 8]
    assert summary.used == 2 and summary.quarantined == 0
    # Upstream artifacts were made once, by the killed run, and reused: the resumed sweep
    # said so for each, wrote no file into them and made no new entry, and its trials
    # read them there.
    printed = capsys.readouterr().out
    for stage in ("split", "featurize", "tokenizer"):
        assert f"-- {stage}: reusing {out / 'cache' / stage}-" in printed, printed
    assert sorted(p.name for p in (out / "cache").iterdir()) == entries
    assert _snapshot(out / "cache") == upstream
    used = summary.extra["upstream"]
    for name in ("splits", "features", "tokenizer"):
        assert Path(used[name]).is_relative_to(out / "cache"), used
    assert (out / "report" / "wer_vs_hours.png").stat().st_size > 0
