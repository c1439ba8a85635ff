"""Format detection, empty and unsupported uploads, Parquet uploads, output handling."""

from __future__ import annotations

import datetime as dt
import os
import socket

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.errors import IngestError
from service.ingest import SUPPORTED_FORMATS, IngestSettings, SourceColumn, convert_file


def run(tmp_path, content: bytes, file_name: str | None, **kwargs):
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    dest = tmp_path / "out" / "data.parquet"
    return convert_file(src, dest, file_name=file_name, **kwargs), dest


def fails(tmp_path, content: bytes, file_name: str | None) -> IngestError:
    src = tmp_path / "upload.bin"
    src.write_bytes(content)
    out_dir = tmp_path / "out"
    with pytest.raises(IngestError) as info:
        convert_file(src, out_dir / "data.parquet", file_name=file_name)
    assert not out_dir.exists() or list(out_dir.iterdir()) == []
    return info.value


# --------------------------------------------------------------------------- empty and unsupported


@pytest.mark.parametrize(
    ("content", "file_name"),
    [
        (b"", "empty.csv"),
        (b"   \n\r\n\t", "blank.csv"),
        (b"\xef\xbb\xbf", "bom.csv"),
        (b"\xef\xbb\xbf\n\n", "bom.json"),
        (b"\n" * 100_000, None),
    ],
)
def test_empty_files(tmp_path, content, file_name):
    error = fails(tmp_path, content, file_name)
    assert error.status == 400
    assert error.code == "empty_file"
    assert "empty" in error.message.lower()


@pytest.mark.parametrize(
    ("content", "file_name", "needle"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image.png", "PNG"),
        (b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 40, "book.docx", "Office document"),
        (b"\xfd7zXZ\x00" + b"\x00" * 20, "data.csv.xz", "xz"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "report.pdf", "PDF"),
        (bytes(range(256)) * 4, "data.csv", "binary"),
    ],
)
def test_binary_content_is_unsupported(tmp_path, content, file_name, needle):
    error = fails(tmp_path, content, file_name)
    assert error.status == 415
    assert error.code == "unsupported_format"
    assert needle in error.message
    for fmt in ("CSV", "TSV", "JSON", "NDJSON", "Parquet"):
        assert fmt in error.message
    assert error.details["supported_formats"] == list(SUPPORTED_FORMATS)


# --------------------------------------------------------------------------- detection


def test_content_decides_over_a_misleading_extension(tmp_path):
    result, _ = run(tmp_path, b'[{"a": 1}]', "data.txt.bak")
    assert result.source_format == "json"


def test_csv_extension_keeps_a_bracket_header_as_csv(tmp_path):
    result, dest = run(tmp_path, b"[id],name\n1,x\n", "data.csv")
    assert result.source_format == "csv"
    assert pq.read_table(dest).column_names == ["[id]", "name"]


def test_json_extension_with_text_that_is_not_json(tmp_path):
    error = fails(tmp_path, b"a,b\n1,2\n", "data.json")
    assert error.code == "invalid_json"


def test_without_a_file_name_the_content_decides(tmp_path):
    result, _ = run(tmp_path, b"a\tb\n1\t2\n", None)
    assert result.source_format == "tsv"
    other = tmp_path / "other"
    other.mkdir()
    result, _ = run(other, b'{"a": 1}\n{"a": 2}\n', None)
    assert result.source_format == "ndjson"


def test_file_name_is_only_a_hint_never_a_path(tmp_path):
    result, dest = run(tmp_path, b"a,b\n1,2\n", "../../../etc/passwd.csv")
    assert result.row_count == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["data.parquet", "out", "upload.bin"]


# --------------------------------------------------------------------------- Parquet uploads


def test_parquet_upload_is_kept_with_its_types(tmp_path):
    table = pa.table(
        {
            "s": pa.array(["a", None], pa.string()),
            "ls": pa.array(["x", "y"], pa.large_string()),
            "i32": pa.array([1, 2], pa.int32()),
            "i64": pa.array([3, None], pa.int64()),
            "f": pa.array([1.5, 2.0], pa.float64()),
            "b": pa.array([True, False]),
            "d": pa.array([dt.date(2024, 1, 2), None], pa.date32()),
            "t": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5), None], pa.timestamp("us")),
            "dec": pa.array([1, 2], pa.decimal128(10, 2)),
            "lst": pa.array([[1], []], pa.list_(pa.int64())),
        }
    )
    src = tmp_path / "upload.bin"
    pq.write_table(table, src)
    dest = tmp_path / "out" / "data.parquet"
    result = convert_file(src, dest, file_name="anything.bin")
    assert result.source_format == "parquet"
    assert result.row_count == 2
    assert result.columns == [
        SourceColumn("s", "string"),
        SourceColumn("ls", "string"),
        SourceColumn("i32", "integer"),
        SourceColumn("i64", "integer"),
        SourceColumn("f", "double"),
        SourceColumn("b", "boolean"),
        SourceColumn("d", "date"),
        SourceColumn("t", "timestamp"),
        SourceColumn("dec", "decimal128(10, 2)"),
        SourceColumn("lst", "list<element: int64>"),  # the Arrow type text
    ]
    assert pq.read_table(dest).equals(table)
    assert result.size_bytes == dest.stat().st_size == src.stat().st_size


def test_corrupt_parquet(tmp_path):
    error = fails(tmp_path, b"PAR1" + b"\x07garbage" * 20 + b"PAR1", "data.parquet")
    assert error.status == 400
    assert error.code == "invalid_parquet"


def test_truncated_parquet(tmp_path):
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": list(range(1000))}), buffer)
    data = buffer.getvalue().to_pybytes()
    error = fails(tmp_path, data[: len(data) // 2], "data.parquet")
    assert error.code == "invalid_parquet"


def test_binary_file_named_parquet(tmp_path):
    error = fails(tmp_path, b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "data.parquet")
    assert error.code == "invalid_parquet"


# --------------------------------------------------------------------------- output handling


def test_output_is_readable_by_plain_readers(tmp_path):
    result, dest = run(tmp_path, b"a,b\n1,x\n", "data.csv")
    table = pq.read_table(dest)
    assert table.schema == pa.schema([pa.field("a", pa.string()), pa.field("b", pa.string())])
    assert result.size_bytes == dest.stat().st_size


def test_work_files_go_to_temp_dir_and_are_removed(tmp_path):
    work = tmp_path / "work"
    settings = IngestSettings(duckdb_memory_limit="256MB", duckdb_threads=1, temp_dir=str(work))
    result, dest = run(tmp_path, b"name\ncaf\xe9\n", "latin.csv", settings=settings)
    assert pq.read_table(dest).to_pylist() == [{"name": "café"}]
    # Only the process's DuckDB spill directory stays, kept for the next conversion.
    own = f"duckdb-{socket.gethostname()}-{os.getpid()}-"
    assert [p.name for p in work.iterdir() if not p.name.startswith(own)] == []
    assert [p.name for p in dest.parent.iterdir()] == ["data.parquet"]


def test_existing_destination_survives_a_failed_conversion(tmp_path):
    dest = tmp_path / "out" / "data.parquet"
    dest.parent.mkdir()
    dest.write_bytes(b"previous")
    src = tmp_path / "upload.bin"
    src.write_bytes(b"a,b\n1,2,3\n")
    with pytest.raises(IngestError):
        convert_file(src, dest, file_name="data.csv")
    assert dest.read_bytes() == b"previous"
    assert [p.name for p in dest.parent.iterdir()] == ["data.parquet"]
