"""Hostile uploads, generated in code: bombs, quadratic shapes, deep nesting, odd encodings.

Each case is a request the API must answer with 201 or the right 4xx, naming the problem,
fast and within bounded memory. The test suite (tests/hostile) and the harness
(bench/hostile.py) send the same cases. Every body fits the test stack's limits
(MAX_UPLOAD_MB=5, MAX_JSON_BODY_MB=2).
"""

from __future__ import annotations

import gzip
import io
import itertools
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

MB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[], bytes]  # the file, or the JSON body when ``json_body``
    statuses: tuple[int, ...]  # acceptable answers
    code: str | None = None  # the error code expected when the answer is an error
    needle: str | None = None  # text the error message must contain (lower case)
    file_name: str = "data.csv"
    json_body: bool = False
    headers: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- builders


def _parquet(table: pa.Table, **options) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, **options)
    return buf.getvalue()


def parquet_dictionary_bomb(rows: int = 30_000, value_bytes: int = 10_000) -> bytes:
    """One row group whose two text columns reference one large dictionary value on every row:
    about 500 bytes on disk, rows x value_bytes x 2 once decoded."""
    indices = pa.array([0] * rows, pa.int32())
    columns = {
        name: pa.DictionaryArray.from_arrays(indices, pa.array([letter * value_bytes]))
        for name, letter in (("a", "x"), ("b", "y"))
    }
    return _parquet(pa.table(columns), store_schema=False, compression="zstd", row_group_size=rows)


def parquet_null_rows_bomb(rows: int = 60_000_000) -> bytes:
    """Sixty million null integers: run-length encoded to a few kilobytes, 480 MB as values."""
    return _parquet(pa.table({"n": pa.nulls(rows, pa.int64())}), row_group_size=rows, compression="zstd")


def parquet_wide(columns: int) -> bytes:
    return _parquet(pa.table({f"c{i}": pa.array([i], pa.int32()) for i in range(columns)}))


def parquet_many_row_groups(groups: int = 2_000) -> bytes:
    return _parquet(pa.table({"n": pa.array(range(groups), pa.int64())}), row_group_size=1)


