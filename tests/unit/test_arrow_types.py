"""Arrow's evaluation of the value grammars decides as DuckDB's classification does."""

from __future__ import annotations

import contextlib
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.config import DEFAULT_NULL_TOKENS
from service.transform import arrow_types
from service.transform import sql as q

TOKENS = list(DEFAULT_NULL_TOKENS)


def duckdb_type(values: list[str | None], tokens: list[str]) -> str:
    """The type DuckDB's classification expression gives a column of ``values``."""
    expr = q.classify_expr("v", sorted(q.TYPE_CODES), tokens, bool(q.tokens_fitting(tokens, q.TYPE_CODES)))
    column = pa.table({"v": pa.array(values, pa.string())})  # noqa: F841 - read by DuckDB's scan
    with contextlib.closing(q.connect(threads=1)) as con:
        con.register("column_values", column)
        lo, hi = con.execute(f"SELECT min(k), max(k) FROM (SELECT {expr} AS k FROM column_values)").fetchone()
    return q.type_from_codes(lo, hi)


def agree(values: list[str | None], tokens: list[str] = TOKENS) -> None:
    found = arrow_types.column_type(pa.array(values, pa.string()), tokens)
    if found is not None:
        assert found == duckdb_type(values, tokens), values


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", " 2 ", "-0", None, "NULL"], "integer"),
        (["9223372036854775807", "-9223372036854775808"], "integer"),
        (["9223372036854775808", "1"], "double"),
        (["1.5", "2", "1e10", "-0.0"], "double"),
        (["1e999"], "string"),
        (["01"], "string"),
        (["TRUE", "false", " True "], "boolean"),
        (["yes", "no"], "string"),
        (["2024-02-29", "0001-01-01", "9999-12-31"], "date"),
        (["2024-02-30"], "string"),
        (["2023-02-29"], "string"),
        (["0000-01-01"], "string"),
        (["2024-02-29T01:02:03Z", "2024-01-01 10:00:00.123456-15:30", "2024-01-01T00:00:00+23:59"], "timestamp"),
        (["2024-02-30T00:00:00"], "string"),
        (["0000-01-01T00:00:00"], "string"),
        (["2024-01-01", "2024-01-01T00:00:00"], "string"),
        ([None, "", " ", "N/A"], "string"),
        (["1", "a"], "string"),
        (["\u00a01"], "string"),
    ],
)
def test_known_values(values, expected):
    assert arrow_types.column_type(pa.array(values, pa.string()), TOKENS) == expected
    assert duckdb_type(values, TOKENS) == expected


def test_small_files_are_read_whole_and_large_ones_not(tmp_path, monkeypatch):
    path = tmp_path / "f.parquet"
    # Dictionary-encoded: the file is small whatever its values decode to.
    pq.write_table(pa.table({"v": ["x" * 10_000] * 2_000}), path, use_dictionary=True)
    assert os.path.getsize(path) < 100_000
    table = arrow_types.read_small_parquet(path)
    assert table is not None and table.num_rows == 2_000
    monkeypatch.setattr(arrow_types, "SMALL_BYTES", 1_000_000)  # 20 MB decoded: too large
    assert arrow_types.read_small_parquet(path) is None
    monkeypatch.setattr(arrow_types, "SMALL_ROWS", 1_999)
    monkeypatch.setattr(arrow_types, "SMALL_BYTES", 1 << 30)
    assert arrow_types.read_small_parquet(path) is None


def test_chunked_columns_are_read_whole():
    chunked = pa.chunked_array([pa.array(["1", "2"]), pa.array(["x"])])
    assert arrow_types.column_type(chunked, TOKENS) == "string"


def test_tokens_that_fit_a_grammar():
    # "0" as a null token: it never makes the column an integer by itself.
    agree(["0", "a"], ["0"])
    agree(["0", "1"], ["0"])
    agree(["0", "true"], ["0"])


_DIGITS = st.text("0123456789", min_size=1, max_size=21)
_KINDS = [
    _DIGITS,
    st.builds(lambda a, b: f"{a}.{b}", _DIGITS, _DIGITS),
    st.builds(lambda a, e: f"{a}e{e}", _DIGITS, st.integers(-400, 400)),
    st.integers(-(2**64), 2**64).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["true", "FALSE", "True", "yes", "t", "1", "0", "-0", "", " ", "NULL", "N/A", "nan", "inf"]),
    st.builds(lambda y, m, d: f"{y:04d}-{m:02d}-{d:02d}", st.integers(0, 9999), st.integers(0, 13), st.integers(0, 32)),
    st.builds(
        lambda y, m, d, h, s, frac, tz: f"{y:04d}-{m:02d}-{d:02d}{s}{h:02d}:30:59{frac}{tz}",
        st.integers(0, 9999),
        st.integers(1, 12),
        st.integers(1, 31),
        st.integers(0, 24),
        st.sampled_from(["T", " "]),
        st.sampled_from(["", ".1", ".123456", ".1234567"]),
        st.sampled_from(["", "Z", "+01:00", "-15:30", "+23:59", "+24:00"]),
    ),
    st.text(max_size=6),
]


def _padded(values: st.SearchStrategy[str]) -> st.SearchStrategy[str | None]:
    pad = st.sampled_from(["", " ", "  "])
    return st.one_of(st.none(), st.builds(lambda a, v, b: a + v + b, pad, values, pad))


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_same_type_as_duckdb(data):
    # Mostly columns of one kind of value (the ones a type is decided on), sometimes a mix.
    kinds = data.draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=2))
    values = data.draw(st.lists(_padded(st.one_of(*kinds)), min_size=1, max_size=8))
    agree(values)
