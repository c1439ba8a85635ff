"""A sheet's rows to Parquet, every cell kept as its text.

Text of a cell: strings as they are, whole numbers without a decimal point, other numbers
as Python's shortest repr, booleans ``true``/``false``, dates and times in ISO 8601, empty
cells as empty text. Blank rows are dropped, the first row left is the header, and the
table spans the columns from the leftmost to the rightmost cell holding text in any row.

That span is known only once the last row is read, so rows are first spilled to an Arrow
stream file next to the output, a batch at a time (each batch padded to its own widest row),
then read back batch by batch and written as Parquet columns: either way only one batch of
Python objects is held, whatever the size of the sheet.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from service.errors import IngestError
from service.ingest.columns import check_column_count, unique_names
from service.ingest.model import LOCAL_PARQUET_CODEC
from service.ingest.output import scratch_file

# Integers up to this magnitude are exact in a double (a cell's number), and print as ints.
EXACT_FLOAT = 2**53
# A spilled batch ends at this many cells or characters (bounds its Python strings).
SPILL_CELLS = 1 << 18
SPILL_CHARS = 32 << 20
# Parquet row groups of about a million cells, as many rows as fit, at most this many bytes.
GROUP_CELLS = 1 << 20
GROUP_BYTES = 64 << 20
_SPILL_SCHEMA = pa.schema([pa.field("cells", pa.list_(pa.string()))])


def cell_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < EXACT_FLOAT:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return "" if value is None else str(value)


class _Spill:
    """Non-blank rows (lists of text, all from the same first column) into an Arrow stream,
    tracking the header and the span of columns that hold text."""

    def __init__(self, writer: pa.ipc.RecordBatchStreamWriter, max_columns: int):
        self.writer = writer
        self.max_columns = max_columns
        self.header: list[str] | None = None
        self.lo = 1 << 62  # leftmost and rightmost column holding text so far
        self.hi = -1
        self.rows = 0
        self.batch: list[list[str]] = []
        self.cells = self.chars = 0

    def add(self, row: list[str]) -> None:
        if not any(row):
            return  # a blank row, as blank lines of a CSV file
        if self.lo and any(row[: self.lo]):
            self.lo = next(i for i, text in enumerate(row) if text)
        if len(row) > self.hi + 1 and any(row[self.hi + 1 :]):
            self.hi = max(i for i, text in enumerate(row) if text)
        if self.hi - self.lo >= self.max_columns > 0:  # refused before the sheet is read to the end
            check_column_count(self.hi - self.lo + 1, self.max_columns, at_least=True)
        if self.header is None:
            self.header = row
            return
        self.batch.append(row)
        self.rows += 1
        self.cells += len(row)
        self.chars += sum(map(len, row))
        if self.cells >= SPILL_CELLS or self.chars >= SPILL_CHARS:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        width = max(map(len, self.batch))
        rows = [row if len(row) == width else row + [""] * (width - len(row)) for row in self.batch]
        self.writer.write_batch(pa.record_batch([pa.array(rows, _SPILL_SCHEMA.field(0).type)], schema=_SPILL_SCHEMA))
        self.batch = []
        self.cells = self.chars = 0


def _columns(rows: pa.ListArray, lo: int, hi: int) -> list[pa.Array]:
    width = pc.list_value_length(rows)[0].as_py()
    blank = pa.nulls(len(rows), pa.string()).fill_null("")
    return [pc.list_element(rows, i) if i < width else blank for i in range(lo, hi + 1)]


def write_rows(rows: Iterable[list[str]], out: Path, max_columns: int) -> tuple[list[str], int]:
    """Write the rows of text to Parquet at ``out``; returns the column names and the row count."""
    with scratch_file(out.parent, ".rows") as spill_path:
        with pa.OSFile(str(spill_path), "wb") as sink, pa.ipc.new_stream(sink, _SPILL_SCHEMA) as writer:
            spill = _Spill(writer, max_columns)
            for row in rows:
                spill.add(row)
            spill.flush()
        if spill.header is None:
            raise IngestError("the sheet is empty", code="empty_file", status=400)
        lo, hi = spill.lo, spill.hi
        header = spill.header + [""] * (hi + 1 - len(spill.header))
        names = unique_names(header[lo : hi + 1])
        schema = pa.schema([pa.field(name, pa.string()) for name in names])
        group_rows = max(1, GROUP_CELLS // len(names))
        with (
            pa.OSFile(str(spill_path), "rb") as source,
            pq.ParquetWriter(out, schema, compression=LOCAL_PARQUET_CODEC) as parquet,
        ):
            pending: list[pa.Table] = []
            for batch in pa.ipc.open_stream(source):
                pending.append(pa.Table.from_arrays(_columns(batch.column(0), lo, hi), schema=schema))
                if sum(map(len, pending)) >= group_rows or sum(t.nbytes for t in pending) >= GROUP_BYTES:
                    parquet.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
                    pending = []
            if pending:
                parquet.write_table(pa.concat_tables(pending), row_group_size=1 << 30)
    return names, spill.rows
