"""The value grammars of ``service.transform.sql`` evaluated with Arrow's compute kernels.

For a file of a few thousand rows, DuckDB spends more time parsing and planning the
classification query than classifying; these kernels run on the column's distinct values
directly. They decide exactly what ``sql.classify_expr`` and ``sql.type_from_codes`` decide
(the unit tests compare both on generated values); a column they cannot settle cheaply is
left to DuckDB (None).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from service.transform import sql as q

_INT64_DIGITS = 18  # every integer of this many digits fits int64; longer ones are checked
# Tables of at most this many rows, taking at most this many bytes once decoded, are read
# whole into memory and typed here.
SMALL_ROWS = 4096
SMALL_BYTES = 32 << 20
# Rows read at a time while a table is read whole: a file's sizes do not bound its decoded
# size (a dictionary page may stand for any number of long values), so it is measured.
# Read on the calling thread: for a few batches, handing them to a pool costs more CPU
# than decoding them.
_READ_BATCH_ROWS = 256


def read_small_parquet(path: str | os.PathLike) -> pa.Table | None:
    """A Parquet file as a table if it is small (SMALL_ROWS, SMALL_BYTES once decoded), else
    None, having read no more than one batch past either bound."""
    with pq.ParquetFile(path) as pf:
        if pf.metadata.num_rows > SMALL_ROWS:
            return None
        kept: list[pa.RecordBatch] = []
        nbytes = 0
        for batch in pf.iter_batches(batch_size=_READ_BATCH_ROWS, use_threads=False):
            nbytes += batch.nbytes
            if nbytes > SMALL_BYTES:
                return None
            kept.append(batch)
        return pa.Table.from_batches(kept, schema=pf.schema_arrow)


def _full(pattern: str) -> str:
    return f"^(?:{pattern})$"


def _all(mask: pa.Array) -> bool:
    return bool(pc.all(mask, skip_nulls=False).as_py())


def _valid_dates(text: pa.Array) -> pa.Array:
    """True where the first ten characters are a calendar date of year 0001 to 9999 (what
    DuckDB's round trip accepts): strptime rolls 2024-02-30 over, so the date must print back."""
    day = pc.utf8_slice_codeunits(text, 0, 10)
    parsed = pc.strptime(day, format="%Y-%m-%d", unit="s", error_is_null=True)
    printed = pc.strftime(parsed, format="%Y-%m-%d")
    return pc.and_(pc.fill_null(pc.equal(printed, day), False), pc.invert(pc.starts_with(day, "0000")))


def _integers_fit(text: pa.Array) -> bool:
    long = pc.filter(text, pc.greater(pc.utf8_length(pc.utf8_ltrim(text, "-")), _INT64_DIGITS))
    return all(-(2**63) <= int(v) < 2**63 for v in long.to_pylist())


def column_type(values: pa.Array | pa.ChunkedArray, tokens: Sequence[str]) -> str | None:
    """The silver type of a string column holding ``values``, as ``infer_plan`` decides it
    over every value; None when only DuckDB's classification can tell."""
    distinct = pc.unique(values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values)
    if pa.types.is_dictionary(distinct.type):
        distinct = distinct.dictionary_decode()
    if not pa.types.is_string(distinct.type):
        distinct = distinct.cast(pa.string())  # large strings, string views
    text = pc.utf8_trim(distinct.drop_null(), " ")
    if tokens:
        text = pc.filter(text, pc.invert(pc.is_in(text, value_set=pa.array(list(tokens), pa.string()))))
    if len(text) == 0:
        return "string"  # no non-null value
    if _all(pc.match_substring_regex(text, _full(q.INTEGER_RE))) and _integers_fit(text):
        return "integer"
    # A value fitting the integer grammar beyond int64 is a double, as in DuckDB's codes.
    double = pc.match_substring_regex(text, _full(q.DOUBLE_RE))
    if _all(double):
        try:
            finite = pc.is_finite(pc.cast(text, pa.float64()))
        except pa.ArrowInvalid:
            return None
        return "double" if _all(finite) else "string"
    if _all(pc.is_in(pc.utf8_lower(text), value_set=pa.array(["true", "false"]))):
        return "boolean"
    if _all(pc.match_substring_regex(text, _full(q.DATE_RE))):
        return "date" if _all(_valid_dates(text)) else "string"
    if _all(pc.match_substring_regex(text, _full(q.TIMESTAMP_RE))):
        return "timestamp" if _all(_valid_dates(text)) else "string"
    return "string"
