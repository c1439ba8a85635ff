"""Putting staged data files into a table and committing them as its new version
(overwrite), then deleting the files of the version replaced."""

from __future__ import annotations

import contextlib
import json
import logging
import time
import uuid
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import DeltaError
from deltalake.transaction import AddAction, create_table_with_add_actions

from service.lakehouse.delta.tables import TableStore

log = logging.getLogger(__name__)


class _Published(list):
    """Add actions for files put into the table but not committed yet."""

    def __init__(self, tables: TableStore, uri: str):
        super().__init__()
        self.tables = tables
        self.uri = uri

    def discard(self) -> None:
        for add in self:
            with contextlib.suppress(FileNotFoundError):
                self.tables.delete_file(self.uri, add.path)


def publish(tables: TableStore, uri: str, files: list[str]) -> _Published:
    """Put staged Parquet files into the table under unique names."""
    adds = _Published(tables, uri)
    batch = uuid.uuid4()
    now_ms = int(time.time() * 1000)
    try:
        for i, staged in enumerate(files):
            rows = pq.read_metadata(staged).num_rows
            name = f"part-{i:05d}-{batch}-c000.parquet"
            size = tables.put(uri, staged, name)
            adds.append(
                AddAction(
                    path=name,
                    size=size,
                    partition_values={},
                    modification_time=now_ms,
                    data_change=True,
                    stats=json.dumps({"numRecords": rows}),
                )
            )
    except BaseException:
        adds.discard()
        raise
    return adds


def commit(
    tables: TableStore,
    uri: str,
    schema: DeltaSchema,
    adds: _Published,
    *,
    partition_by: list[str] | None = None,
    partition_values: dict[str, str | None] | None = None,
) -> None:
    """Replace the table's current version with ``adds``, then delete the replaced files."""
    if partition_values:
        for add in adds:
            add.partition_values = dict(partition_values)
    previous = _current_files(tables, uri)
    try:
        create_table_with_add_actions(
            uri,
            schema,
            list(adds),
            mode="overwrite",
            partition_by=partition_by or None,
            storage_options=tables.storage_options,
        )
    except BaseException:
        adds.discard()
        raise
    new = {add.path for add in adds}
    for rel in previous - new:
        try:
            tables.delete_file(uri, rel)
        except OSError as exc:  # the commit succeeded; an orphan file only costs space
            log.warning("could not delete replaced data file %s: %s", rel, exc)


def _current_files(tables: TableStore, uri: str) -> set[str]:
    if not tables.is_table(uri):
        return set()
    try:
        table = tables.open(uri)
    except DeltaError as exc:
        log.warning("could not read the current version of %s: %s", uri, exc)
        return set()
    paths = pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    return {unquote(p) for p in paths}


def nullable(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_nullable(True) for f in schema])
