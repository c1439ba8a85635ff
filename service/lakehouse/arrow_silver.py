"""The silver plan applied with Arrow's compute kernels, for small bronze tables.

DuckDB's silver query costs milliseconds of parsing and planning whatever the data; for a
table of a few thousand rows that is most of the step. Arrow applies the same rules
(``duckdb_sql``: spaces trimmed, null tokens, casts, names, exact duplicates removed) to
the rows in memory. It takes the plans whose every rule it has: verified types (so each
value is known to fit its grammar), string bronze columns, no hints and no timestamps
(whose offsets DuckDB converts). Others go to DuckDB (``applies`` is False).
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from service.lakehouse.duckdb_sql import WIDE_TABLE_COLUMNS, bronze_column, is_string_type, renamed_fields
from service.table_rules import SILVER_META
from service.transform import arrow_types
from service.transform.plan import SilverPlan

_TYPES = {"string": pa.string(), "integer": pa.int64(), "double": pa.float64(), "date": pa.date32()}
_ROW = "__lakesync_row"


def applies(plan: SilverPlan, fields: dict[str, pa.Field], rows: int) -> bool:
    """Whether the plan can be applied here to a bronze table of ``rows`` rows (that it is
    small in bytes too is found while reading it: ``arrow_types.read_small_parquet``)."""
    if rows > arrow_types.SMALL_ROWS or not plan.verified or plan.rescues or len(plan.columns) > WIDE_TABLE_COLUMNS:
        return False
    if any(m not in fields for m in SILVER_META):
        return False
    renamed = renamed_fields(fields)
    for column in plan.columns:
        field = bronze_column(column.source_name, fields, renamed)
        if column.type not in (*_TYPES, "boolean") or column.source_type == "json" or not is_string_type(field.type):
            return False
    return True


def _typed(values: pa.ChunkedArray, type_name: str, tokens: pa.Array) -> pa.ChunkedArray:
    trimmed = pc.utf8_trim(values.cast(pa.string()), " ")
    cleaned = pc.if_else(pc.is_in(trimmed, value_set=tokens), pa.scalar(None, pa.string()), trimmed)
    if type_name == "boolean":
        # Every value is true or false in some case (the plan is verified).
        return pc.equal(pc.utf8_lower(cleaned), "true")
    return cleaned.cast(_TYPES[type_name])


def _distinct(table: pa.Table) -> pa.Table:
    """The table's distinct rows (the first of each). Keys compare as DuckDB's DISTINCT
    does: -0.0 equals 0.0, which Arrow's hash grouping tells apart."""
    keys = {}
    for i, column in enumerate(table.columns):
        keys[f"k{i}"] = pc.add(column, 0.0) if pa.types.is_floating(column.type) else column
    keyed = pa.table({**keys, _ROW: pa.array(range(table.num_rows), pa.int64())})
    first = keyed.group_by(list(keys), use_threads=False).aggregate([(_ROW, "min")]).column(f"{_ROW}_min")
    rows = first.combine_chunks()
    return table.take(rows.take(pc.array_sort_indices(rows)))


def silver_table(bronze: pa.Table, plan: SilverPlan) -> pa.Table:
    """The silver rows of ``bronze`` (a table ``applies`` accepted), duplicates removed."""
    fields = {f.name: f for f in bronze.schema}
    renamed = renamed_fields(fields)
    tokens = pa.array(list(plan.null_tokens), pa.string())
    columns = {
        column.name: _typed(bronze.column(bronze_column(column.source_name, fields, renamed).name), column.type, tokens)
        for column in plan.columns
    }
    columns.update({m: bronze.column(m) for m in SILVER_META})
    return _distinct(pa.table(columns))
