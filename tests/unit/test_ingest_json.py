"""JSON array and NDJSON uploads, and records from the JSON API."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.errors import IngestError
from service.ingest import SourceColumn, convert_file, convert_records


def convert(tmp_path, content: bytes, file_name: str = "data.json"):
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    dest = tmp_path / "out" / "data.parquet"
    result = convert_file(src, dest, file_name=file_name)
    return result, pq.read_table(dest)


def fails(tmp_path, content: bytes, file_name: str = "data.json") -> IngestError:
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    out_dir = tmp_path / "out"
    with pytest.raises(IngestError) as info:
        convert_file(src, out_dir / "data.parquet", file_name=file_name)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    return info.value


def types(result) -> dict[str, str]:
    return {c.name: c.type for c in result.columns}


# --------------------------------------------------------------------------- types


def test_json_array_keeps_json_types(tmp_path):
    records = [
        {"id": 1, "price": 2.5, "ok": True, "name": "a", "when": "2024-01-02", "zip": "02134"},
        {"id": 2, "price": 3, "ok": False, "name": None, "when": "2024-01-03", "zip": "10001"},
    ]
    result, table = convert(tmp_path, json.dumps(records).encode())
    assert result.source_format == "json"
    assert result.row_count == 2
    assert types(result) == {
        "id": "integer",
        "price": "double",  # ints and floats mixed
        "ok": "boolean",
        "name": "string",
        "when": "string",  # strings are never parsed here
        "zip": "string",
    }
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("price").type == pa.float64()
    assert table.schema.field("ok").type == pa.bool_()
    assert table.to_pylist() == [
        {"id": 1, "price": 2.5, "ok": True, "name": "a", "when": "2024-01-02", "zip": "02134"},
        {"id": 2, "price": 3.0, "ok": False, "name": None, "when": "2024-01-03", "zip": "10001"},
    ]


def test_nested_values_are_stored_as_json_text(tmp_path):
    records = [{"tags": ["x", 1], "meta": {"a": {"b": "ü"}}}, {"tags": [], "meta": None}]
    result, table = convert(tmp_path, json.dumps(records).encode())
    assert types(result) == {"tags": "json", "meta": "json"}
    assert table.to_pylist() == [
        {"tags": '["x",1]', "meta": '{"a":{"b":"ü"}}'},
        {"tags": "[]", "meta": None},
    ]
    assert json.loads(table.column("meta")[0].as_py()) == records[0]["meta"]


def test_incompatible_types_keep_the_json_text_of_every_value(tmp_path):
    records = [{"v": 1, "f": True, "big": 12345678901234567890}, {"v": "a", "f": 2}, {"v": None, "f": [1]}]
    result, table = convert(tmp_path, json.dumps(records).encode())
    assert types(result) == {"v": "string", "f": "string", "big": "string"}
    assert table.to_pylist() == [
        {"v": "1", "f": "true", "big": "12345678901234567890"},
        {"v": '"a"', "f": "2", "big": None},
        {"v": None, "f": "[1]", "big": None},
    ]


def test_missing_keys_are_null_and_columns_follow_first_appearance(tmp_path):
    content = b'[{"b": 1}, {"a": "x"}, {"c": null, "b": 2}]'
    result, table = convert(tmp_path, content)
    assert [c.name for c in result.columns] == ["b", "a", "c"]
    assert result.columns[2] == SourceColumn("c", "string")  # only nulls
    assert table.to_pylist() == [
        {"b": 1, "a": None, "c": None},
        {"b": None, "a": "x", "c": None},
        {"b": 2, "a": None, "c": None},
    ]


def test_keys_are_made_unique_like_csv_headers(tmp_path):
    result, table = convert(tmp_path, b'[{"a": 1, "A": 2, "": 3}]')
    assert table.column_names == ["a", "A_2", "column_3"]
    assert table.to_pylist() == [{"a": 1, "A_2": 2, "column_3": 3}]


def test_large_json_array_streams_across_chunks(tmp_path):
    records = [{"i": i, "s": "x" * (i % 50), "n": {"k": i}} for i in range(60_000)]
    result, table = convert(tmp_path, json.dumps(records, indent=1).encode())
    assert result.row_count == 60_000
    assert table.column("i").to_pylist() == list(range(60_000))
    assert table.column("n")[59_999].as_py() == '{"k":59999}'


def test_json_in_cp1252(tmp_path):
    _, table = convert(tmp_path, b'[{"name": "caf\xe9 \x80"}]')
    assert table.to_pylist() == [{"name": "café €"}]


def test_json_with_bom(tmp_path):
    result, table = convert(tmp_path, b'\xef\xbb\xbf[{"a": 1}]')
    assert table.to_pylist() == [{"a": 1}]


# --------------------------------------------------------------------------- NDJSON


def test_ndjson(tmp_path):
    content = b'{"a": 1, "b": "x"}\n\n{"a": 2.5, "c": [1]}\r\n{"b": null}\n'
    result, table = convert(tmp_path, content, "events.ndjson")
    assert result.source_format == "ndjson"
    assert result.row_count == 3
    assert types(result) == {"a": "double", "b": "string", "c": "json"}
    assert table.to_pylist() == [
        {"a": 1.0, "b": "x", "c": None},
        {"a": 2.5, "b": None, "c": "[1]"},
        {"a": None, "b": None, "c": None},
    ]


def test_ndjson_is_detected_from_content(tmp_path):
    result, _ = convert(tmp_path, b'{"a": 1}\n{"a": 2}\n', "export.json")
    assert result.source_format == "ndjson"
    assert result.row_count == 2


def test_single_line_object_is_accepted_as_ndjson_only_when_named_so(tmp_path):
    result, _ = convert(tmp_path, b'{"a": 1}\n', "one.jsonl")
    assert result.row_count == 1
    other = tmp_path / "other"
    other.mkdir()
    error = fails(other, b'{"a": 1, "b": [1, 2]}', "one.json")
    assert error.code == "invalid_json" and "array of objects" in error.message


def test_pretty_printed_single_object_is_rejected(tmp_path):
    error = fails(tmp_path, b'{\n  "a": 1\n}\n', "one.json")
    assert error.status == 400
    assert error.code == "invalid_json"
    assert "JSON must be an array of objects" in error.message


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "file_name", "line", "needle"),
    [
        (b'[{"a": 1},\n{"a": 2,,}]', "bad.json", 2, "line 2, column 9"),
        (b'[{"a": 1},\n {"a": 2}\n {"a": 3}]', "bad.json", 3, "Expecting ',' delimiter"),
        (b'[{"a": 1},]', "bad.json", 1, "Expecting value"),
        (b'[{"a": 1}', "bad.json", 1, "not closed"),
        (b'[{"a": NaN}]', "bad.json", 1, "NaN is not valid JSON"),
        (b'[{"a": 1}] x', "bad.json", 1, "after the end of the array"),
        (b'{"a": 1}\n{"a": \n{"a": 3}\n', "bad.ndjson", 2, "line 2: "),
        (b'{"a": 1}\n{"a": 2}\n\n[1]\n', "bad.ndjson", 4, "expected a JSON object"),
    ],
)
def test_invalid_json_reports_where(tmp_path, content, file_name, line, needle):
    error = fails(tmp_path, content, file_name)
    assert error.status == 400
    assert error.code == "invalid_json"
    assert error.details["line"] == line
    assert error.message.startswith(f"line {line}")
    assert needle in error.message


def test_array_element_that_is_not_an_object(tmp_path):
    error = fails(tmp_path, b'[{"a": 1},\n 2]')
    assert error.code == "invalid_json"
    assert "element [1] is not an object" in error.message
    assert "array of objects" in error.message
    assert error.details["line"] == 2


@pytest.mark.parametrize("content", [b"[1, 2, 3]", b'"text"', b"42"])
def test_top_level_that_is_not_an_array_of_objects(tmp_path, content):
    error = fails(tmp_path, content, "numbers.json")
    assert error.code == "invalid_json"
    assert "array of objects" in error.message


@pytest.mark.parametrize("content", [b"[]", b" [ ] ", b"[{}, {}]"])
def test_no_records_or_no_fields_is_empty(tmp_path, content):
    error = fails(tmp_path, content)
    assert error.status == 400
    assert error.code == "empty_file"


# --------------------------------------------------------------------------- API records


def test_records_match_a_json_array_file(tmp_path):
    records = [{"sku": "A-1", "qty": 3, "tags": ["x"]}, {"sku": "B-2", "qty": 5.5, "extra": True}]
    dest = tmp_path / "records.parquet"
    result = convert_records(records, dest)
    file_result, file_table = convert(tmp_path, json.dumps(records).encode())
    assert result.source_format == "json"
    assert result.row_count == 2
    assert result.columns == file_result.columns
    assert result.size_bytes == dest.stat().st_size
    assert pq.read_table(dest).to_pylist() == file_table.to_pylist()


@pytest.mark.parametrize(
    ("records", "needle"),
    [
        ([{"a": 1}, {"a": 2}, {"a": 3}, 5], "records[3] is not an object"),
        ([["a"]], "records[0] is not an object"),
        ({"a": 1}, "array of objects"),
        ("text", "array of objects"),
    ],
)
def test_bad_records(tmp_path, records, needle):
    dest = tmp_path / "records.parquet"
    with pytest.raises(IngestError) as info:
        convert_records(records, dest)
    assert info.value.status == 400
    assert needle in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_empty_records(tmp_path):
    with pytest.raises(IngestError) as info:
        convert_records([], tmp_path / "records.parquet")
    assert info.value.code == "empty_file"
    assert list(tmp_path.iterdir()) == []
