"""Delimited uploads: exact text values, dialect sniffing, header names, encodings, malformed rows."""

from __future__ import annotations

import csv
import io
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.errors import IngestError
from service.ingest import IngestSettings, SourceColumn, convert_file

SETTINGS = IngestSettings(duckdb_memory_limit="256MB", duckdb_threads=2)


def convert(tmp_path, content: bytes, file_name: str = "data.csv"):
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    dest = tmp_path / "out" / "data.parquet"
    result = convert_file(src, dest, file_name=file_name, settings=SETTINGS)
    table = pq.read_table(dest)
    return result, table


def rows(table: pa.Table) -> list[dict]:
    return table.to_pylist()


def fails(tmp_path, content: bytes, file_name: str = "data.csv") -> IngestError:
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    out_dir = tmp_path / "out"
    with pytest.raises(IngestError) as info:
        convert_file(src, out_dir / "data.parquet", file_name=file_name, settings=SETTINGS)
    # Nothing at dest and no temporary file left behind.
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    return info.value


# --------------------------------------------------------------------------- exact values


def test_values_are_kept_exactly_as_text(tmp_path):
    result, table = convert(tmp_path, b'zip,label,n\n02134, x ,1.50\n,"",007\n')
    assert result.source_format == "csv"
    assert result.row_count == 2
    assert result.columns == [
        SourceColumn("zip", "string"),
        SourceColumn("label", "string"),
        SourceColumn("n", "string"),
    ]
    assert table.schema.types == [pa.string()] * 3
    assert rows(table) == [
        {"zip": "02134", "label": " x ", "n": "1.50"},
        {"zip": "", "label": "", "n": "007"},
    ]
    # Empty fields are empty strings, never nulls.
    assert all(col.null_count == 0 for col in table.columns)


def test_null_like_tokens_stay_text(tmp_path):
    _, table = convert(tmp_path, b"a,b,c\nNULL,null,N/A\n")
    assert rows(table) == [{"a": "NULL", "b": "null", "c": "N/A"}]


def test_quoted_fields_are_unquoted_per_csv_rules(tmp_path):
    content = b'a,b,c\n"x, y","say ""hi""","line1\nline2"\n"crlf\r\nkept",plain,""""\n'
    result, table = convert(tmp_path, content)
    assert result.row_count == 2  # data rows, not physical lines
    assert rows(table) == [
        {"a": "x, y", "b": 'say "hi"', "c": "line1\nline2"},
        {"a": "crlf\r\nkept", "b": "plain", "c": '"'},
    ]


def test_crlf_line_endings_and_missing_final_newline(tmp_path):
    result, table = convert(tmp_path, b"a,b\r\n1,2\r\n3,4")
    assert result.row_count == 2
    assert rows(table) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_header_only_file_has_zero_rows(tmp_path):
    result, table = convert(tmp_path, b"a,b,c\n")
    assert result.row_count == 0
    assert table.num_rows == 0
    assert table.column_names == ["a", "b", "c"]


def test_blank_lines_between_rows_are_not_rows(tmp_path):
    result, table = convert(tmp_path, b"\na,b\n1,2\n\n3,4\n\n")
    assert result.row_count == 2
    assert rows(table) == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


def test_many_tricky_rows_round_trip_exactly(tmp_path):
    rng = random.Random(3)
    pool = ["", " ", "02134", " x ", 'say "hi"', "a,b", "l1\nl2", "r\r\nn", "café", "€", "NULL", "\t", "'q'", '"']
    expected = [
        [rng.choice(pool) + str(rng.randint(0, 99)) * rng.randint(0, 1) for _ in range(4)] for _ in range(20_000)
    ]
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["w", "x", "y", "z"])
    writer.writerows(expected)
    result, table = convert(tmp_path, buf.getvalue().encode())
    assert result.row_count == len(expected)
    got = [list(r) for r in zip(*(c.to_pylist() for c in table.columns))]
    assert got == expected


# --------------------------------------------------------------------------- dialects


