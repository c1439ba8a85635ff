"""Excel workbooks (.xlsx) to Parquet: one sheet, every cell kept as its text (see excel_table.py).

Two readers, giving the same text. python-calamine (Rust) is four to five times faster, but it
holds the whole sheet as a dense grid of cells (from the first to the last row and column
used) while it reads; it converts a sheet whose XML, with the shared strings, is at most
``CALAMINE_MAX_XML_BYTES`` and whose grid is at most ``CALAMINE_MAX_CELLS``. A larger sheet
is streamed by openpyxl's read-only mode (excel_stream.py), whose memory does not grow
with the sheet, only with the shared strings table (at most ``MAX_SHARED_STRINGS_BYTES``).

Before any reader opens it, a workbook whose parts expand past ``max_uncompressed_bytes``,
or past ``max_compression_ratio`` times its size (above a floor), is refused with a 413, as
a compressed CSV is (unwrap.py). Both readers stop at a part's declared size, so these
bounds hold for what they read.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import xml.etree.ElementTree as ElementTree
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import python_calamine

from service.errors import IngestError
from service.ingest import excel_stream, unwrap
from service.ingest.excel_table import cell_text, write_rows
from service.ingest.model import ConvertResult, IngestSettings, SourceColumn

__all__ = ["CALAMINE", "OPENPYXL", "convert_workbook", "is_workbook"]

WORKBOOK_PART = "xl/workbook.xml"
_WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"
CALAMINE_MAX_XML_BYTES = 64 << 20
CALAMINE_MAX_CELLS = 4 << 20
MAX_SHARED_STRINGS_BYTES = 256 << 20
# Cell and row references (r="AB12", r="12"), whatever the quotes, spacing or prefix; other
# attributes whose name ends in r can only raise the bound.
# A cell or row reference: r="AB12" (column letters, row number) or r="12" (a row).
_REF = re.compile(rb"""r\s*=\s*["']([A-Za-z]*)([0-9]+)""")
_READ_ERRORS = (
    python_calamine.CalamineError,
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ElementTree.ParseError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
)


def is_workbook(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return WORKBOOK_PART in archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False


def _bad_workbook(exc: BaseException) -> IngestError:
    cause = exc.__cause__ or exc  # openpyxl wraps its errors in a message naming the file's path
    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return IngestError(f"the workbook cannot be read: {reason}", code="invalid_workbook", status=400)


def _check_expansion(archive: zipfile.ZipFile, compressed: int, settings: IngestSettings) -> None:
    """413 for a workbook whose parts expand past the bounds of compressed uploads (a zip bomb)."""
    limit = unwrap.expansion_limit(compressed, settings.max_uncompressed_bytes, settings.max_compression_ratio)
    if sum(info.file_size for info in archive.infolist()) > limit:
        raise unwrap.too_large(limit, "workbook", compressed, settings.max_compression_ratio)


def _check_shared_strings(archive: zipfile.ZipFile, part: str | None) -> None:
    """413 for a shared strings table too large to hold (both readers hold it whole)."""
    size = _part_size(archive, part)
    if size > MAX_SHARED_STRINGS_BYTES:
        raise IngestError(
            f"the workbook's shared strings expand to {size >> 20} MB, more than {MAX_SHARED_STRINGS_BYTES >> 20} MB",
            code="uncompressed_too_large",
            status=413,
            details={"limit_mb": MAX_SHARED_STRINGS_BYTES >> 20, "shared_strings_mb": size >> 20},
        )


def _elements(archive: zipfile.ZipFile, part: str, tag: str) -> Iterator[dict[str, str]]:
    """Attributes of the ``tag`` elements (any namespace) of an XML part, keyed by local name."""
    if part not in archive.namelist():
        return
    with archive.open(part) as source:
        for _, element in ElementTree.iterparse(source):
            if element.tag.rpartition("}")[2] == tag:
                yield {key.rpartition("}")[2]: value for key, value in element.attrib.items()}
            element.clear()


def _layout(archive: zipfile.ZipFile) -> tuple[dict[str, str | None], str | None]:
    """The sheets (name -> part path, in workbook order) and the shared strings part."""
    targets = {}  # relationship id -> (type, part path)
    for rel in _elements(archive, _WORKBOOK_RELS, "Relationship"):
        target = rel.get("Target", "")
        path = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("xl", target))
        targets[rel.get("Id", "")] = (rel.get("Type", ""), path)
    sheets = {
        s.get("name", ""): targets.get(s.get("id", ""), ("", None))[1]
        for s in _elements(archive, WORKBOOK_PART, "sheet")
    }
    strings = next((path for kind, path in targets.values() if kind.endswith("/sharedStrings")), None)
    return sheets, strings


