"""Rules every table writer follows, in one place: the metadata column names, the Arrow
type a source column is stored as, and the cast of its values to that type.

The Delta and Databricks targets, the MCP plan and the silver naming all take them from
here, so bronze and silver tables look the same on every target.
"""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa

DATASET_ID = "_dataset_id"
INGESTED_AT = "_ingested_at"
SOURCE_FILE = "_source_file"
# Columns added to every bronze row, and those of them carried into silver.
BRONZE_META = (DATASET_ID, INGESTED_AT, SOURCE_FILE)
SILVER_META = (DATASET_ID, INGESTED_AT)
META_NAMES = frozenset(BRONZE_META)
# Silver column of a dataset with schema hints: a JSON object of column -> raw text of the
# values that did not fit their hinted type (NULL on rows with none).
RESCUED_DATA = "_rescued_data"
# Field metadata key naming the source column of a bronze column that had to be renamed.
SOURCE_NAME_KEY = "lakesync.source_name"

# Columns of a quarantine table (the upload's bad rows), before bronze's metadata columns.
QUARANTINE_FIELDS = (pa.field("line", pa.int64()), pa.field("reason", pa.string()), pa.field("raw", pa.string()))

UTC_US = pa.timestamp("us", tz="UTC")
BRONZE_META_FIELDS = (
    pa.field(DATASET_ID, pa.string()),
    pa.field(INGESTED_AT, UTC_US),
    pa.field(SOURCE_FILE, pa.string()),
)


def storable_type(t: pa.DataType) -> pa.DataType:
    """A type Delta can store that holds every value of ``t``."""
    if pa.types.is_dictionary(t):
        return storable_type(t.value_type)
    if isinstance(t, pa.BaseExtensionType):
        return storable_type(t.storage_type)
    widened = _WIDER.get(t)
    if widened is not None:
        return widened
    if pa.types.is_timestamp(t):
        return pa.timestamp("us", tz=None if t.tz is None else "UTC")
    if pa.types.is_binary_view(t) or pa.types.is_fixed_size_binary(t):
        return pa.binary()
    if pa.types.is_null(t) or pa.types.is_time(t) or pa.types.is_duration(t) or pa.types.is_interval(t):
        return pa.string()
    if pa.types.is_decimal(t) and t.precision > 38:
        return pa.string()
    return t


_WIDER = {
    pa.uint8(): pa.int16(),
    pa.uint16(): pa.int32(),
    pa.uint32(): pa.int64(),
    pa.uint64(): pa.decimal128(20, 0),
    pa.float16(): pa.float32(),
    pa.date64(): pa.date32(),
    pa.string_view(): pa.string(),
}


def spark_compatible_type(t: pa.DataType) -> pa.DataType:
    """The storable type, with Spark's plain string and binary instead of the large
    variants: what a Parquet file loaded by Spark holds, with the same silver types."""
    t = storable_type(t)
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    return t


def to_storable_array(array: pa.Array, target: pa.DataType) -> pa.Array:
    """``array``'s values as ``target`` (one of the types above)."""
    if array.type == target:
        return array
    if pa.types.is_dictionary(array.type):
        return to_storable_array(array.dictionary_decode(), target)
    if isinstance(array.type, pa.BaseExtensionType):
        return to_storable_array(array.storage, target)
    if pa.types.is_timestamp(array.type) and pa.types.is_timestamp(target):
        # Delta stores microseconds; finer digits cannot be kept.
        return array.cast(target, safe=False)
    return array.cast(target)


def meta_columns(dataset_id: str, ingested_at: datetime, source_file: str, rows: int) -> dict[str, pa.Array]:
    """Bronze's metadata columns of one load, for ``rows`` rows, by name."""
    values = (dataset_id, ingested_at, source_file)
    return {f.name: pa.repeat(pa.scalar(v, f.type), rows) for v, f in zip(values, BRONZE_META_FIELDS, strict=True)}


def quarantine_columns(rows: list[dict]) -> list[pa.Array]:
    """The QUARANTINE_FIELDS columns of bad rows given as dicts of those names."""
    return [pa.array([r[f.name] for r in rows], f.type) for f in QUARANTINE_FIELDS]