@pytest.mark.parametrize(
    ("content", "file_name", "fmt"),
    [
        (b"a;b\n1,5;2\n", "data.csv", "csv"),
        (b"a|b\n1,5|x;y\n", "data.csv", "csv"),
        (b"a\tb\n1,5\tx;y\n", "data.txt", "tsv"),
        (b"a\tb\n1,5\tx;y\n", "data.tsv", "tsv"),
    ],
)
def test_delimiter_is_sniffed(tmp_path, content, file_name, fmt):
    result, table = convert(tmp_path, content, file_name)
    assert result.source_format == fmt
    assert table.column_names == ["a", "b"]
    assert rows(table)[0]["a"] == "1,5"


def test_tsv_extension_breaks_a_tie_for_tab(tmp_path):
    content = b"a,b\tc\n1,2\t3\n"
    result, table = convert(tmp_path, content, "data.tsv")
    assert result.source_format == "tsv"
    assert rows(table) == [{"a,b": "1,2", "c": "3"}]
    result, table = convert(tmp_path, content, "data.csv")
    assert result.source_format == "csv"
    assert rows(table) == [{"a": "1", "b\tc": "2\t3"}]


def test_single_column_keeps_commas_in_values(tmp_path):
    result, table = convert(tmp_path, b"amount\n1,5\n2,25\n", "amounts.csv")
    assert result.source_format == "csv"
    assert rows(table) == [{"amount": "1,5"}, {"amount": "2,25"}]


def test_single_quote_quoting_is_sniffed(tmp_path):
    _, table = convert(tmp_path, b"a,b\n'x,y','it''s'\n'1','2'\n")
    assert rows(table) == [{"a": "x,y", "b": "it's"}, {"a": "1", "b": "2"}]


def test_apostrophes_in_plain_values_are_not_quotes(tmp_path):
    _, table = convert(tmp_path, b"name,city\nO'Brien,D'Arcy\n")
    assert rows(table) == [{"name": "O'Brien", "city": "D'Arcy"}]


def test_backslash_escaped_quotes_are_sniffed(tmp_path):
    _, table = convert(tmp_path, b'a,b\n"say \\"hi\\"",1\n"x, y",2\n')
    assert rows(table) == [{"a": 'say "hi"', "b": "1"}, {"a": "x, y", "b": "2"}]


def test_backslash_before_a_closing_quote_is_not_an_escape_when_quotes_are_doubled(tmp_path):
    _, table = convert(tmp_path, b'path,n\n"C:\\dir\\",1\n"say ""hi""",2\n')
    assert rows(table) == [{"path": "C:\\dir\\", "n": "1"}, {"path": 'say "hi"', "n": "2"}]


def test_stray_quote_inside_an_unquoted_field_is_kept(tmp_path):
    _, table = convert(tmp_path, b'item,size\nscreen,5" wide\n')
    assert rows(table) == [{"item": "screen", "size": '5" wide'}]


# --------------------------------------------------------------------------- header names


def test_duplicate_and_empty_header_names(tmp_path):
    result, table = convert(tmp_path, b"a,a,,b,A,a_2\n1,2,3,4,5,6\n")
    # Compared case-insensitively; "a_2" exists in the source, so the copies take the next free suffix.
    names = ["a", "a_3", "column_3", "b", "A_4", "a_2"]
    assert [c.name for c in result.columns] == names
    assert table.column_names == names
    assert rows(table) == [dict(zip(names, "123456"))]


def test_header_names_keep_their_exact_text(tmp_path):
    content = b'" Name ",Unit Price ($),"it\'s ""q""","multi\nline"\n1,2,3,4\n'
    result, table = convert(tmp_path, content)
    assert table.column_names == [" Name ", "Unit Price ($)", 'it\'s "q"', "multi\nline"]
    assert rows(table)[0]["multi\nline"] == "4"


# --------------------------------------------------------------------------- encodings


def test_utf8_bom_is_not_part_of_the_first_name(tmp_path):
    result, table = convert(tmp_path, b"\xef\xbb\xbfid,name\n1,Zo\xc3\xab\n")
    assert table.column_names == ["id", "name"]
    assert rows(table) == [{"id": "1", "name": "Zoë"}]


