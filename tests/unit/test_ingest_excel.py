"""Excel workbooks: both readers (python-calamine, openpyxl streaming) give the same text, the
reader follows the sheet's size, and bombs and oversized parts are refused."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

import openpyxl
import pyarrow.parquet as pq
import pytest

from service.errors import IngestError
from service.ingest import IngestSettings, convert_file, excel
from service.ingest.excel import CALAMINE, OPENPYXL, convert_workbook
from service.ingest.excel_stream import SharedStrings
from tests.corpus.xlsx import write_xlsx

READERS = (CALAMINE, OPENPYXL)


def convert(path: Path, reader: str | None, **settings) -> tuple[list[str], list[dict]]:
    out = path.with_name(f"{path.stem}-{reader}.parquet")
    result = convert_workbook(path, out, settings=IngestSettings(**settings), reader=reader)
    rows = pq.read_table(out).to_pylist()
    assert result.row_count == len(rows)
    return [c.name for c in result.columns], rows


def same_by_both(path: Path) -> tuple[list[str], list[dict]]:
    """The columns and rows of ``path``, after checking both readers give exactly them."""
    first = convert(path, CALAMINE)
    assert convert(path, OPENPYXL) == first
    return first


def fails(path: Path, reader: str | None = None, **settings) -> IngestError:
    with pytest.raises(IngestError) as info:
        convert_workbook(path, path.with_suffix(".parquet"), settings=IngestSettings(**settings), reader=reader)
    return info.value


def patch_part(path: Path, part: str, old: str, new: str) -> None:
    """Replace text in one part of a workbook (for cells the writers do not make)."""
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    assert old.encode() in parts[part]
    parts[part] = parts[part].replace(old.encode(), new.encode(), 1)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)


MIXED = [
    ["name", "count", "price", "day", "at", "time", "ok", "note"],
    ["a", 10, 2.5, dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 12, 30), dt.time(7, 15, 30), True, "x"],
    [],  # a blank row
    ["b", -3, 1e20, dt.date(1999, 12, 31), dt.datetime(2024, 2, 29), None, False],  # ragged
    ["c", 0, 0.1, None, dt.datetime(2024, 1, 1, 23, 59, 59), dt.time(0, 0), None, None, None, "past the header"],
    [None, None, 123456789.125],
    ["José  spaced ", 2**40, -0.5, dt.date(1900, 3, 1), None, dt.time(12, 0), True, "line\nbreak"],
]
EXPECTED = [
    ["a", "10", "2.5", "2024-01-31", "2024-01-31T12:30:00", "07:15:30", "true", "x", "", ""],
    ["b", "-3", "1e+20", "1999-12-31", "2024-02-29", "", "false", "", "", ""],
    ["c", "0", "0.1", "", "2024-01-01T23:59:59", "00:00:00", "", "", "", "past the header"],
    ["", "", "123456789.125", "", "", "", "", "", "", ""],
    ["José  spaced ", "1099511627776", "-0.5", "1900-03-01", "", "12:00:00", "true", "line\nbreak", "", ""],
]


def openpyxl_workbook(path: Path, rows: list[list]) -> None:
    book = openpyxl.Workbook()  # shared strings, number formats per cell, a <dimension>
    sheet = book.active
    sheet.title = "Data"
    for r, row in enumerate(rows, 1):
        for c, value in enumerate(row, 1):
            if value is not None:
                sheet.cell(r, c, value)
    book.save(path)


@pytest.mark.parametrize("writer", ["openpyxl", "inline strings", "shared strings"])
def test_both_readers_give_the_same_text(tmp_path, writer):
    path = tmp_path / "mixed.xlsx"
    if writer == "openpyxl":
        openpyxl_workbook(path, MIXED)
    else:
        write_xlsx(path, {"Data": MIXED}, shared_strings=writer == "shared strings")
    names, rows = same_by_both(path)
    assert names == MIXED[0] + ["column_9", "column_10"]
    assert [list(row.values()) for row in rows] == EXPECTED


def test_the_table_spans_the_columns_holding_text_in_any_row(tmp_path):
    path = tmp_path / "offset.xlsx"
    openpyxl_workbook(
        path,
        [
            [],
            [None, None, "id", "name"],  # the header starts at C2
            [None, None, 1, "a"],
            [None, "left of it", 2, "b", None, None],
            [None, None, 3, None, None, "right of it"],
        ],
    )
    names, rows = same_by_both(path)
    assert names == ["column_1", "id", "name", "column_4", "column_5"]
    assert [list(r.values()) for r in rows] == [
        ["", "1", "a", "", ""],
        ["left of it", "2", "b", "", ""],
        ["", "3", "", "", "right of it"],
    ]


def test_header_only_and_empty_sheets(tmp_path):
    header_only = tmp_path / "header.xlsx"
    write_xlsx(header_only, {"S": [[], ["a", "b"], []]})
    assert same_by_both(header_only) == (["a", "b"], [])
    empty = tmp_path / "empty.xlsx"
    write_xlsx(empty, {"S": [[], [None, ""]]})
    for reader in READERS:
        assert fails(empty, reader).code == "empty_file"


def test_cells_the_writers_do_not_make(tmp_path):
    """Error cells, escaped control characters, stored dates, whitespace kept or not, and
    an East Asian built-in date format: the same text from both readers."""
    path = tmp_path / "odd.xlsx"
    write_xlsx(path, {"S": [["a", "b", "c", "d", "e"], ["_x000D_", 1, 2, 3, 4]]}, shared_strings=True)
    sheet = "xl/worksheets/sheet1.xml"
    patch_part(path, sheet, '<c r="B2"><v>1</v></c>', '<c r="B2" t="e"><v>#N/A</v></c>')
    patch_part(path, sheet, '<c r="C2"><v>2</v></c>', '<c r="C2" t="str"><v>x_x0009_y_x005F_x0041_</v></c>')
    patch_part(path, sheet, '<c r="D2"><v>3</v></c>', '<c r="D2" s="3"><v>45322.25</v></c>')
    patch_part(path, sheet, '<c r="E2"><v>4</v></c>', '<c r="E2" s="1"><v>-1</v></c>')
    patch_part(path, "xl/sharedStrings.xml", '<si><t xml:space="preserve">a</t></si>', "<si><t> a </t></si>")
    patch_part(
        path,
        "xl/sharedStrings.xml",
        '<si><t xml:space="preserve">_x000D_</t></si>',
        "<si><r><t>1 </t></r><r><t>_x000D_</t></r><rPh><t>no</t></rPh></si>",
    )
    patch_part(path, "xl/styles.xml", '<cellXfs count="3">', '<cellXfs count="4">')
    patch_part(
        path, "xl/styles.xml", "</cellXfs>", '<xf numFmtId="27" fontId="0" fillId="0" borderId="0" xfId="0"/></cellXfs>'
    )
    names, rows = same_by_both(path)
    assert names == ["a", "b", "c", "d", "e"]
    assert rows == [{"a": "1\r", "b": "", "c": "x\ty_x0041_", "d": "2024-01-31T06:00:00", "e": "00:00:00"}]


def test_workbook_in_the_1904_date_system(tmp_path):
    path = tmp_path / "mac.xlsx"
    book = openpyxl.Workbook()
    book.epoch = openpyxl.utils.datetime.CALENDAR_MAC_1904
    book.active.append(["day", "at"])
    book.active.append([dt.date(2024, 1, 31), dt.datetime(2024, 1, 31, 1, 2, 3)])
    book.save(path)
    assert same_by_both(path)[1] == [{"day": "2024-01-31", "at": "2024-01-31T01:02:03"}]


def test_shared_strings_across_chunks():
    count = 70_000  # more than one 65,536-string chunk
    xml = '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    xml += "".join(f"<si><t>s{i}</t></si>" for i in range(count)) + "</sst>"
    strings = SharedStrings(io.BytesIO(xml.encode()))
    assert [strings[i] for i in (0, 65_535, 65_536, count - 1)] == ["s0", "s65535", "s65536", f"s{count - 1}"]
    with pytest.raises(IndexError):
        strings[count]


def test_the_reader_follows_the_size_of_the_sheet(tmp_path, monkeypatch):
    small = tmp_path / "small.xlsx"
    write_xlsx(small, {"S": [["a"], [1]]})
    sparse = tmp_path / "sparse.xlsx"  # two cells, but a grid of 702 columns by 100,000 rows for calamine
    write_xlsx(sparse, {"S": [["a"], [1]]})
    patch_part(
        sparse,
        "xl/worksheets/sheet1.xml",
        "</sheetData>",
        '<row r="100000"><c r="ZZ100000"><v>2</v></c></row></sheetData>',
    )
    with zipfile.ZipFile(small) as a, zipfile.ZipFile(sparse) as b:
        assert excel._use_calamine(a, "xl/worksheets/sheet1.xml", None)
        assert not excel._use_calamine(b, "xl/worksheets/sheet1.xml", None)
    result = convert_file(sparse, tmp_path / "sparse.parquet")
    assert result.row_count == 2 and len(result.columns) == 702
    monkeypatch.setattr(excel, "CALAMINE_MAX_XML_BYTES", 100)  # a sheet's XML over the bound is streamed too
    with zipfile.ZipFile(small) as a:
        assert not excel._use_calamine(a, "xl/worksheets/sheet1.xml", None)


def test_zip_bomb_is_refused_before_any_reader_opens_it(tmp_path):
    path = tmp_path / "bomb.xlsx"
    write_xlsx(path, {"S": [["a"], [1]]})
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/padding.bin", b"\0" * (80 << 20))  # 80 MB in about 80 KB
    error = fails(path)
    assert error.status == 413 and error.code == "uncompressed_too_large"
    assert error.details["max_ratio"] == 100 and "expands" in error.message
    small = tmp_path / "small.xlsx"
    write_xlsx(small, {"S": [["a"], [1]]})
    assert fails(small, max_uncompressed_bytes=1000).status == 413


def test_shared_strings_past_their_bound_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "strings.xlsx"
    write_xlsx(path, {"S": [["a"], ["x" * 2000]]}, shared_strings=True)
    monkeypatch.setattr(excel, "MAX_SHARED_STRINGS_BYTES", 1000)
    error = fails(path)
    assert error.status == 413 and "shared strings" in error.message


@pytest.mark.parametrize("reader", READERS)
def test_too_many_columns_missing_sheet_and_damage(tmp_path, reader):
    path = tmp_path / "wide.xlsx"
    write_xlsx(path, {"Wide": [["a", "b", "c", "d"], [1, 2, 3, 4]], "Other": [["x"]]})
    assert fails(path, reader, max_columns=3).code == "too_many_columns"
    with pytest.raises(IngestError) as info:
        convert_workbook(path, tmp_path / "o.parquet", settings=IngestSettings(), sheet="Nope", reader=reader)
    assert info.value.status == 422 and info.value.details["sheets"] == ["Wide", "Other"]
    patch_part(path, "xl/worksheets/sheet1.xml", "</sheetData>", "<row><c r=")
    error = fails(path, reader)
    assert error.status == 400 and error.code == "invalid_workbook"
    assert str(tmp_path) not in error.message
