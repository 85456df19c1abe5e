import os
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from bigssl.data.importers import download_librispeech, librispeech_records, manifest_records
from bigssl.data.prepare import PrepareConfig, prepare_corpus
from bigssl.data.records import RawUtterance
from bigssl.data.shards import ShardSample, iter_shard
from corpora import DIR_FAULTS, DIR_GOOD, fault_dir_corpus, write_audio

CFG = PrepareConfig(utterances_per_shard=4, max_duration_s=5.0)


def test_fault_corpus_every_bad_input_is_quarantined_with_its_reason(tmp_path):
    listing = fault_dir_corpus(tmp_path / "corpus")
    summary = prepare_corpus(manifest_records(listing), str(tmp_path / "out"), CFG, {"kind": "dir"})
    assert summary.read == summary.used + summary.quarantined == 15
    manifest = pq.read_table(tmp_path / "out/manifest.parquet").to_pylist()
    assert {r["id"] for r in manifest} == DIR_GOOD
    reasons = {
        r["id"]: r["reason"] for r in pq.read_table(tmp_path / "out/quarantine.parquet").to_pylist()
    }
    for uid, expected in DIR_FAULTS.items():
        assert expected in reasons[uid], (uid, reasons.get(uid))
    by_id = {r["id"]: r for r in manifest}
    assert by_id["good-b"]["text"] == "good morning"  # whitespace normalised
    assert by_id["good-unlabeled"]["text"] is None
    assert (by_id["good-stereo"]["sample_rate"], by_id["good-stereo"]["num_channels"]) == (44100, 2)


def test_shards_hold_the_contract_and_keep_original_flac(tmp_path):
    listing = fault_dir_corpus(tmp_path / "corpus")
    prepare_corpus(manifest_records(listing), str(tmp_path / "out"), CFG, {"kind": "dir"})
    samples = []
    for shard in sorted((tmp_path / "out/shards").glob("*.tar")):
        with open(shard, "rb") as f:
            samples += [s for s in iter_shard(f, shard.name) if isinstance(s, ShardSample)]
    by_key = {s.key: s for s in samples}
    assert set(by_key) == DIR_GOOD
    assert by_key["good-a"].fields["flac"] == (tmp_path / "corpus/good/a.flac").read_bytes()
    assert set(by_key["good-unlabeled"].fields) == {"flac", "json"}  # txt only when labeled
    meta = by_key["good-b"].meta()
    assert meta["sample_rate"] == 8000 and meta["speaker"] == "s2" and meta["id"] == "good-b"


def _records(n: int, crash_at: int | None = None):
    for i in range(n):
        if i == crash_at:
            raise RuntimeError("injected crash")
        yield RawUtterance(
            id=f"u{i:03d}",
            source="t",
            text=f"word {i}",
            samples=None,
            audio_path=str(write_audio(Path(_records.root) / f"u{i}.flac", 0.3)),
        )


def test_prepare_crash_then_rerun_finishes_without_duplicates(tmp_path):
    _records.root = tmp_path / "audio"
    out = str(tmp_path / "out")
    with pytest.raises(RuntimeError, match="injected"):
        prepare_corpus(_records(10, crash_at=6), out, CFG, {"kind": "t"})
    assert len(list((tmp_path / "out/parts").glob("*.manifest.parquet"))) == 1  # chunk 0 done
    summary = prepare_corpus(_records(10), out, CFG, {"kind": "t"})
    ids = pq.read_table(tmp_path / "out/manifest.parquet").column("id").to_pylist()
    assert sorted(ids) == [f"u{i:03d}" for i in range(10)] and summary.used == 10
    with pytest.raises(ValueError, match="other settings"):
        prepare_corpus(_records(10), out, PrepareConfig(utterances_per_shard=3), {"kind": "t"})


def _librispeech(root: Path) -> Path:
    chapter = root / "train-clean-5" / "19" / "198"
    for i in range(3):
        write_audio(chapter / f"19-198-{i:04d}.flac", 0.5)
    (chapter / "19-198.trans.txt").write_text(
        "19-198-0000 HELLO THERE\n19-198-0001 GENERAL KENOBI\n19-198-0005 NO AUDIO FOR ME\n"
    )
    write_audio(root / "train-clean-5" / "77" / "book" / "long_file.flac", 0.7)  # unlabeled
    return root / "train-clean-5"


