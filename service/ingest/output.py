"""Atomic output: write next to the destination, rename only on success."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path

from service.storage.base import TEMP_SUFFIX

# Names of the work files below; a process killed mid-conversion leaves them behind, and
# service.datasets.remove_upload_leftovers finds them by these.
SCRATCH_PREFIX = ".ingest-"


def temp_path_for(dest: Path, suffix: str = TEMP_SUFFIX) -> Path:
    # Same directory as dest so the final rename never crosses file systems.
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex}{suffix}")


def remove_quietly(path: Path | None) -> None:
    if path is not None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(dest: Path):
    """Yield a temporary path; on success it becomes ``dest``, on any error it is removed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path_for(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        remove_quietly(tmp)
        raise


@contextlib.contextmanager
def scratch_file(directory: Path, suffix: str):
    """A temporary work file (e.g. a transcoded copy of the upload), always removed afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{SCRATCH_PREFIX}{uuid.uuid4().hex}{suffix}"
    try:
        yield path
    finally:
        remove_quietly(path)
