"""Garbage collection of the artifact store: only old, unreferenced blobs and old temporary
files go, and a blob stored again while gc runs is kept."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tidal.store.artifacts import ArtifactStore
from tidal.store.gc import collect, digests_in_json

HOUR = 3600


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _blob_file(tmp_root: Path, digest: str) -> Path:
    hex_part = digest.split(":", 1)[1]
    return tmp_root / "blobs" / hex_part[:2] / hex_part[2:4] / hex_part


def test_old_unreferenced_blobs_and_old_temporary_files_go_and_nothing_else(tmp_path):
    store = ArtifactStore(str(tmp_path))
    kept = store.put_bytes(b"referenced")
    orphan = store.put_bytes(b"orphan")
    young_orphan = store.put_bytes(b"young orphan")
    for blob in (kept, orphan):
        _age(_blob_file(tmp_path, blob.digest), 2 * HOUR)
    (tmp_path / "tmp").mkdir(exist_ok=True)
    old_part, fresh_part = tmp_path / "tmp" / "old.part", tmp_path / "tmp" / "fresh.part"
    old_part.write_bytes(b"x" * 10)
    fresh_part.write_bytes(b"being written")
    _age(old_part, 2 * HOUR)
    plain = "predictions/endpoint/part-0.parquet"  # plain files are never garbage
    store.write_file(plain, b"rows")
    _age(tmp_path / plain, 2 * HOUR)

    dry = collect(store, lambda: {kept.digest}, grace_seconds=HOUR, dry_run=True)
    assert {(i.kind, i.name) for i in dry.removed} == {("blob", orphan.digest),
                                                       ("temporary", "old.part")}
    assert store.exists(orphan.digest) and old_part.exists()  # a dry run removes nothing

    report = collect(store, lambda: {kept.digest}, grace_seconds=HOUR)
    assert [(i.kind, i.name) for i in report.removed] == [(i.kind, i.name) for i in dry.removed]
    assert report.bytes_freed == len(b"orphan") + 10 == dry.bytes_freed
    assert (report.kept_referenced, report.kept_recent) == (1, 2)
    assert not store.exists(orphan.digest) and not old_part.exists()
    assert store.get_bytes(kept.digest) == b"referenced"
    assert store.get_bytes(young_orphan.digest) == b"young orphan"
    assert fresh_part.read_bytes() == b"being written"
    assert store.read_file(plain) == b"rows"
    assert not list((tmp_path / "tmp").glob("*.gc"))  # nothing left half-removed


def test_a_blob_stored_again_while_gc_runs_is_kept(workspace):
    """The interleaving gc guards against: it has listed the blobs, and before it removes the
    unreferenced ones, a writer stores the same bytes again (finding them already there) and
    has yet to record its reference. The write refreshes the blob; the grace period keeps it."""
    store = workspace.artifacts
    blob = store.put_bytes(b"written once, then again during gc")
    time.sleep(2.5)  # older than the grace period (S3 times are to the second)

    def references_while_a_writer_stores_it_again() -> set[str]:
        assert store.put_bytes(b"written once, then again during gc") == blob
        return set()  # the writer has not recorded its reference yet

    report = collect(store, references_while_a_writer_stores_it_again, grace_seconds=1)
    assert report.removed == []
    assert store.get_bytes(blob.digest) == b"written once, then again during gc"
    # once nothing stores it again, an old orphan does go
    time.sleep(2.5)
    gone = collect(store, set, grace_seconds=1)
    assert [item.name for item in gone.removed] == [blob.digest]
    assert not store.exists(blob.digest)


@pytest.mark.parametrize("text, found", [
    (None, set()),
    ('{"model.skops": {"digest": "blake2b:' + "a" * 64 + '", "size": 3}}', {"blake2b:" + "a" * 64}),
    ('[{"blob": "blake2b:' + "b" * 64 + '", "kind": "arrow"}, {"dataset": "datasets:/x/1"}]',
     {"blake2b:" + "b" * 64}),
])
def test_digests_are_found_anywhere_in_a_json_reference(text, found):
    assert digests_in_json(text) == found
