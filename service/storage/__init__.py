"""Stores of datasets' Parquet files: a local directory or S3-compatible object storage,
chosen by STORAGE_URL."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from service.config import storage_url
from service.storage.base import (
    TEMP_SUFFIX,
    UPLOAD_PREFIX,
    UPLOAD_SUFFIX,
    FileStore,
    StoredFileMissing,
)
from service.storage.local import LocalStore
from service.storage.s3 import S3Settings, is_s3_url, local_path_of


def file_store(config: Mapping) -> FileStore:
    """The store named by STORAGE_URL (else STORAGE_DIR)."""
    url = storage_url(config)
    if is_s3_url(url):
        from service.storage.objects import ObjectFileStore

        return ObjectFileStore(url, S3Settings.from_config(config), Path(config["DATA_DIR"]) / "tmp" / "storage")
    return LocalStore(local_path_of(url))


__all__ = [
    "FileStore",
    "LocalStore",
    "StoredFileMissing",
    "S3Settings",
    "TEMP_SUFFIX",
    "UPLOAD_PREFIX",
    "UPLOAD_SUFFIX",
    "file_store",
    "is_s3_url",
]
