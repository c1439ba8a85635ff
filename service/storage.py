"""The local store of datasets' Parquet files."""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

# Stored files are always named "<uuid>.parquet"; nothing else is ever served.
_STORED_NAME = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\.parquet")


# A multipart upload body is spooled to "<incoming>/upload-<random>.part".
UPLOAD_PREFIX = "upload-"
UPLOAD_SUFFIX = ".part"


class LocalStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()

    @classmethod
    def from_config(cls, config: dict) -> "LocalStore":
        return cls(config["STORAGE_DIR"])

    def ensure(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming_dir.mkdir(parents=True, exist_ok=True)

    @property
    def incoming_dir(self) -> Path:
        """Where upload bodies are streamed before conversion (same filesystem as the store)."""
        return self.root / ".incoming"

    @staticmethod
    def file_name_for(dataset_id: uuid.UUID) -> str:
        return f"{dataset_id}.parquet"

    @staticmethod
    def is_stored_name(name: str) -> bool:
        # fullmatch: "$" would also match before a trailing newline.
        return bool(_STORED_NAME.fullmatch(name))

    def path_for(self, file_name: str) -> Path:
        """The path of a stored file; ValueError for anything but a plain stored name."""
        if not self.is_stored_name(file_name):
            raise ValueError(f"not a stored dataset file name: {file_name!r}")
        path = (self.root / file_name).resolve()
        # Belt and braces: the canonical path must sit directly under the store.
        if path.parent != self.root:
            raise ValueError(f"not a stored dataset file name: {file_name!r}")
        return path

    def remove(self, file_name: str) -> None:
        self.path_for(file_name).unlink(missing_ok=True)
