"""Bronze data files: the local Parquet file as it is when Delta can read it so, else
rewritten batch by batch with storable types and names."""

from __future__ import annotations

import errno
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.table_rules import BRONZE_META, SOURCE_NAME_KEY, storable_type, to_storable_array

# Row groups above this size (uncompressed) make the local file unfit as a data file; it
# is then rewritten with row groups of about the target size.
BRONZE_MAX_ROW_GROUP_BYTES = 64 << 20
BRONZE_TARGET_ROW_GROUP_BYTES = 16 << 20


def _is_copyable(arrow_type: pa.DataType, physical_type: str | None) -> bool:
    """Whether a column of this Arrow type is stored in Parquet exactly as a Delta reader
    expects it, so the local file can be used as the data file without rewriting."""
    t = arrow_type
    if (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_boolean(t)
        or pa.types.is_signed_integer(t)
        or pa.types.is_float32(t)
        or pa.types.is_float64(t)
        or pa.types.is_date32(t)
    ):
        return True
    if pa.types.is_timestamp(t):
        # Delta reads INT64 microseconds; legacy INT96 timestamps must be rewritten.
        return t.unit == "us" and physical_type == "INT64"
    if pa.types.is_decimal128(t):
        return t.precision <= 38
    return False


def bronze_fields(schema: pa.Schema, physical: dict[str, str]) -> tuple[list[pa.Field], bool]:
    """The bronze data fields for a source schema, and whether the source file can be
    used as it is.

    Names are kept, except that Delta refuses names equal when case is ignored and the
    metadata columns take their own names: such a column becomes ``<name>_<n>`` and
    records its source name in the field metadata.
    """
    used = {name.lower() for name in BRONZE_META}
    fields = []
    renamed = False
    copyable = True
    for field in schema:
        name = field.name
        if name.lower() in used:
            n = 2
            while f"{name}_{n}".lower() in used or any(f.name.lower() == f"{name}_{n}".lower() for f in schema):
                n += 1
            name = f"{name}_{n}"
            renamed = True
        used.add(name.lower())
        target = storable_type(field.type)
        copyable = copyable and target == field.type and _is_copyable(field.type, physical.get(field.name))
        metadata = {SOURCE_NAME_KEY: field.name} if name != field.name else None
        fields.append(pa.field(name, target, nullable=True, metadata=metadata))
    return fields, copyable and not renamed


def link_or_copy(src: Path, dest: str) -> None:
    """A hard link when both sit on one filesystem (the local file is never modified in
    place, only replaced or removed), else a copy."""
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        shutil.copyfile(src, dest)


def rewrite_parquet(src: Path, dest: str, schema: pa.Schema, *, rows_per_group: int) -> None:
    """Copy ``src`` to ``dest`` batch by batch with the bronze names and types, one row
    group per batch."""
    # Unbuffered, single-threaded reading keeps memory near one batch plus the pages
    # being decoded.
    pf = pq.ParquetFile(src, pre_buffer=False, buffer_size=1 << 16)
    try:
        with pq.ParquetWriter(dest, schema, compression="snappy") as writer:
            for batch in pf.iter_batches(batch_size=rows_per_group, use_threads=False):
                columns = [to_storable_array(column, field.type) for column, field in zip(batch.columns, schema)]
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
    finally:
        pf.close()


def partition_timestamp(value: datetime) -> str:
    """A timestamp partition value in the protocol's ISO 8601 UTC form, which readers do not
    reinterpret in a session time zone (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
