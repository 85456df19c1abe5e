"""The whole recipe, one command: prepare a corpus (the embedded TTS speech, a list of
files, or a LibriSpeech folder) -> the sweep of a sweep config: split into nested label
budgets -> features -> pre-training -> CTC fine-tuning from scratch and from the
pre-trained encoder at every budget -> pseudo-labels -> noisy students -> results
table -> report. It ends by printing the table and the paths of the report and plot.
"""

from __future__ import annotations

import time
from pathlib import Path

from bigssl import storage
from bigssl.stages.prepare import prepare_dir, prepare_librispeech, prepare_tts
from bigssl.stages.sweep import print_report, run_sweep
from bigssl.stages.sweep_plan import SweepConfig


def run_pipeline(
    out: str,
    sweep_config: str | Path,
    overrides: list[str],
    *,
    tts_hours: float | None = None,
    manifest: str | None = None,
    librispeech: str | None = None,
    ray_address: str | None = None,
) -> dict:
    """Prepare one corpus into ``OUT/corpus``, then sweep it into ``OUT/sweep``."""
    if sum(x is not None for x in (tts_hours, manifest, librispeech)) != 1:
        raise ValueError("give exactly one corpus: tts_hours, manifest or librispeech")
    start = time.perf_counter()
    corpus = storage.join(out, "corpus")
    cfg = SweepConfig.load(sweep_config, [*overrides, f"corpus={corpus}"])  # fails fast
    print("-- [1/2] prepare the corpus", flush=True)
    if manifest is not None:
        prepared = prepare_dir(manifest, corpus, None, [])
    elif librispeech is not None:
        prepared = prepare_librispeech(librispeech, corpus, None, [])
    else:
        prepared = prepare_tts(
            corpus, None, [f"tts.hours={tts_hours}", "tts.seed=0", "utterances_per_shard=200"]
        )
    print("-- [2/2] sweep: split, features, pre-training, fine-tuning, noisy student", flush=True)
    sweep_out = storage.join(out, "sweep")
    swept = run_sweep(cfg, sweep_out, ray_address).finish(sweep_out)
    wall = time.perf_counter() - start
    record = {"wall_s": wall, "prepare": prepared, "sweep": swept}
    storage.write_json(storage.join(out, "pipeline.json"), record)
    print_report(swept.get("report"))
    print(
        f"== done in {wall / 60:.1f} min\n"
        f"   results: {swept['results']}\n   report:  {swept['report']}\n"
        f"   plot:    {swept['plot']}",
        flush=True,
    )
    return record