def test_librispeech_layout_and_plain_unlabeled_folders(tmp_path):
    records = {r.id: r for r in librispeech_records(_librispeech(tmp_path))}
    assert records["19-198-0000"].text == "HELLO THERE" and records["19-198-0000"].speaker == "19"
    assert records["19-198-0002"].text is None  # audio without a transcript line: unlabeled
    assert "missing file" in records["19-198-0005"].error
    assert (
        records["77-book-long_file"].speaker == "77" and records["77-book-long_file"].text is None
    )


def test_librispeech_download_unpacks_a_local_archive(tmp_path):
    src = _librispeech(tmp_path / "src" / "LibriSpeech")
    archive = tmp_path / "train-clean-5.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src, arcname="LibriSpeech/train-clean-5")
    target = download_librispeech("train-clean-5", tmp_path / "dest", url=archive.as_uri())
    assert sum(1 for r in librispeech_records(target) if r.error is None) == 4
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(src, arcname="../LibriSpeech/x")
    with pytest.raises(ValueError, match="escapes"):
        download_librispeech("x", tmp_path / "dest2", url=evil.as_uri())


def test_non_utf8_bytes_in_id_speaker_or_path_are_quarantined_not_a_crash(tmp_path):
    root = tmp_path / "corpus"
    write_audio(root / "ok.flac", 1.0)
    write_audio(root / "spk.flac", 1.0)
    write_audio(root / "ident.flac", 1.0)
    os.makedirs(root, exist_ok=True)
    latin1_name = os.fsencode(root) + b"/caf\xe9.flac"  # a real file whose name is latin-1
    with open(latin1_name, "wb") as f:
        f.write((root / "ok.flac").read_bytes())
    (root / "list.jsonl").write_bytes(
        b'{"audio": "ok.flac", "text": "fine", "speaker": "s1"}\n'
        b'{"audio": "spk.flac", "text": "x", "speaker": "jos\xe9"}\n'
        b'{"audio": "ident.flac", "text": "x", "id": "utt-\xe9"}\n'
        b'{"audio": "caf\xe9.flac", "text": "x"}\n'
    )
    out = tmp_path / "out"
    summary = prepare_corpus(manifest_records(root / "list.jsonl"), str(out), CFG, {"kind": "dir"})
    assert (summary.read, summary.used, summary.quarantined) == (4, 1, 3)
    assert [r["id"] for r in pq.read_table(out / "manifest.parquet").to_pylist()] == ["ok"]
    reasons = sorted(r["reason"] for r in pq.read_table(out / "quarantine.parquet").to_pylist())
    assert reasons == [
        "non-UTF-8 bytes in 'audio_path'",
        "non-UTF-8 bytes in 'id'",
        "non-UTF-8 bytes in 'speaker'",
    ]
    # a re-run into the same folder finishes the same way instead of crashing again
    again = prepare_corpus(manifest_records(root / "list.jsonl"), str(out), CFG, {"kind": "dir"})
    assert (again.read, again.used, again.quarantined) == (4, 1, 3)


def test_a_link_leading_out_of_the_manifest_folder_is_unsafe_like_an_absolute_path(tmp_path):
    root = tmp_path / "corpus"
    write_audio(tmp_path / "outside.flac", 1.0)
    write_audio(root / "inside.flac", 1.0)
    (root / "out-link.flac").symlink_to(tmp_path / "outside.flac")
    (root / "in-link.flac").symlink_to(root / "inside.flac")  # stays inside: fine
    (root / "sub").mkdir()
    (root / "sub" / "up").symlink_to(tmp_path)  # a folder link up and out
    (root / "list.jsonl").write_text(
        '{"audio": "out-link.flac", "text": "x", "id": "out"}\n'
        '{"audio": "in-link.flac", "text": "x", "id": "in"}\n'
        '{"audio": "sub/up/outside.flac", "text": "x", "id": "up"}\n'
        f'{{"audio": "{tmp_path / "outside.flac"}", "text": "x", "id": "abs"}}\n'
    )
    out = tmp_path / "out"
    summary = prepare_corpus(manifest_records(root / "list.jsonl"), str(out), CFG, {"kind": "dir"})
    assert (summary.used, summary.quarantined) == (1, 3)
    assert [r["id"] for r in pq.read_table(out / "manifest.parquet").to_pylist()] == ["in"]
    reasons = {r["id"]: r["reason"] for r in pq.read_table(out / "quarantine.parquet").to_pylist()}
    assert "unsafe audio path" in reasons["abs"]
    assert "leads outside the manifest's folder" in reasons["out"]
    assert "leads outside the manifest's folder" in reasons["up"]
