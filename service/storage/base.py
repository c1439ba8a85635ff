"""What every store of datasets' Parquet files offers, and the names of stored files."""

from __future__ import annotations

import abc
import contextlib
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Stored files are always named "<uuid>.parquet"; nothing else is ever served.
# Matched with fullmatch: "$" would also match before a trailing newline.
_STORED_NAME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.parquet")

# A multipart upload body is spooled to "<incoming>/upload-<random>.part".
UPLOAD_PREFIX = "upload-"
UPLOAD_SUFFIX = ".part"
# A conversion writes ".<name>.<hex>.tmp" beside its destination (service.ingest.output).
TEMP_SUFFIX = ".tmp"


class StoredFileMissing(FileNotFoundError):
    """The store holds no file of that name."""


class FileStore(abc.ABC):
    """Datasets' Parquet files, named ``<uuid>.parquet``.

    A new file is written locally (``write_path``), then made the stored one
    (``publish``); readers open it where it is stored, or take a local copy for the
    length of a step (``local_copy``).
    """

    @staticmethod
    def file_name_for(dataset_id: uuid.UUID) -> str:
        return f"{dataset_id}.parquet"

    @staticmethod
    def is_stored_name(name: str) -> bool:
        return bool(_STORED_NAME.fullmatch(name))

    @staticmethod
    def check_name(file_name: str) -> str:
        if not _STORED_NAME.fullmatch(file_name):
            raise ValueError(f"not a stored dataset file name: {file_name!r}")
        return file_name

    @property
    @abc.abstractmethod
    def incoming_dir(self) -> Path:
        """The local directory upload bodies are streamed into before conversion."""

    def ensure(self) -> None:
        self.incoming_dir.mkdir(parents=True, exist_ok=True)

    @abc.abstractmethod
    def location(self, file_name: str) -> str:
        """Where the file is stored: a path or a URL (for messages, never secret)."""

    @abc.abstractmethod
    def write_path(self, file_name: str) -> Path:
        """The local path a new file is converted into."""

    @abc.abstractmethod
    def publish(self, file_name: str) -> None:
        """Make the file written at ``write_path`` the stored one."""

    @abc.abstractmethod
    def discard(self, file_name: str) -> None:
        """Remove a new file wherever it got to (an upload that failed before its commit)."""

    @abc.abstractmethod
    def exists(self, file_name: str) -> bool:
        """Whether the file is stored."""

    @abc.abstractmethod
    def open(self, file_name: str) -> BinaryIO:
        """The stored file as a seekable binary file; StoredFileMissing when there is none."""

    @abc.abstractmethod
    def iter_bytes(self, file_name: str) -> tuple[int, Iterator[bytes]]:
        """The file's size and its bytes in chunks; StoredFileMissing when there is none."""

    @abc.abstractmethod
    def local_copy(self, file_name: str) -> contextlib.AbstractContextManager[Path]:
        """A local path of the file for the length of the ``with`` block; StoredFileMissing
        when there is none."""

    @abc.abstractmethod
    def remove(self, file_name: str) -> None:
        """Delete the stored file; nothing when there is none."""

    def leftover_places(self) -> list[tuple[Path, str, str]]:
        """(directory, prefix, suffix) of the work files an upload cut short may leave."""
        return [(self.incoming_dir, UPLOAD_PREFIX, UPLOAD_SUFFIX)]

    def describe(self) -> dict:
        return {}
