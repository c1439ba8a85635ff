"""Where the Delta tables live: a local directory or an ``s3://bucket/prefix`` (LAKEHOUSE_URL).

Data files are always produced locally, in a staging directory, and then put into the
table: renamed on a local lakehouse (the staging directory sits inside the table, on the
same filesystem), uploaded on an object store (staging is a private local directory,
named after its process so that one left by a killed process is removed by the next).
Commits go through delta-rs's own object store, which makes the log entry with a
conditional write, so concurrent writers of one table never overwrite each other's commit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable

from service.duckdb_shared import owned_prefix, remove_orphans, remove_stale
from service.lakehouse.base import PermanentTargetError, TableRef
from service.storage import S3Settings, is_s3_url, s3

STAGING_PREFIX = "delta-staging-"


class TableStore:
    def __init__(self, url: str, settings: S3Settings | None = None, *, temp_dir: str):
        self.remote = is_s3_url(url)
        self.settings = settings or S3Settings()
        if self.remote:
            self.root = s3.S3Location.parse(url)
            self.url = self.root.url()
        else:
            self.url = os.path.abspath(os.fspath(s3.local_path_of(url)))
        self.temp_dir = temp_dir

    @property
    def storage_options(self) -> dict[str, str] | None:
        return self.settings.delta_options() if self.remote else None

    def uri(self, ref: TableRef) -> str:
        """The table's location: ``<lakehouse>/<catalog>/<schema>/<table>``."""
        for part in (ref.catalog, ref.schema, ref.table):
            if not part or part in (".", "..") or "/" in part or "\\" in part or "\0" in part:
                raise PermanentTargetError(f"invalid table name {ref.full_name!r}")
        if self.remote:
            return self.root.url(ref.catalog, ref.schema, ref.table)
        return os.path.join(self.url, ref.catalog, ref.schema, ref.table)

    def _key(self, uri: str, *parts: str) -> str:
        return s3.S3Location.parse(uri).key(*parts)

    @property
    def _client(self):
        return self.settings.client(self.root.bucket)

    def is_table(self, uri: str) -> bool:
        if self.remote:
            return s3.has_objects(self._client, self._key(uri, "_delta_log"))
        return os.path.isdir(os.path.join(uri, "_delta_log"))

    def open(self, uri: str) -> DeltaTable:
        return DeltaTable(uri, storage_options=self.storage_options)

    @contextlib.contextmanager
    def staging(self, uri: str) -> Iterator[str]:
        """A private local directory for the table's new data files."""
        if self.remote:
            os.makedirs(self.temp_dir, exist_ok=True)
            remove_orphans(self.temp_dir, STAGING_PREFIX)
            staging = tempfile.mkdtemp(prefix=owned_prefix(STAGING_PREFIX), dir=self.temp_dir)
        else:
            # Inside the table directory: Delta readers ignore dot-directories.
            os.makedirs(uri, exist_ok=True)
            remove_stale(uri, ".staging-")
            staging = os.path.join(uri, f".staging-{uuid.uuid4().hex}")
            os.mkdir(staging)
        try:
            yield staging
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    @contextlib.contextmanager
    def local_files(self, table: DeltaTable, uri: str) -> Iterator[str]:
        """A local directory holding the current version's data files at their relative paths:
        the table's own directory, or (on an object store) a scratch copy, removed afterwards.
        DuckDB then reads them with its own reader, within its memory limit."""
        if not self.remote:
            yield uri
            return
        with self.staging(uri) as copy:
            paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
            for rel in (unquote(p) for p in paths):
                dest = os.path.join(copy, rel)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                s3.download(self._client, self._key(uri, rel), dest)
            yield copy

    def put(self, uri: str, staged: str, name: str) -> int:
        """Move a staged file into the table as ``name``; its size."""
        size = os.path.getsize(staged)
        if self.remote:
            s3.upload(self._client, self._key(uri, name), staged)
            os.remove(staged)
        else:
            os.rename(staged, os.path.join(uri, name))
        return size

    def delete_file(self, uri: str, rel: str) -> None:
        if self.remote:
            s3.delete(self._client, self._key(uri, rel))
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(uri, rel))

    def drop(self, uri: str) -> None:
        """Delete the table: its directory, or every object under its prefix."""
        if self.remote:
            s3.delete_prefix(self._client, self._key(uri))
        else:
            with contextlib.suppress(FileNotFoundError):
                shutil.rmtree(uri)

    def ping(self) -> None:
        if self.remote:
            s3.has_objects(self._client, self.root.key())  # lists: proves endpoint, bucket and credentials
            return
        os.makedirs(self.url, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=self.url, prefix=".ping-"):
            pass
