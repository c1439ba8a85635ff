"""A sheet read as a stream with openpyxl (read-only), its cells as python-calamine gives them.

openpyxl reads the workbook's parts and types each cell (its worksheet parser's
``parse_row``) while the sheet's XML is parsed as it goes, each row dropped once read, so
memory does not grow with the sheet (the rows go on to ``excel_table.write_rows``). Its
values are brought to python-calamine's, so that a sheet gives the same text whichever
reader converts it (see excel.py):

- date cells at midnight are dates, before the epoch (negative serials) times of day; other
  date cells stay datetimes, times or durations;
- error cells (``#N/A``...) are empty;
- the escapes of control characters that Excel writes in strings (``_x000D_``) are decoded;
- integers past 2**53 are doubles, as Excel stores them;
- the built-in date formats of East Asian locales (ids 27-36 and 50-58) are dates.

Shared strings are loaded by ``SharedStrings`` instead of openpyxl's loader, whose list of
``str`` and left-over XML elements took about five times the part's XML in memory.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from xml.etree.ElementTree import iterparse

import pyarrow as pa
from openpyxl.reader.excel import ExcelReader
from openpyxl.worksheet._reader import WorkSheetParser
from openpyxl.xml.constants import SHARED_STRINGS, SHEET_MAIN_NS

from service.ingest.excel_table import EXACT_FLOAT, cell_text

_EAST_ASIAN_DATES = frozenset([*range(27, 37), *range(50, 59)])
_ESCAPE = re.compile(r"_x([0-9A-Fa-f]{4})_")
_SI = f"{{{SHEET_MAIN_NS}}}si"
_T = f"{{{SHEET_MAIN_NS}}}t"
_R = f"{{{SHEET_MAIN_NS}}}r"
_ROW = f"{{{SHEET_MAIN_NS}}}row"
_SHEET_DATA = f"{{{SHEET_MAIN_NS}}}sheetData"
_PRESERVE = "{http://www.w3.org/XML/1998/namespace}space"
_CHUNK = 1 << 16

# openpyxl warns once per cell about date serials out of range (and about styles and
# extensions it drops when editing): noise for a reader.
warnings.filterwarnings("ignore", category=UserWarning, module=r"openpyxl\.")


class SharedStrings:
    """The shared strings table as Arrow string arrays of 65,536 strings each: about the
    size of the text. Text of an entry as python-calamine reads it: its runs joined, phonetic
    runs left out, each run trimmed of surrounding whitespace unless ``xml:space="preserve"``."""

    def __init__(self, source: BinaryIO):
        self.chunks: list[pa.Array] = []
        pending: list[str] = []
        events = iterparse(source, events=("start", "end"))
        _, root = next(events)
        for event, element in events:
            if event == "end" and element.tag == _SI:
                pending.append("".join(_runs(element)))
                root.clear()  # drops the entries read so far, not only their content
                if len(pending) == _CHUNK:
                    self.chunks.append(pa.array(pending, pa.string()))
                    pending = []
        self.chunks.append(pa.array(pending, pa.string()))

    def __getitem__(self, index: int) -> str:
        return self.chunks[index >> 16][index & (_CHUNK - 1)].as_py()


def _runs(si) -> Iterator[str]:
    for child in si:
        if child.tag == _T:
            yield _run_text(child)
        elif child.tag == _R:
            yield from (_run_text(t) for t in child if t.tag == _T)


def _run_text(t) -> str:
    text = t.text or ""
    return text if t.get(_PRESERVE) == "preserve" else text.strip(" \t\r\n")


class _Reader(ExcelReader):
    """openpyxl's reader of a workbook's parts (content types, workbook, styles), with the
    leaner shared strings, and the worksheets only located, not opened."""

    def read_strings(self):
        part = self.package.find(SHARED_STRINGS)
        if part is not None:
            with self.archive.open(part.PartName[1:]) as source:
                self.shared_strings = SharedStrings(source)

    def read_worksheets(self):
        self.parts = {
            sheet.name: rel.target
            for sheet, rel in self.parser.find_sheets()
            if rel.target in self.valid_files and "chartsheet" not in rel.Type
        }


class _Parser(WorkSheetParser):
    def rows(self) -> Iterator[list[dict]]:
        """The cells of each row, typed by openpyxl. Its own ``parse()`` keeps every row's
        element (and the attributes of rows of custom height) to the end, about 90 bytes a
        row; here each row is dropped once read, and the parts around the cells are skipped."""
        data = None
        for event, element in iterparse(self.source, events=("start", "end")):
            if event == "start":
                if element.tag == _SHEET_DATA:
                    data = element
            elif element.tag == _ROW:
                yield self.parse_row(element)[1]
                if data is not None:
                    data.clear()
                self.row_dimensions.clear()


def _decode(match: re.Match) -> str:
    code = int(match.group(1), 16)
    return match.group(0) if 0xD800 <= code <= 0xDFFF else chr(code)


def _text(value, kind: str, epoch: dt.datetime) -> str:
    if value is None:
        return ""
    if kind == "s":
        return _ESCAPE.sub(_decode, value) if "_x" in value else value
    if kind == "e":
        return ""
    if kind == "n" and type(value) is int and abs(value) >= EXACT_FLOAT:
        value = float(value)
    elif kind == "d" and type(value) is dt.datetime:
        if value < epoch:  # a negative serial: calamine keeps its time of day
            value = value.time()
        elif value.time() == dt.time():
            value = value.date()
    return cell_text(value)


def _row(cells: list[dict], epoch: dt.datetime) -> list[str]:
    if not cells:
        return []
    texts = [""] * max(cell["column"] for cell in cells)
    for cell in cells:
        texts[cell["column"] - 1] = _text(cell["value"], cell["data_type"], epoch)
    return texts


@contextlib.contextmanager
def streamed_rows(path: Path, sheet: str) -> Iterator[Iterator[list[str]]]:
    """The rows of ``sheet`` as lists of text, from column A; blank rows may be left out."""
    with open(path, "rb") as fh:
        reader = _Reader(fh, read_only=True, data_only=True, keep_links=False)
        reader.read()
        workbook = reader.wb
        try:
            dates = set(workbook._date_formats)
            dates.update(i for i, style in enumerate(workbook._cell_styles) if style.numFmtId in _EAST_ASIAN_DATES)
            with reader.archive.open(reader.parts[sheet]) as source:
                parser = _Parser(
                    source,
                    reader.shared_strings,
                    data_only=True,
                    epoch=workbook.epoch,
                    date_formats=dates,
                    timedelta_formats=workbook._timedelta_formats,
                )
                yield (_row(cells, workbook.epoch) for cells in parser.rows())
        finally:
            workbook.close()
