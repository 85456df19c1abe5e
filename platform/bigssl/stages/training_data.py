"""What a training run reads: feature files, a manifest's selection of rows, Ray datasets.

Design decisions:
- Two datasets are registered with Ray Train: ``train`` (the selected feature
  shards) and ``resume``, a *factory* Ray Train calls whenever it (re)starts the
  worker group: it reads the newest committed checkpoint's data position and leaves
  the shards already consumed in that epoch out of the read.
- A manifest selects rows by id inside the read (``_keep_selected``), which also
  overlays pseudo-label text and repeats rows to set the labeled : pseudo mix.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc

from bigssl import storage
from bigssl.data.bucketing import BucketConfig, bucket_batches
from bigssl.data.features import shard_stem
from bigssl.training import checkpoint as ckpt

if TYPE_CHECKING:
    import ray.data

DATA_TASK_CPUS = 0.25


def feature_files(features: str) -> list[str]:
    files = storage.list_files(storage.join(features, "features"), ".parquet")
    if not files:
        raise FileNotFoundError(
            f"no feature parquet under {features}/features (run bigssl featurize)"
        )
    return files


def shard_totals(features: str) -> dict[str, int]:
    """Rows per feature shard, from featurize's done markers."""
    markers = storage.list_files(storage.join(features, "done"), ".json")
    return {storage.read_json(m)["shard"]: storage.read_json(m)["used"] for m in markers}


def feature_hours(features: str) -> float:
    markers = storage.list_files(storage.join(features, "done"), ".json")
    return sum(storage.read_json(m)["seconds"] for m in markers) / 3600


def quarantined_ids(features: str) -> set[str]:
    """Utterances featurize quarantined: listed in manifests, absent from the features."""
    out: set[str] = set()
    for q in storage.list_files(storage.join(features, "quarantine"), ".parquet"):
        out.update(storage.read_parquet(q).column("id").to_pylist())
    return out


def usable_rows(manifest: pa.Table, skip: set[str]) -> tuple[dict[str, str], float]:
    """{id: shard stem} of a manifest's rows not in ``skip`` (featurize's quarantine), and
    their hours."""
    rows: dict[str, str] = {}
    seconds = 0.0
    for uid, shard, duration in zip(
        manifest.column("id").to_pylist(),
        manifest.column("shard").to_pylist(),
        manifest.column("duration_s").to_pylist(),
        strict=True,
    ):
        if uid not in skip:
            rows[uid] = shard_stem(shard)
            seconds += duration
    return rows, seconds / 3600


def pool_selection(features: str, manifest: str) -> tuple[Selection, dict[str, int], float]:
    """Every utterance a manifest lists (text or not) that has features: selection, rows
    per shard, hours. Pre-training reads a split's pool this way, never its dev/test."""
    rows, hours = usable_rows(storage.read_parquet(manifest), quarantined_ids(features))
    table_rows = storage.read_parquet(manifest).num_rows
    if not rows:
        raise ValueError(f"manifest: {manifest} lists no utterance with features in {features}")
    totals: dict[str, int] = {}
    for stem in rows.values():
        totals[stem] = totals.get(stem, 0) + 1
    selection = Selection(ids=list(rows), shards=set(totals), skipped=table_rows - len(rows))
    return selection, totals, hours


def _stem(uri: str) -> str:
    return uri.rsplit("/", 1)[-1].removesuffix(".parquet")


@dataclass
class Selection:
    """A subset of the feature rows: a label-budget manifest's ids and the shards holding them.

    For noisy-student training, ``pseudo`` maps unlabeled ids to their teacher
    labels (the text column is overlaid) and each labeled / pseudo-labeled row is
    read ``repeat_labeled`` / ``repeat_pseudo`` times per epoch (copies get ids
    ``ID#k``), which sets the labeled : pseudo mix in every batch in expectation.
    """

    ids: list[str]
    shards: set[str]  # shard stems
    pseudo: dict[str, str] = field(default_factory=dict)
    repeat_labeled: int = 1
    repeat_pseudo: int = 1
    skipped: int = 0  # manifest rows featurize quarantined (its quarantine/ says why)


def _keep_selected(
    batch: pa.Table,
    ids: pa.Array,
    pseudo_ids: pa.Array,
    pseudo_text: pa.Array,
    repeat_labeled: int,
    repeat_pseudo: int,
) -> pa.Table:
    batch = batch.filter(pc.is_in(batch.column("id"), value_set=ids))
    if len(pseudo_ids) == 0 and repeat_labeled == 1:
        return batch
    where = pc.index_in(batch.column("id"), value_set=pseudo_ids)
    is_pseudo = pc.is_valid(where)
    text = pc.if_else(is_pseudo, pc.take(pseudo_text, where), batch.column("text"))
    batch = batch.set_column(batch.schema.get_field_index("text"), "text", text)
    copies = []
    for flag, repeat in ((False, repeat_labeled), (True, repeat_pseudo)):
        part = batch.filter(pc.equal(is_pseudo, flag))
        for k in range(repeat):
            if k:
                suffixed = pc.binary_join_element_wise(part.column("id"), pa.scalar(str(k)), "#")
                part_k = part.set_column(part.schema.get_field_index("id"), "id", suffixed)
            else:
                part_k = part
            copies.append(part_k)
    return pa.concat_tables(copies, promote_options="permissive")  # copies lose "not null"


