"""Excel workbooks (.xlsx) to Parquet: one sheet, every cell kept as its text.

python-calamine reads the sheet (in Rust) and hands rows over one at a time; rows are
written in batches, so the Python side holds one batch. Calamine holds the sheet's cells
while it reads: a sheet whose XML expands past ``max_uncompressed_bytes`` is refused (413)
before it is opened, which bounds that memory too.

Text of a cell: strings as they are, whole numbers without a decimal point, other numbers
as Python's shortest repr, booleans ``true``/``false``, dates and times in ISO 8601, empty
cells as empty text. The first non-empty row is the header.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import python_calamine

from service.errors import IngestError
from service.ingest.columns import check_column_count, unique_names
from service.ingest.model import LOCAL_PARQUET_CODEC, ConvertResult, IngestSettings, SourceColumn

WORKBOOK_PART = "xl/workbook.xml"
BATCH_CELLS = 1 << 20
_EXACT_FLOAT = 2**53


def is_workbook(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return WORKBOOK_PART in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def cell_text(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_FLOAT:
            return str(int(value))
        return repr(value)
    if isinstance(value, (dt.date, dt.time)):  # datetime is a date
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    return "" if value is None else str(value)


def _bad_workbook(reason: str) -> IngestError:
    return IngestError(f"the workbook cannot be read: {reason}", code="invalid_workbook", status=400)


def _check_expanded_size(path: Path, limit: int) -> None:
    """Refuse a workbook whose parts expand past ``limit`` bytes (a zip bomb, or a sheet
    too large to hold) before any part is read."""
    with zipfile.ZipFile(path) as archive:
        expanded = sum(info.file_size for info in archive.infolist())
    if expanded > limit:
        raise IngestError(
            f"the workbook expands to {expanded >> 20} MB, more than {limit >> 20} MB (MAX_UNCOMPRESSED_MB)",
            code="uncompressed_too_large",
            status=413,
            details={"limit_mb": limit >> 20, "expanded_mb": expanded >> 20},
        )


def _open_sheet(workbook, sheet: str | None):
    names = workbook.sheet_names
    if sheet is None:
        if not names:
            raise _bad_workbook("it has no sheets")
        return workbook.get_sheet_by_index(0), names[0]
    if sheet not in names:
        raise IngestError(
            f"the workbook has no sheet named {sheet!r}; its sheets: {', '.join(names)}",
            code="sheet_not_found",
            status=422,
            details={"sheet": sheet, "sheets": names},
        )
    return workbook.get_sheet_by_name(sheet), sheet


def convert_workbook(src: Path, out: Path, *, settings: IngestSettings, sheet: str | None = None) -> ConvertResult:
    _check_expanded_size(src, settings.max_uncompressed_bytes)
    try:
        with python_calamine.CalamineWorkbook.from_path(str(src)) as workbook:
            worksheet, sheet_name = _open_sheet(workbook, sheet)
            rows = (list(map(cell_text, row)) for row in worksheet.iter_rows())
            names, written = _write(rows, out, settings.max_columns)
    except python_calamine.CalamineError as exc:
        raise _bad_workbook(str(exc)) from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise _bad_workbook(str(exc)) from None
    return ConvertResult(
        source_format="xlsx",
        row_count=written,
        columns=[SourceColumn(name, "string") for name in names],
        sheet=sheet_name,
    )


def _write(rows, out: Path, max_columns: int) -> tuple[list[str], int]:
    header = next((row for row in rows if any(row)), None)
    if header is None:
        raise IngestError("the sheet is empty", code="empty_file", status=400)
    check_column_count(len(header), max_columns)
    names = unique_names(header)
    width = len(names)
    schema = pa.schema([pa.field(name, pa.string()) for name in names])
    batch_rows = max(1, BATCH_CELLS // width)
    written = 0
    batch: list[list[str]] = []
    with pq.ParquetWriter(out, schema, compression=LOCAL_PARQUET_CODEC) as writer:

        def flush():
            columns = [pa.array([row[i] for row in batch], pa.string()) for i in range(width)]
            writer.write_table(pa.Table.from_arrays(columns, schema=schema))
            batch.clear()

        for row in rows:
            if not any(row):
                continue  # a blank row, as blank lines of a CSV file
            if len(row) != width:
                row = (row + [""] * width)[:width]
            batch.append(row)
            written += 1
            if len(batch) >= batch_rows:
                flush()
        if batch:
            flush()
    return names, written