def _part_size(archive: zipfile.ZipFile, part: str | None) -> int:
    try:
        return archive.getinfo(part).file_size if part else 0
    except KeyError:
        return 0


def _pick(sheets: dict[str, str | None], sheet: str | None) -> tuple[str, str | None]:
    """The name and part path of the sheet asked for (the first when ``sheet`` is None)."""
    names = list(sheets)
    if sheet is None:
        if not names:
            raise IngestError("the workbook cannot be read: it has no sheets", code="invalid_workbook", status=400)
        sheet = names[0]
    if sheet not in sheets:
        raise IngestError(
            f"the workbook has no sheet named {sheet!r}; its sheets: {', '.join(names)}",
            code="sheet_not_found",
            status=422,
            details={"sheet": sheet, "sheets": names},
        )
    return sheet, sheets[sheet]


def _grid_cells(archive: zipfile.ZipFile, part: str, limit: int) -> int:
    """An upper bound of the cells of calamine's grid: highest row times highest column
    referenced, found by a scan of the XML (stops once past ``limit``)."""
    rows = columns = 0
    tail = b""
    with archive.open(part) as source:
        while chunk := source.read(4 << 20):
            data = tail + chunk
            cut = data.rfind(b"<")  # a reference is never split across two scans
            data, tail = (data[:cut], data[cut:]) if cut > 0 else (data, b"")
            refs = _REF.findall(data)
            if refs:
                letters = {col for col, _ in refs if col}
                if letters:
                    columns = max(columns, max(_column_number(s) for s in letters))
                rows = max(rows, max(int(row) for _, row in refs))
            if rows * columns > limit:
                break
    return rows * max(columns, 1)


def _column_number(letters: bytes) -> int:
    number = 0
    for c in letters.upper():
        number = number * 26 + c - 64
    return number


def _use_calamine(archive: zipfile.ZipFile, part: str | None, strings: str | None) -> bool:
    if part is None or part not in archive.namelist():
        return True  # calamine reports what is missing
    xml = _part_size(archive, part) + _part_size(archive, strings)
    return xml <= CALAMINE_MAX_XML_BYTES and _grid_cells(archive, part, CALAMINE_MAX_CELLS) <= CALAMINE_MAX_CELLS


CALAMINE = "calamine"
OPENPYXL = "openpyxl"


@contextlib.contextmanager
def sheet_rows(src: Path, sheet: str, reader: str) -> Iterator[Iterator[list[str]]]:
    """The rows of ``sheet`` as lists of text, read by ``reader`` (CALAMINE or OPENPYXL)."""
    if reader == CALAMINE:
        with python_calamine.CalamineWorkbook.from_path(str(src)) as workbook:
            yield (list(map(cell_text, row)) for row in workbook.get_sheet_by_name(sheet).iter_rows())
    else:
        with excel_stream.streamed_rows(src, sheet) as rows:
            yield rows


def convert_workbook(
    src: Path, out: Path, *, settings: IngestSettings, sheet: str | None = None, reader: str | None = None
) -> ConvertResult:
    """``reader`` forces one reader (for tests and benchmarks); by default it follows the sheet's size."""
    try:
        with zipfile.ZipFile(src) as archive:
            _check_expansion(archive, src.stat().st_size, settings)
            sheets, strings = _layout(archive)
            _check_shared_strings(archive, strings)
            sheet_name, part = _pick(sheets, sheet)
            if reader is None:
                reader = CALAMINE if _use_calamine(archive, part, strings) else OPENPYXL
        with sheet_rows(src, sheet_name, reader) as rows:
            names, written = write_rows(rows, out, settings.max_columns)
    except IngestError:
        raise
    except _READ_ERRORS as exc:
        raise _bad_workbook(exc) from None
    return ConvertResult(
        source_format="xlsx",
        row_count=written,
        columns=[SourceColumn(name, "string") for name in names],
        sheet=sheet_name,
    )