def _select_kwargs(selection: Selection) -> dict:
    # Shipped once per read task; a label budget of 10 M utterances is ~200 MB of ids,
    # beyond which a join against the manifest would be the better plan.
    pseudo_ids = sorted(selection.pseudo)
    return {
        "ids": pa.array(sorted(selection.ids), pa.string()),
        "pseudo_ids": pa.array(pseudo_ids, pa.string()),
        "pseudo_text": pa.array([selection.pseudo[i] for i in pseudo_ids], pa.string()),
        "repeat_labeled": selection.repeat_labeled,
        "repeat_pseudo": selection.repeat_pseudo,
    }


def _files_of(files: list[str], selection: Selection, what: str, features: str) -> list[str]:
    chosen = [f for f in files if _stem(f) in selection.shards]
    if not chosen:
        raise FileNotFoundError(
            f"none of the {what}'s {len(selection.shards)} shards has features in {features}"
        )
    return chosen


def make_datasets(
    features: str,
    run_dir: str,
    selection: Selection | None = None,
    dev: Selection | None = None,
) -> dict[str, Callable[[], ray.data.Dataset]]:
    """``train`` and ``resume`` factories (see module doc), and ``dev`` when given."""
    all_files = feature_files(features)
    columns = ["id", "shard", "feats", "num_frames", "num_mel_bins", "text"]
    files = (
        all_files if selection is None else _files_of(all_files, selection, "manifest", features)
    )

    def read(paths: list[str], chosen: Selection | None = selection) -> ray.data.Dataset:
        import ray.data

        # Data tasks ask for a quarter CPU so reads and filters share what the trainers leave.
        ds = ray.data.read_parquet(
            paths,
            columns=columns,
            override_num_blocks=len(paths),
            num_cpus=DATA_TASK_CPUS,
        )
        if chosen is not None:
            ds = ds.map_batches(
                _keep_selected,
                fn_kwargs=_select_kwargs(chosen),
                batch_format="pyarrow",
                batch_size=None,
                num_cpus=DATA_TASK_CPUS,
            )
        return ds

    def train() -> ray.data.Dataset:
        return read(files)

    def resume() -> ray.data.Dataset:
        latest = ckpt.latest_checkpoint(run_dir)
        consumed = set()
        if latest is not None:
            consumed = set(
                storage.read_json(storage.join(str(latest), "train_state.json"))["position"][
                    "consumed"
                ]
            )
        # Never iterated when nothing remains (the worker then starts the next epoch on
        # `train`); a dataset must still be returned.
        remaining = [f for f in files if _stem(f) not in consumed] or files[:1]
        return read(remaining)

    datasets = {"train": train, "resume": resume}
    if dev is not None:
        dev_files = _files_of(all_files, dev, "dev manifest", features)
        datasets["dev"] = lambda: read(dev_files, dev)
    return datasets


def feature_rows(features: str, selection: Selection | None, columns: list[str]) -> list[dict]:
    """The selection's feature rows (each once; every row when None), read on the driver:
    small sets, or few columns, only."""
    wanted = pa.array(sorted(selection.ids), pa.string()) if selection is not None else None
    out: list[dict] = []
    for uri in feature_files(features):
        if selection is None or _stem(uri) in selection.shards:
            table = storage.read_parquet(uri, columns=columns)
            if wanted is not None:
                table = table.filter(pc.is_in(table.column("id"), value_set=wanted))
            out += table.to_pylist()
    return out


def steps_per_epoch(
    features: str,
    selection: Selection | None,
    bucket: BucketConfig,
    num_workers: int,
    accumulation: int,
) -> int:
    """Optimizer steps in one pass over the selection: its rows' lengths cut as the workers
    cut them (each worker holds about 1 / num_workers of the rows)."""
    pseudo = set(selection.pseudo) if selection is not None else set()
    lengths = []
    for row in feature_rows(features, selection, ["id", "num_frames"]):
        repeat = 1
        if selection is not None:
            repeat = selection.repeat_pseudo if row["id"] in pseudo else selection.repeat_labeled
        lengths += [int(row["num_frames"])] * repeat
    random.Random(0).shuffle(lengths)
    batches = sum(1 for _ in bucket_batches(lengths[::num_workers], int, bucket))
    return max(1, math.ceil(batches / accumulation))
