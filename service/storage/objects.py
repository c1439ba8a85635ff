"""Datasets' Parquet files on S3-compatible object storage (STORAGE_URL=s3://bucket/prefix).

Nothing of a dataset stays on local disk: a new file is converted into a local work
directory and uploaded before the upload is answered, then removed; a step that needs
the file as a local path gets a scratch copy for its length, named after its process so
that one left by a killed process is removed by the next one of that host.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from obstore.exceptions import NotFoundError

from service.duckdb_shared import owned_prefix, remove_orphans
from service.storage import s3
from service.storage.base import TEMP_SUFFIX, FileStore, StoredFileMissing

COPY_PREFIX = "copy-"


class ObjectFileStore(FileStore):
    def __init__(self, url: str, settings: s3.S3Settings, work_dir: str | Path):
        self.where = s3.S3Location.parse(url)
        self.settings = settings
        self.work_dir = Path(work_dir).resolve()

    @property
    def client(self):
        return self.settings.client(self.where.bucket)

    @property
    def incoming_dir(self) -> Path:
        return self.work_dir / "incoming"

    @property
    def outgoing_dir(self) -> Path:
        """New files between their conversion and their upload."""
        return self.work_dir / "outgoing"

    @property
    def scratch_dir(self) -> Path:
        return self.work_dir / "scratch"

    def ensure(self) -> None:
        super().ensure()
        self.outgoing_dir.mkdir(parents=True, exist_ok=True)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        # Copies left by processes of this host that were killed: a restarted worker clears them.
        remove_orphans(self.scratch_dir, COPY_PREFIX)

    def _key(self, file_name: str) -> str:
        return self.where.key(self.check_name(file_name))

    def location(self, file_name: str) -> str:
        return self.where.url(self.check_name(file_name))

    def write_path(self, file_name: str) -> Path:
        return self.outgoing_dir / self.check_name(file_name)

    def publish(self, file_name: str) -> None:
        path = self.write_path(file_name)
        try:
            s3.upload(self.client, self._key(file_name), path)
        finally:
            path.unlink(missing_ok=True)

    def discard(self, file_name: str) -> None:
        self.write_path(file_name).unlink(missing_ok=True)
        self.remove(file_name)

    def exists(self, file_name: str) -> bool:
        return s3.exists(self.client, self._key(file_name))

    def open(self, file_name: str) -> BinaryIO:
        try:
            return s3.ObjectReader(self.client, self._key(file_name))  # type: ignore[return-value]
        except NotFoundError:
            raise StoredFileMissing(f"no stored file {file_name}") from None

    def iter_bytes(self, file_name: str) -> tuple[int, Iterator[bytes]]:
        try:
            return s3.stream(self.client, self._key(file_name))
        except NotFoundError:
            raise StoredFileMissing(f"no stored file {file_name}") from None

    @contextlib.contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        remove_orphans(self.scratch_dir, COPY_PREFIX)
        path = self.scratch_dir / f"{owned_prefix(COPY_PREFIX)}{uuid.uuid4().hex}.parquet"
        try:
            try:
                s3.download(self.client, self._key(file_name), path)
            except NotFoundError:
                raise StoredFileMissing(f"no stored file {file_name}") from None
            yield path
        finally:
            path.unlink(missing_ok=True)

    def remove(self, file_name: str) -> None:
        s3.delete(self.client, self._key(file_name))

    def leftover_places(self) -> list[tuple[Path, str, str]]:
        return [
            *super().leftover_places(),
            (self.outgoing_dir, "", ".parquet"),
            (self.outgoing_dir, ".", TEMP_SUFFIX),
            (self.scratch_dir, COPY_PREFIX, ""),
        ]

    def describe(self) -> dict:
        return {"storage": "s3", "bucket": self.where.bucket}
