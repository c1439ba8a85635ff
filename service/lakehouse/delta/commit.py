"""Staging data files and committing them as a table's new version (overwrite), then
deleting the files of the version replaced."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from service.duckdb_shared import remove_stale

log = logging.getLogger(__name__)

@contextlib.contextmanager
def staging(table_path: str):
    """A private directory inside the table directory; Delta readers ignore dot-directories,
    and files renamed from it into the table are on the same filesystem."""
    os.makedirs(table_path, exist_ok=True)
    remove_stale(table_path, ".staging-")
    staging = os.path.join(table_path, f".staging-{uuid.uuid4().hex}")
    os.mkdir(staging)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class _Published(list):
    """Add actions for files moved into the table directory but not committed yet."""

    def __init__(self, table_path: str):
        super().__init__()
        self.table_path = table_path

    def discard(self) -> None:
        for add in self:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.table_path, add.path))


def publish(table_path: str, files: list[str]) -> _Published:
    """Move staged Parquet files into the table directory under unique names."""
    adds = _Published(table_path)
    batch = uuid.uuid4()
    now_ms = int(time.time() * 1000)
    try:
        for i, staged in enumerate(files):
            rows = pq.read_metadata(staged).num_rows
            name = f"part-{i:05d}-{batch}-c000.parquet"
            final = os.path.join(table_path, name)
            os.rename(staged, final)
            adds.append(AddAction(path=name, size=os.path.getsize(final), partition_values={},
                                  modification_time=now_ms, data_change=True,
                                  stats=json.dumps({"numRecords": rows})))
    except BaseException:
        adds.discard()
        raise
    return adds


def commit(table_path: str, schema: DeltaSchema, adds: _Published, *,
            partition_by: list[str] | None = None,
            partition_values: dict[str, str | None] | None = None) -> None:
    """Replace the table's current version with ``adds``, then delete the replaced files."""
    if partition_values:
        for add in adds:
            add.partition_values = dict(partition_values)
    previous = _current_files(table_path)
    try:
        create_table_with_add_actions(table_path, schema, list(adds), mode="overwrite",
                                      partition_by=partition_by or None)
    except BaseException:
        adds.discard()
        raise
    new = {add.path for add in adds}
    for rel in previous - new:
        try:
            os.remove(os.path.join(table_path, rel))
        except FileNotFoundError:
            pass
        except OSError as exc:  # the commit succeeded; an orphan file only costs disk space
            log.warning("could not delete replaced data file %s: %s", rel, exc)


def _current_files(table_path: str) -> set[str]:
    if not os.path.isdir(os.path.join(table_path, "_delta_log")):
        return set()
    try:
        table = DeltaTable(table_path)
    except DeltaError as exc:
        log.warning("could not read the current version of %s: %s", table_path, exc)
        return set()
    paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    return {unquote(p) for p in paths}


def nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])
