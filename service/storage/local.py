"""Datasets' Parquet files in a local directory (STORAGE_DIR)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from service.storage.base import TEMP_SUFFIX, FileStore, StoredFileMissing

CHUNK_BYTES = 1 << 20


class LocalStore(FileStore):
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        super().ensure()

    @property
    def incoming_dir(self) -> Path:
        """On the store's filesystem, so a converted file is renamed, never copied."""
        return self.root / ".incoming"

    def path_for(self, file_name: str) -> Path:
        """The path of a stored file; ValueError for anything but a plain stored name."""
        path = (self.root / self.check_name(file_name)).resolve()
        # Belt and braces: the canonical path must sit directly under the store.
        if path.parent != self.root:
            raise ValueError(f"not a stored dataset file name: {file_name!r}")
        return path

    def location(self, file_name: str) -> str:
        return str(self.path_for(file_name))

    def write_path(self, file_name: str) -> Path:
        return self.path_for(file_name)

    def publish(self, file_name: str) -> None:
        pass  # converted in place

    def discard(self, file_name: str) -> None:
        self.remove(file_name)

    def exists(self, file_name: str) -> bool:
        return self.path_for(file_name).is_file()

    def _existing(self, file_name: str) -> Path:
        path = self.path_for(file_name)
        if not path.is_file():
            raise StoredFileMissing(f"no stored file {file_name}")
        return path

    def open(self, file_name: str) -> BinaryIO:
        return open(self._existing(file_name), "rb")

    def iter_bytes(self, file_name: str) -> tuple[int, Iterator[bytes]]:
        handle = self.open(file_name)
        size = os.fstat(handle.fileno()).st_size

        def chunks() -> Iterator[bytes]:
            with handle:
                while chunk := handle.read(CHUNK_BYTES):
                    yield chunk

        return size, chunks()

    @contextlib.contextmanager
    def local_copy(self, file_name: str) -> Iterator[Path]:
        # Stored files are replaced or removed, never modified in place: the path is the copy.
        yield self._existing(file_name)

    def remove(self, file_name: str) -> None:
        self.path_for(file_name).unlink(missing_ok=True)

    def leftover_places(self) -> list[tuple[Path, str, str]]:
        return [*super().leftover_places(), (self.root, ".", TEMP_SUFFIX)]

    def describe(self) -> dict:
        return {"storage": "local"}