def test_utf8_bom_before_a_quoted_header(tmp_path):
    _, table = convert(tmp_path, b'\xef\xbb\xbf"id",name\n1,x\n')
    assert table.column_names == ["id", "name"]


def test_latin1_file(tmp_path):
    _, table = convert(tmp_path, b"name,city\ncaf\xe9,Z\xfcrich\n")
    assert rows(table) == [{"name": "café", "city": "Zürich"}]


def test_cp1252_file_with_euro_sign_and_undefined_bytes(tmp_path):
    _, table = convert(tmp_path, b"price,note\n\x8010,\x93quoted\x94 \x81\x8d\x8f\x90\x9d\n")
    assert rows(table) == [{"price": "€10", "note": "\u201cquoted\u201d \x81\x8d\x8f\x90\x9d"}]


def test_invalid_utf8_after_the_sniffed_head_switches_the_whole_file(tmp_path):
    # Valid UTF-8 (and ASCII) for well over the first megabyte, then one cp1252 byte.
    content = b"a,b\n" + b"x,y\n" * 300_000 + b"caf\xe9,\x80\n"
    result, table = convert(tmp_path, content)
    assert result.row_count == 300_001
    assert rows(table.slice(300_000)) == [{"a": "café", "b": "€"}]


def test_cp1252_with_bom_bytes_drops_the_bom(tmp_path):
    _, table = convert(tmp_path, b"\xef\xbb\xbfname\ncaf\xe9\n")
    assert table.column_names == ["name"]
    assert rows(table) == [{"name": "café"}]


# --------------------------------------------------------------------------- malformed files


@pytest.mark.parametrize(
    ("content", "line", "needle"),
    [
        (b"a,b\n1,2\n3,4,5\n6,7\n", 3, "expected 2 fields, found 3"),
        (b"a,b\n1,2\n3\n6,7\n", 3, "expected 2 fields, found 1"),
        (b'a,b\n1,2\n"3,4\n5,6\n', 3, "unclosed quote"),
        (b'a,b\n"x\ny",1\n3,4,5\n', 4, "expected 2 fields, found 3"),  # physical line, after a quoted newline
        (b'a,b\n"x\ny","z\n1,2\n', 3, "unclosed quote"),  # the quote opens on the record's second line
        (b"a,b\n1,2\n\n\n3\n", 5, "expected 2 fields, found 1"),
        (b"a,b\r\n1,2\r\n3,4,5", 3, "expected 2 fields, found 3"),
        (b'a,b\n1,"x"y\n2,"c,d"\n', 2, "after a closing quote"),  # quotes are quoting: line 3
        (b'"a,b\n1,2\n', 1, "unclosed quote"),
        (b"\n\na,b\n1,2\n3\n", 5, "expected 2 fields, found 1"),  # blank lines before the header count
        (b"\xef\xbb\xbfa;b\n1;2\n3;4;5\n", 3, "expected 2 fields, found 3"),
    ],
)
def test_malformed_rows_report_the_physical_line(tmp_path, content, line, needle):
    error = fails(tmp_path, content)
    assert error.status == 400
    assert error.code == "malformed_csv"
    assert error.details["line"] == line
    assert error.message.startswith(f"line {line}: ")
    assert needle in error.message


def test_field_counts_are_in_the_details(tmp_path):
    error = fails(tmp_path, b"a,b\n1,2\n3,4,5\n")
    assert error.message == "line 3: expected 2 fields, found 3"
    assert error.details == {"line": 3, "expected_fields": 2, "found_fields": 3}


def test_error_far_into_a_file_with_multiline_values(tmp_path):
    lines = ["a,b\n"] + [f'"v\n{i}",{i}\n' if i % 100 == 0 else f"{i},{i}\n" for i in range(50_000)]
    physical = sum(part.count("\n") for part in lines)
    error = fails(tmp_path, ("".join(lines) + "x,y,z\n" + "1,2\n" * 10).encode())
    assert error.details["line"] == physical + 1


def test_cp1252_file_errors_report_lines_too(tmp_path):
    error = fails(tmp_path, b"a,b\ncaf\xe9,1\n\x80,2,3\n")
    assert error.details["line"] == 3


