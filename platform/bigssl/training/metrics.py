"""Training metrics: TensorBoard events and an Arrow table in the run folder (rank 0 writes).

On resume from step S, rows and events after S from the crashed attempt are
dropped (``purge_step``), so the curves show each step once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from bigssl import storage


class MetricsLog:
    def __init__(self, run_dir: str, resume_step: int = 0, tensorboard: bool = True):
        self.uri = storage.join(run_dir, "metrics.parquet")
        self.rows: list[dict[str, Any]] = []
        if storage.exists(self.uri):
            self.rows = [
                r for r in storage.read_parquet(self.uri).to_pylist() if r["step"] <= resume_step
            ]
        self._writer = None
        if tensorboard and not storage.is_remote(run_dir):
            from tensorboardX import SummaryWriter

            Path(run_dir, "tensorboard").mkdir(parents=True, exist_ok=True)
            self._writer = SummaryWriter(
                str(Path(run_dir, "tensorboard")),
                purge_step=resume_step + 1 if resume_step else None,
            )

    def log(self, step: int, metrics: dict[str, float]) -> None:
        self.rows.append({"step": step, **metrics})
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(name, value, step)

    def flush(self) -> None:
        if self.rows:
            # Rows differ in keys (dev scores come every eval_every steps only), and
            # from_pylist takes its columns from the first row: name them all.
            names = list(dict.fromkeys(k for row in self.rows for k in row))
            rows = [{k: row.get(k) for k in names} for row in self.rows]
            storage.write_parquet(pa.Table.from_pylist(rows), self.uri)
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        self.flush()
        if self._writer is not None:
            self._writer.close()
