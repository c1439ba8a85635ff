"""Work files of uploads cut short are deleted once stale, and nothing else is."""

from __future__ import annotations

import os
import time

from service.datasets import LEFTOVER_SECONDS, remove_upload_leftovers
from service.storage import LocalStore

STALE = time.time() - LEFTOVER_SECONDS - 60


def touch(path, mtime=None):
    """Create ``path`` (and its parents), optionally with an old modification time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_stale_work_files_are_deleted_and_everything_else_kept(tmp_path):
    store = LocalStore(tmp_path / "store")
    store.ensure()
    scratch = tmp_path / "tmp"
    stale = [
        touch(store.incoming_dir / "upload-abc.part", STALE),
        touch(store.root / ".0b7c-4d.parquet.1f2e.tmp", STALE),
        touch(scratch / ".ingest-9a8b.utf8.csv", STALE),
    ]
    kept = [
        touch(store.incoming_dir / "upload-fresh.part"),  # an upload arriving now
        touch(store.root / ".fresh.parquet.77.tmp"),
        touch(scratch / ".ingest-fresh.normalized.csv"),
        touch(store.root / "0b7c8d9e-0000-4000-8000-000000000000.parquet", STALE),  # a dataset's file
        touch(store.incoming_dir / "notes.txt", STALE),
        touch(scratch / "duckdb" / "spill.tmp", STALE),
    ]
    os.utime(store.incoming_dir, (STALE, STALE))

    assert remove_upload_leftovers(store, scratch) == 3
    assert [p for p in stale if p.exists()] == []
    assert all(p.exists() for p in kept)
    assert store.incoming_dir.is_dir()
    assert remove_upload_leftovers(store, scratch) == 0


def test_missing_directories_are_not_an_error(tmp_path):
    assert remove_upload_leftovers(LocalStore(tmp_path / "nowhere"), tmp_path / "none") == 0
    assert remove_upload_leftovers(LocalStore(tmp_path / "nowhere"), None) == 0