# --------------------------------------------------------------------------- files DuckDB's strict reader refuses


def test_mixed_line_endings_are_converted(tmp_path):
    content = b"a,b\r\n" + b"1,2\r\n" * 500 + b"3,4\n" * 500 + b'"q\nv",5\r\n'
    result, table = convert(tmp_path, content)
    assert result.row_count == 1001
    values = rows(table)
    assert values[0] == {"a": "1", "b": "2"} and values[999] == {"a": "3", "b": "4"}
    assert values[-1] == {"a": "q\nv", "b": "5"}


def test_mixed_line_endings_with_a_malformed_row(tmp_path):
    error = fails(tmp_path, b"a,b\r\n1,2\r\n3,4\n5\n")
    assert error.details["line"] == 4


def test_very_long_field(tmp_path):
    long_value = "x" * 3_000_000
    result, table = convert(tmp_path, f"a,b\n{long_value},1\nshort,2\n".encode())
    assert result.row_count == 2
    assert rows(table)[0] == {"a": long_value, "b": "1"}


def test_output_is_replaced_atomically_and_sized(tmp_path):
    result, _ = convert(tmp_path, b"a\n1\n")
    out = tmp_path / "out"
    assert [p.name for p in out.iterdir()] == ["data.parquet"]
    assert result.size_bytes == (out / "data.parquet").stat().st_size > 0


def test_wide_files_get_row_groups_bounded_by_size(tmp_path, monkeypatch):
    """Row groups stay small enough to buffer inside the DuckDB memory limit."""
    import pyarrow.parquet as pq

    from service.ingest import convert_file, delimited
    from service.ingest.delimited import row_group_rows

    monkeypatch.setattr(delimited, "ROW_GROUP_BYTES", 24 << 20)
    columns, rows = 500, 5000
    src = tmp_path / "wide.csv"
    with open(src, "w") as fh:
        fh.write(",".join(f"c{i}" for i in range(columns)) + "\n")
        for r in range(rows):
            fh.write(",".join(str(r * i) for i in range(columns)) + "\n")
    layout = delimited.read_layout(src, prefer_tab=False)
    bound = row_group_rows(columns, layout.line_bytes)
    # 16 bytes per value and about 3 KB of text per row (in the head): some 2,300 rows in 24 MB.
    assert 2_500 < layout.line_bytes < 3_500 and 2_100 < bound < 2_600
    result = convert_file(src, tmp_path / "wide.parquet", file_name="wide.csv")
    meta = pq.ParquetFile(tmp_path / "wide.parquet").metadata
    assert result.row_count == rows and meta.num_columns == columns
    # DuckDB fills a row group in chunks of up to 2,048 rows.
    assert meta.num_row_groups > 1
    assert max(meta.row_group(i).num_rows for i in range(meta.num_row_groups)) <= bound + 2048
    assert row_group_rows(64, 2_400) < row_group_rows(64, 60)
    assert row_group_rows(8) == 122_880


def test_columns_of_few_distinct_values_are_dictionary_encoded(tmp_path):
    """A code column gets dictionary pages, a unique one plain pages; values stay exact."""
    from service.ingest.delimited import DICTIONARY_CELLS, DICTIONARY_VALUES, dictionary_limit

    lines = [b"id,code"] + [f"{i},c{i % 7}".encode() for i in range(30_000)]
    result, table = convert(tmp_path, b"\n".join(lines) + b"\n")
    column = {
        c.path_in_schema: c
        for c in (pq.ParquetFile(tmp_path / "out" / "data.parquet").metadata.row_group(0).column(i) for i in range(2))
    }
    assert "PLAIN_DICTIONARY" in column["code"].encodings or "RLE_DICTIONARY" in column["code"].encodings
    assert not {"PLAIN_DICTIONARY", "RLE_DICTIONARY"} & set(column["id"].encodings)
    assert table.column("code").to_pylist()[:8] == ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c0"]
    assert result.row_count == 30_000
    assert dictionary_limit(8) == DICTIONARY_VALUES
    assert 1 < dictionary_limit(500) and dictionary_limit(500) * 500 <= DICTIONARY_CELLS
