"""Small bronze tables get their silver from Arrow: the same table DuckDB's query writes."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from hypothesis import given, settings
from hypothesis import strategies as st

from service.lakehouse import arrow_silver
from service.lakehouse.base import TableRef
from service.lakehouse.delta import DeltaTarget
from service.transform import arrow_types, infer_plan
from tests.support.contexts import sync_context

BRONZE = TableRef("tenant_acme", "bronze", "small_1a2b")
SILVER = TableRef("tenant_acme", "silver", "small_1a2b")


def silver_of(root: Path, source: pa.Table, *, arrow: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[pa.Table, int]:
    """The silver table and reported row count of ``source``, by Arrow or by DuckDB."""
    target = DeltaTarget(root / ("arrow" if arrow else "duckdb"), duckdb_memory_limit="256MB", duckdb_threads=2)
    path = root / "source.parquet"
    pq.write_table(source, path)
    ctx = sync_context(path, bronze=BRONZE, silver=SILVER)
    target.write_bronze(ctx)
    plan = infer_plan(path)
    if arrow:  # the case under test is Arrow's
        bronze = DeltaTable(target.location(BRONZE))
        fields = {f.name: f for f in pa.schema(bronze.schema().to_arrow())}
        assert arrow_silver.applies(plan, fields, source.num_rows)
    with monkeypatch.context() as m:
        m.setattr(arrow_types, "SMALL_ROWS", arrow_types.SMALL_ROWS if arrow else -1)
        result = target.write_silver(ctx, plan)
    return DeltaTable(result.location).to_pyarrow_table(), result.row_count


def assert_same_silver(root: Path, source: pa.Table, monkeypatch: pytest.MonkeyPatch) -> None:
    by_arrow, arrow_rows = silver_of(root, source, arrow=True, monkeypatch=monkeypatch)
    by_duckdb, duckdb_rows = silver_of(root, source, arrow=False, monkeypatch=monkeypatch)
    assert by_arrow.schema == by_duckdb.schema
    assert arrow_rows == duckdb_rows == by_arrow.num_rows

    def key(row: dict) -> list:
        return [(v is None, repr(v)) for v in row.values()]

    assert sorted(by_arrow.to_pylist(), key=key) == sorted(by_duckdb.to_pylist(), key=key)


CSV_LIKE = pa.table(
    {
        "Customer ID": ["1", " 2 ", "3", "3", "NULL", "4", " 4"],
        "Name": ["Ann", "Bob ", "Cy", "Cy", "", "Dee", "Dee"],
        "zip": ["02134", "02134", "10001", "10001", "N/A", "99999", "99999"],
        "Amount (€)": ["1.5", "2", "-0.0", "0.0", "", "1e3", "1000"],
        "Active": ["true", "False", "TRUE", "TRUE", "None", "false", " false "],
        "day": ["2024-01-31", "2024-02-29", "2024-03-01", "2024-03-01", "", "2024-12-31", "2024-12-31"],
        "empty": [None, "", "NULL", None, " ", "N/A", None],
    }
)


def test_the_plan_is_applied_in_arrow_when_it_can_be(tmp_path):
    source = tmp_path / "s.parquet"
    pq.write_table(CSV_LIKE, source)
    plan = infer_plan(source)
    fields = {f.name: f for f in CSV_LIKE.schema} | {"_dataset_id": pa.field("_dataset_id", pa.string())}
    fields["_ingested_at"] = pa.field("_ingested_at", pa.timestamp("us", tz="UTC"))
    assert arrow_silver.applies(plan, fields, CSV_LIKE.num_rows)
    assert not arrow_silver.applies(plan, fields, arrow_types.SMALL_ROWS + 1)


def test_a_table_too_large_in_bytes_goes_to_duckdb(tmp_path, monkeypatch):
    # Few rows, but more bytes than Arrow's path holds: DuckDB writes the same silver.
    monkeypatch.setattr(arrow_types, "SMALL_BYTES", 1024)
    wide_values = pa.table({"note": ["x" * 600, "y" * 600, "x" * 600], "n": ["1", "2", "1"]})
    pq.write_table(wide_values, tmp_path / "probe.parquet")
    assert arrow_types.read_small_parquet(tmp_path / "probe.parquet") is None
    silver, rows = silver_of(tmp_path, wide_values, arrow=True, monkeypatch=monkeypatch)
    assert rows == 2 == silver.num_rows
    assert sorted(silver.column("n").to_pylist()) == [1, 2]


def test_csv_like_values(tmp_path, monkeypatch):
    assert_same_silver(tmp_path, CSV_LIKE, monkeypatch)


def test_rows_equal_after_cleaning_are_one_row(tmp_path, monkeypatch):
    by_arrow, rows = silver_of(tmp_path, CSV_LIKE, arrow=True, monkeypatch=monkeypatch)
    # Row 4 equals row 3 (-0.0 and 0.0 are one value), row 7 equals row 6 once cleaned.
    assert rows == CSV_LIKE.num_rows - 2 == by_arrow.num_rows


def test_an_empty_table(tmp_path, monkeypatch):
    assert_same_silver(tmp_path, CSV_LIKE.slice(0, 0), monkeypatch)


_VALUES = st.one_of(
    st.none(),
    st.sampled_from(["", " ", "NULL", "N/A", "null", "nan"]),
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(["true", "FALSE", " True", "0.0", "-0.0", "-0", "1e3", "2024-02-29", "1999-12-31 "]),
    st.text(max_size=4),
)
_KINDS = [
    st.integers(-(2**63), 2**63 - 1).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.sampled_from(["true", "false", "TRUE", "False"]),
    st.dates().map(str),
    _VALUES,
]


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_same_silver_as_duckdb(data):
    columns = data.draw(st.lists(st.sampled_from(_KINDS), min_size=1, max_size=4))
    rows = data.draw(st.integers(0, 12))
    table = pa.table(
        {
            f"c{i}": pa.array(
                data.draw(
                    st.lists(st.one_of(st.none(), st.sampled_from(["", "NULL"]), kind), min_size=rows, max_size=rows)
                ),
                pa.string(),
            )
            for i, kind in enumerate(columns)
        }
    )
    # Duplicate rows are what the de-duplication is for.
    table = pa.concat_tables([table, table.slice(0, data.draw(st.integers(0, rows)))])
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as monkeypatch:
        assert_same_silver(Path(tmp), table, monkeypatch)