def parquet_truncated() -> bytes:
    whole = _parquet(pa.table({"n": pa.array(range(1000), pa.int64())}))
    return whole[: len(whole) // 2] + b"PAR1"


def deep_brackets(depth: int) -> bytes:
    return b"[" * depth


def json_nested_value(depth: int) -> bytes:
    return b'[{"a": ' + b"[" * depth + b"1" + b"]" * depth + b"}]"


def ndjson_deep_line(depth: int) -> bytes:
    return b'{"a": 1}\n{"a": ' + b"[" * depth + b"]" * depth + b"}\n"


def body(records_json: bytes, name: str = "hostile") -> bytes:
    return b'{"name": ' + json.dumps(name).encode() + b', "records": ' + records_json + b"}"


def empty_records_body(size: int) -> bytes:
    count = (size - 40) // 3
    return body(b"[" + b"{}," * (count - 1) + b"{}]")


def alike_keys(count: int) -> list[str]:
    """Distinct source names that all snake_case to ``a``."""
    keys = []
    for length in itertools.count(0):
        for combo in itertools.product(" -.!#$%&*+", repeat=length):
            keys.append("a" + "".join(combo))
            if len(keys) == count:
                return keys
    raise AssertionError("unreachable")


def json_alike_keys(count: int) -> bytes:
    return json.dumps([{key: 1 for key in alike_keys(count)}]).encode()


def ndjson_new_key_per_line(count: int) -> bytes:
    return b"".join(json.dumps({f"k{i}": i}).encode() + b"\n" for i in range(count))


def csv_same_names(columns: int, delimiter: str = ",") -> bytes:
    header = delimiter.join(["a"] * columns)
    row = delimiter.join(["1"] * columns)
    return f"{header}\n{row}\n".encode()


def csv_long_line(size: int) -> bytes:
    return b"a,b\n" + b"x" * size + b",1\n"


def csv_many_lines(lines: int) -> bytes:
    return b"n\n" + b"1\n" * lines


def csv_huge_header(size: int) -> bytes:
    return b"h" * size + b",b\n1,2\n"


def big_integer_json(digits: int = 5_000) -> bytes:
    return b'[{"a": ' + b"1" * digits + b"}]"


def gzip_bomb() -> bytes:
    # 80 MB of text in about 80 KB: past the expansion bound (64 MB floor, ratio 100).
    return gzip.compress(b"a,b\n" + b"1,2\n" * (20 << 20))


def zstd_bomb() -> bytes:
    return zstandard.ZstdCompressor().compress(b"a,b\n" + b"1,2\n" * (20 << 20))


def xlsx_bomb() -> bytes:
    """A workbook with a part of 80 MB of zeros in about 80 KB: past the expansion bound."""
    from tests.corpus.xlsx import write_xlsx

    buf = io.BytesIO()
    write_xlsx(buf, {"S": [["a"], [1]]})
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("xl/media/padding.bin", bytes(80 << 20))
    return buf.getvalue()


def xlsx_far_corners() -> bytes:
    """Two cells, at A1 and CV1048576: a grid of 100 million cells to a reader that holds it."""
    from tests.corpus.xlsx import write_xlsx

    buf = io.BytesIO()
    write_xlsx(buf, {"S": [["a"], [1]]})
    with zipfile.ZipFile(buf) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    far = b'<row r="1048576"><c r="CV1048576"><v>2</v></c></row></sheetData>'
    parts["xl/worksheets/sheet1.xml"] = parts["xl/worksheets/sheet1.xml"].replace(b"</sheetData>", far)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    return out.getvalue()


# --------------------------------------------------------------------------- the cases

CASES: list[Case] = [
    # Parquet
    Case(
        "parquet dictionary bomb",
        parquet_dictionary_bomb,
        (413,),
        "parquet_too_large_to_decode",
        "parquet_decode_budget_mb",
        file_name="bomb.parquet",
    ),
    Case(
        "parquet run-length bomb",
        parquet_null_rows_bomb,
        (413,),
        "parquet_too_large_to_decode",
        "row group 0",
        file_name="nulls.parquet",
    ),
    Case(
        "parquet 5,000 columns",
        lambda: parquet_wide(5_000),
        (422,),
        "too_many_columns",
        "max_columns",
        file_name="wide.parquet",
    ),
    Case("parquet 2,000 row groups", parquet_many_row_groups, (201,), file_name="groups.parquet"),
    Case("parquet truncated", parquet_truncated, (400,), "invalid_parquet", "parquet", file_name="cut.parquet"),
    Case(
        "parquet magic only",
        lambda: b"PAR1" + b"\x00" * 64 + b"PAR1",
        (400,),
        "invalid_parquet",
        "parquet",
        file_name="magic.parquet",
    ),
    # JSON files
    Case(
        "json 100,000 open brackets",
        lambda: deep_brackets(100_000),
        (400,),
        "json_too_deep",
        "64 levels",
        file_name="deep.json",
    ),
    Case(
        "json value nested 100 deep",
        lambda: json_nested_value(100),
        (400,),
        "json_too_deep",
        "64 levels",
        file_name="nested.json",
    ),
    Case("json value nested 60 deep", lambda: json_nested_value(60), (201,), file_name="nested60.json"),
    Case(
        "ndjson line nested 5,000 deep",
        lambda: ndjson_deep_line(5_000),
        (400,),
        "json_too_deep",
        "line 2",
        file_name="deep.ndjson",
    ),
    Case(
        "json 5,000 keys alike",
        lambda: json_alike_keys(5_000),
        (422,),
        "too_many_columns",
        "4096",
        file_name="alike.json",
    ),
    Case("json 4,000 keys alike", lambda: json_alike_keys(4_000), (201,), file_name="alike4k.json"),
    Case(
        "ndjson new key on 5,000 lines",
        lambda: ndjson_new_key_per_line(5_000),
        (422,),
        "too_many_columns",
        "max_columns",
        file_name="keys.ndjson",
    ),
    Case("ndjson new key on 4,000 lines", lambda: ndjson_new_key_per_line(4_000), (201,), file_name="keys4k.ndjson"),
    Case("json integer of 5,000 digits", big_integer_json, (400,), "invalid_json", "digits", file_name="big.json"),
    Case("json NaN", lambda: b'[{"a": NaN}]', (400,), "invalid_json", "nan", file_name="nan.json"),
    Case("json one 4 MB string", lambda: b'[{"s": "' + b"x" * (4 * MB) + b'"}]', (201,), file_name="long.json"),
    Case("json not UTF-8", lambda: '[{"caf\u00e9": "cr\u00e8me"}]'.encode("latin-1"), (201,), file_name="latin.json"),
    # JSON bodies
    Case(
        "body of 100,000 open brackets",
        lambda: deep_brackets(100_000),
        (400,),
        "invalid_json",
        "object",
        json_body=True,
    ),
    Case(
        "body records nested 100 deep",
        lambda: body(json_nested_value(100)),
        (400,),
        "json_too_deep",
        "64 levels",
        json_body=True,
    ),
    Case(
        "body name nested 5,000 deep",
        lambda: b'{"name": ' + deep_brackets(5_000),
        (400,),
        "json_too_deep",
        "64 levels",
        json_body=True,
    ),
    Case(
        "body of 600,000 empty records",
        lambda: empty_records_body(int(1.9 * MB)),
        (400,),
        "empty_file",
        "no fields",
        json_body=True,
    ),
    Case(
        "body over its limit",
        lambda: body(b"[" + b'{"a": 1},' * 300_000 + b'{"a": 1}]'),
        (413,),
        "payload_too_large",
        "max_json_body_mb",
        json_body=True,
    ),
    Case("body not UTF-8", lambda: body(b'[{"a": "\xff\xfe"}]'), (400,), "invalid_json", "utf-8", json_body=True),
    Case("body records not an array", lambda: body(b'{"a": 1}'), (422,), "validation_error", "records", json_body=True),
    # Delimited files
    Case("csv 6,000 columns all named a", lambda: csv_same_names(6_000), (422,), "too_many_columns", "6000"),
    Case("csv 4,000 columns all named a", lambda: csv_same_names(4_000), (201,)),
    Case(
        "tsv 6,000 columns",
        lambda: csv_same_names(6_000, "\t"),
        (422,),
        "too_many_columns",
        "max_columns",
        file_name="wide.tsv",
    ),
    Case("csv one 4 MB line", lambda: csv_long_line(4 * MB), (201,)),
    Case("csv 2,000,000 short lines", lambda: csv_many_lines(2_000_000), (201,)),
    Case("csv 2 MB header", lambda: csv_huge_header(2 * MB), (201, 422)),
    Case("csv quote left open", lambda: b'a,b\n"1,2\n' + b"3,4\n" * 10_000, (400,), "malformed_csv", "line 2"),
    Case("csv not UTF-8", lambda: "caf\u00e9,cr\u00e8me\n1,2\n".encode("cp1252"), (201,)),
    Case("csv control characters in names", lambda: b"a\x01b,c\x1bd,e\x7ff\n" + b"1,2,3\n" * 200, (201,)),
    Case("csv NUL bytes", lambda: b"a,b\n1,\x002\n" * 10, (415,), "unsupported_format", "binary"),
    Case("gzip bomb", gzip_bomb, (413,), "uncompressed_too_large", "expands", file_name="data.csv.gz"),
    Case("zstd bomb", zstd_bomb, (413,), "uncompressed_too_large", "expands", file_name="data.csv.zst"),
    # Excel workbooks
    Case("xlsx zip bomb", xlsx_bomb, (413,), "uncompressed_too_large", "expands", file_name="bomb.xlsx"),
    Case("xlsx cells at far corners", xlsx_far_corners, (201,), file_name="corners.xlsx"),
    # Names and headers
    Case("file name of 300 characters", lambda: b"a\n1\n", (201,), file_name="n" * 296 + ".csv"),
    Case("file name with control characters", lambda: b"a\n1\n", (201,), file_name="x\x01\x1b\u202e.csv"),
    # A server in front may refuse these itself (gunicorn: 400 above 100 headers or 8 KB in one).
    Case(
        "200 request headers",
        lambda: b"a\n1\n",
        (201, 400, 431),
        headers={f"X-Hostile-{i}": "v" * 100 for i in range(200)},
    ),
    Case("a 60 KB request header", lambda: b"a\n1\n", (201, 400, 431), headers={"X-Hostile": "v" * 60_000}),
]
