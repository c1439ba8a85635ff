import dataclasses
import datetime as dt
import errno
import os
import socket

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError, DeltaError

from service.config import DEFAULT_NULL_TOKENS
from service.lakehouse import duckdb_sql
from service.lakehouse.base import (
    PermanentTargetError,
    TableRef,
    TransientTargetError,
)
from service.lakehouse.delta import DeltaTarget
from service.lakehouse.delta import bronze as delta_bronze
from service.lakehouse.delta import commit as delta_commit
from service.lakehouse.delta import target as delta_target
from service.lakehouse.registry import get_target
from service.transform import SampledPlanRejected, SilverColumn, SilverPlan, arrow_types, infer_plan
from service.transform.inference import SAMPLE_ROWS
from tests.support.contexts import INGESTED, sync_context

UTC = dt.UTC
BRONZE = TableRef("tenant_acme", "bronze", "sales_1a2b")
SILVER = TableRef("tenant_acme", "silver", "sales_1a2b")
TOKENS = list(DEFAULT_NULL_TOKENS)
TABLES = sync_context(None, bronze=BRONZE, silver=SILVER)


@pytest.fixture
def target(tmp_path):
    return DeltaTarget(tmp_path / "lake", duckdb_memory_limit="256MB", duckdb_threads=2)


def write_parquet(path, table: pa.Table):
    pq.write_table(table, path)
    return path


def source_for(path, dataset_id="ds-1", source_file="sales.csv"):
    return sync_context(path, bronze=BRONZE, silver=SILVER, dataset_id=dataset_id, source_file=source_file)


def read(path) -> pa.Table:
    return DeltaTable(path).to_pyarrow_table()


def sorted_rows(table: pa.Table, key: str) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: (r[key] is None, r[key]))


def data_files(path) -> list[str]:
    return sorted(f for f in os.listdir(path) if f.endswith(".parquet"))


CSV_LIKE = pa.table(
    {
        "Customer ID": pa.array(["1", " 2 ", "3", "3", "NULL", "4"]),
        "Name": pa.array(["Ann", "Bob ", "Cy", "Cy", "", "Dee"]),
        "zip": pa.array(["02134", "02134", "10001", "10001", "N/A", "99999"]),
        "Amount (€)": pa.array(["1.5", "2", "-3.25", "-3.25", "", "1e3"]),
        "Active": pa.array(["true", "False", "TRUE", "TRUE", "None", "false"]),
        "day": pa.array(["2024-01-31", "2024-02-29", "2024-03-01", "2024-03-01", "", "2024-12-31"]),
        "at": pa.array(
            [
                "2024-01-01T10:00:00Z",
                "2024-01-01 12:30:00+02:30",
                "2024-01-01 10:00:00",
                "2024-01-01 10:00:00",
                "",
                "2024-06-30T23:59:59.5-08:00",
            ]
        ),
    }
)


# ---------------------------------------------------------------------- bronze


def test_location_is_catalog_schema_table_without_touching_disk(tmp_path, target):
    loc = target.location(BRONZE)
    assert loc == str(tmp_path / "lake" / "tenant_acme" / "bronze" / "sales_1a2b")
    assert not (tmp_path / "lake").exists()


@pytest.mark.parametrize("bad", ["..", "a/b", ""])
def test_location_rejects_path_tricks(target, bad):
    with pytest.raises(PermanentTargetError):
        target.location(TableRef("c", "bronze", bad))


def test_bronze_keeps_exact_values_and_adds_metadata(tmp_path, target):
    src = write_parquet(
        tmp_path / "in.parquet",
        pa.table(
            {
                "Customer ID": pa.array([" x ", "02134", "", None]),
                "n": pa.array([1, None, -5, 2**62], pa.int64()),
                "f": pa.array([1.5, None, 0.1, -2.0], pa.float64()),
                "b": pa.array([True, False, None, True]),
                "d": pa.array([dt.date(2024, 2, 29), None, dt.date(1, 1, 1), dt.date(9999, 12, 31)], pa.date32()),
                "t": pa.array([INGESTED, None, INGESTED, INGESTED], pa.timestamp("us", tz="UTC")),
            }
        ),
    )
    result = target.write_bronze(source_for(src))
    assert result.location == target.location(BRONZE)
    assert result.row_count == 4

    table = read(result.location)
    source = pq.read_table(src)
    assert table.column_names == source.column_names + ["_dataset_id", "_ingested_at", "_source_file"]
    for name in source.column_names:
        assert table.schema.field(name).type == source.schema.field(name).type
    assert table.schema.field("_dataset_id").type == pa.string()
    assert table.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")
    assert table.schema.field("_source_file").type == pa.string()

    rows = sorted_rows(table, "n")
    expected = sorted_rows(source, "n")
    for row, want in zip(rows, expected):
        assert {k: row[k] for k in want} == want
        assert row["_dataset_id"] == "ds-1"
        assert row["_ingested_at"] == INGESTED
        assert row["_source_file"] == "sales.csv"
    assert target.count_rows(BRONZE) == 4


@pytest.mark.parametrize(
    "ingested_at",
    [
        dt.datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        dt.datetime(2024, 5, 6, 7, 8, 9, 123456),  # naive: taken as UTC
    ],
)
def test_bronze_ingested_at_is_stored_in_utc(tmp_path, target, ingested_at):
    src = write_parquet(tmp_path / "in.parquet", pa.table({"a": pa.array(["x"])}))
    source = sync_context(src, bronze=BRONZE, source_file="f.csv", ingested_at=ingested_at)
    target.write_bronze(source)
    assert read(target.location(BRONZE)).column("_ingested_at").to_pylist() == [INGESTED]


def test_bronze_twice_replaces_the_table(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)
    first = target.write_bronze(source_for(src))
    second = target.write_bronze(source_for(src))
    assert first.row_count == second.row_count == CSV_LIKE.num_rows

    table = DeltaTable(second.location)
    assert table.version() == 1
    assert table.to_pyarrow_table().num_rows == CSV_LIKE.num_rows
    assert target.count_rows(BRONZE) == CSV_LIKE.num_rows
    # The replaced version's data file is gone; only the current one is left.
    assert data_files(second.location) == sorted(
        pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    )
    assert len(data_files(second.location)) == 1
    assert not [f for f in os.listdir(second.location) if f.startswith(".staging")]


def test_bronze_rerun_with_another_schema(tmp_path, target):
    target.write_bronze(source_for(write_parquet(tmp_path / "a.parquet", CSV_LIKE)))
    other = pa.table({"only": pa.array(["z"])})
    result = target.write_bronze(source_for(write_parquet(tmp_path / "b.parquet", other), dataset_id="ds-2"))
    table = read(result.location)
    assert table.column_names == ["only", "_dataset_id", "_ingested_at", "_source_file"]
    assert table.column("_dataset_id").to_pylist() == ["ds-2"]


def test_bronze_reuses_a_compatible_file_as_it_is(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)
    result = target.write_bronze(source_for(src))
    (data_file,) = data_files(result.location)
    with open(src, "rb") as a, open(os.path.join(result.location, data_file), "rb") as b:
        assert a.read() == b.read()
    # On one filesystem it is a hard link, not a copy; the table outlives the local file.
    assert os.stat(src).st_ino == os.stat(os.path.join(result.location, data_file)).st_ino
    os.remove(src)
    assert read(result.location).num_rows == CSV_LIKE.num_rows


def test_bronze_copies_the_file_when_it_cannot_be_linked(tmp_path, target, monkeypatch):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)

    def cross_device(*_args):
        raise OSError(errno.EXDEV, os.strerror(errno.EXDEV))

    monkeypatch.setattr(delta_bronze.os, "link", cross_device)
    result = target.write_bronze(source_for(src))
    (data_file,) = data_files(result.location)
    assert os.stat(src).st_ino != os.stat(os.path.join(result.location, data_file)).st_ino
    assert read(result.location).num_rows == CSV_LIKE.num_rows


def test_bronze_rewrites_legacy_int96_timestamps(tmp_path, target):
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 678901)
    src = tmp_path / "int96.parquet"
    pq.write_table(pa.table({"at": pa.array([naive], pa.timestamp("us"))}), src, use_deprecated_int96_timestamps=True)
    target.write_bronze(source_for(src))
    table = read(target.location(BRONZE))
    assert table.schema.field("at").type == pa.timestamp("us")
    assert table.column("at").to_pylist() == [naive]


def test_bronze_converts_types_delta_cannot_store_without_losing_values(tmp_path, target):
    naive = dt.datetime(2024, 1, 2, 3, 4, 5, 678901)
    src = write_parquet(
        tmp_path / "in.parquet",
        pa.table(
            {
                "u8": pa.array([255, 0], pa.uint8()),
                "u64": pa.array([2**64 - 1, 1], pa.uint64()),
                "ns": pa.array([naive, naive], pa.timestamp("ns", tz="UTC")),
                "naive": pa.array([naive, None], pa.timestamp("us")),
                "cat": pa.array(["a", "b"]).dictionary_encode(),
            }
        ),
    )
    target.write_bronze(source_for(src))
    table = read(target.location(BRONZE))
    assert table.schema.field("u8").type == pa.int16()
    assert table.column("u8").to_pylist() == [255, 0]
    assert [int(v) for v in table.column("u64").to_pylist()] == [2**64 - 1, 1]
    assert table.schema.field("ns").type == pa.timestamp("us", tz="UTC")
    assert table.column("ns").to_pylist() == [naive.replace(tzinfo=UTC)] * 2
    assert table.schema.field("naive").type == pa.timestamp("us")
    assert table.column("naive").to_pylist() == [naive, None]
    assert table.column("cat").to_pylist() == ["a", "b"]

    plan = infer_plan(tmp_path / "in.parquet", null_tokens=TOKENS)
    target.write_silver(source_for(src), plan)
    silver = read(target.location(SILVER))
    assert silver.schema.field("naive").type == pa.timestamp("us")
    assert sorted_rows(silver.select(["u8", "naive", "cat"]), "u8") == [
        {"u8": 0, "naive": None, "cat": "b"},
        {"u8": 255, "naive": naive, "cat": "a"},
    ]


def test_bronze_renames_columns_delta_would_refuse_and_silver_follows(tmp_path, target):
    src = write_parquet(
        tmp_path / "in.parquet",
        pa.table(
            {
                "ID": pa.array(["1", "2"]),
                "id": pa.array(["x", "y"]),
                "_dataset_id": pa.array(["mine", "mine"]),
            }
        ),
    )
    target.write_bronze(source_for(src))
    table = read(target.location(BRONZE))
    assert table.column_names == ["ID", "id_2", "_dataset_id_2", "_dataset_id", "_ingested_at", "_source_file"]
    assert table.column("id_2").to_pylist() == ["x", "y"]
    assert table.column("_dataset_id_2").to_pylist() == ["mine", "mine"]
    assert table.column("_dataset_id").to_pylist() == ["ds-1", "ds-1"]

    plan = infer_plan(src, null_tokens=TOKENS)
    target.write_silver(source_for(src), plan)
    silver = read(target.location(SILVER))
    assert sorted_rows(silver.select(["id", "id_2", "dataset_id"]), "id") == [
        {"id": 1, "id_2": "x", "dataset_id": "mine"},
        {"id": 2, "id_2": "y", "dataset_id": "mine"},
    ]


def test_bronze_missing_or_invalid_source_is_permanent(tmp_path, target):
    with pytest.raises(PermanentTargetError, match="does not exist"):
        target.write_bronze(source_for(tmp_path / "missing.parquet"))
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(PermanentTargetError):
        target.write_bronze(source_for(bad))


# ---------------------------------------------------------------------- silver


@pytest.fixture(params=["arrow", "per column", "listed", "by row hash"])
def both_silver_shapes(request, monkeypatch):
    """The silver rules hold in every way silver is written: in Arrow (small tables whose
    plan it can apply), in both shapes of the SQL (an expression per column, and for very
    wide plans lists of values through one expression per rule), and de-duplicated by row
    hash (wide rows, and rows whose plain DISTINCT would outgrow memory_limit)."""
    if request.param != "arrow":
        monkeypatch.setattr(arrow_types, "SMALL_ROWS", -1)
    if request.param == "listed":
        monkeypatch.setattr(duckdb_sql, "LISTED_COLUMNS", 0)
    if request.param == "by row hash":
        monkeypatch.setattr(duckdb_sql, "memory_limit_bytes", lambda con: 0)


def write_both(tmp_path, target, table=CSV_LIKE, tokens=TOKENS):
    src = write_parquet(tmp_path / "in.parquet", table)
    target.write_bronze(source_for(src))
    plan = infer_plan(src, null_tokens=tokens)
    return plan, target.write_silver(source_for(src), plan)


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_types_names_trim_nulls_and_dedup(tmp_path, target):
    plan, result = write_both(tmp_path, target)
    assert [(c.name, c.type) for c in plan.columns] == [
        ("customer_id", "integer"),
        ("name", "string"),
        ("zip", "string"),
        ("amount", "double"),
        ("active", "boolean"),
        ("day", "date"),
        ("at", "timestamp"),
    ]
    # Rows 3 and 4 are identical.
    assert result.row_count == 5
    assert (target.count_rows(BRONZE) - result.row_count) == 1
    assert result.location == target.location(SILVER)

    table = read(result.location)
    assert table.schema == pa.schema(
        [
            ("customer_id", pa.int64()),
            ("name", pa.string()),
            ("zip", pa.string()),
            ("amount", pa.float64()),
            ("active", pa.bool_()),
            ("day", pa.date32()),
            ("at", pa.timestamp("us", tz="UTC")),
            ("_dataset_id", pa.string()),
            ("_ingested_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    rows = sorted_rows(table, "customer_id")
    assert [r["customer_id"] for r in rows] == [1, 2, 3, 4, None]
    assert [r["name"] for r in rows] == ["Ann", "Bob", "Cy", "Dee", None]
    assert [r["zip"] for r in rows] == ["02134", "02134", "10001", "99999", None]
    assert [r["amount"] for r in rows] == [1.5, 2.0, -3.25, 1000.0, None]
    assert [r["active"] for r in rows] == [True, False, True, False, None]
    assert [r["day"] for r in rows] == [
        dt.date(2024, 1, 31),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
        dt.date(2024, 12, 31),
        None,
    ]
    assert [r["at"] for r in rows] == [
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),  # 12:30 at +02:30
        dt.datetime(2024, 1, 1, 10, tzinfo=UTC),  # naive taken as UTC
        dt.datetime(2024, 7, 1, 7, 59, 59, 500000, tzinfo=UTC),
        None,
    ]
    assert {r["_dataset_id"] for r in rows} == {"ds-1"}
    assert {r["_ingested_at"] for r in rows} == {INGESTED}
    assert target.count_rows(SILVER) == 5


def test_small_silver_is_written_in_arrow_from_the_file_bronze_holds(tmp_path, target, monkeypatch):
    """A small all-text dataset: silver's rows come from the file silver is given (bronze's
    data file as it is) with bronze's metadata values, and no DuckDB query runs."""
    table = CSV_LIKE.drop_columns(["at"])
    src = write_parquet(tmp_path / "in.parquet", table)
    ctx = source_for(src)
    target.write_bronze(ctx)
    plan = infer_plan(src, null_tokens=TOKENS)

    def no_duckdb(*args, **kwargs):
        raise AssertionError("the small silver ran a DuckDB query")

    monkeypatch.setattr(delta_target.q, "connect", no_duckdb)
    result = target.write_silver(ctx, plan)
    silver, bronze = read(result.location), read(target.location(BRONZE))
    assert result.row_count == silver.num_rows == 5
    assert silver.column_names[-2:] == ["_dataset_id", "_ingested_at"]
    assert (
        set(zip(silver.column("_dataset_id").to_pylist(), silver.column("_ingested_at").to_pylist()))
        == set(zip(bronze.column("_dataset_id").to_pylist(), bronze.column("_ingested_at").to_pylist()))
        == {("ds-1", INGESTED)}
    )
    assert sorted(silver.column("customer_id").to_pylist(), key=lambda v: (v is None, v)) == [1, 2, 3, 4, None]


def test_small_rows_read_by_the_caller_are_not_read_again(tmp_path, target, monkeypatch):
    """The sync reads a small dataset's file once: the plan and the silver write take the rows
    it hands them (``small_rows``, ``ctx.source_rows``) and give what they give from the file."""
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE.drop_columns(["at"]))
    ctx = source_for(src)
    target.write_bronze(ctx)
    expected_plan = infer_plan(src, null_tokens=TOKENS)
    expected = sorted_rows(read(target.write_silver(ctx, expected_plan).location), "customer_id")
    rows = arrow_types.read_small_parquet(src)

    def no_read(path):
        raise AssertionError(f"{path} was read again")

    monkeypatch.setattr(arrow_types, "read_small_parquet", no_read)
    plan = infer_plan(src, null_tokens=TOKENS, small_rows=rows)
    assert plan == expected_plan
    result = target.write_silver(dataclasses.replace(ctx, source_rows=rows), plan)
    assert sorted_rows(read(result.location), "customer_id") == expected


def test_silver_needs_the_bronze_table_even_when_the_file_is_there(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE.drop_columns(["at"]))
    with pytest.raises(PermanentTargetError, match="does not exist"):
        target.write_silver(source_for(src), infer_plan(src, null_tokens=TOKENS))


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_dedups_rows_that_become_equal_after_cleaning(tmp_path, target):
    table = pa.table(
        {
            "city": pa.array(["Paris", " Paris ", "Lyon", "NULL", ""]),
            "n": pa.array(["1", "1 ", "2", "", "N/A"]),
        }
    )
    _, result = write_both(tmp_path, target, table)
    assert result.row_count == 3
    assert (target.count_rows(BRONZE) - result.row_count) == 2
    assert sorted_rows(read(result.location).select(["city", "n"]), "n") == [
        {"city": "Paris", "n": 1},
        {"city": "Lyon", "n": 2},
        {"city": None, "n": None},
    ]


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_trims_spaces_only(tmp_path, target):
    nbsp = "\u00a0"
    table = pa.table(
        {
            "s": pa.array([" a ", f"{nbsp}b", f" c{nbsp}", "\td ", f"{nbsp} e "]),
            "n": pa.array(["1", " 2", "3 ", "4", "5"]),
        }
    )
    plan, result = write_both(tmp_path, target, table)
    assert [c.type for c in plan.columns] == ["string", "integer"]
    assert sorted_rows(read(result.location).select(["s", "n"]), "n") == [
        {"s": "a", "n": 1},
        {"s": f"{nbsp}b", "n": 2},
        {"s": f"c{nbsp}", "n": 3},
        {"s": "\td", "n": 4},
        {"s": f"{nbsp} e", "n": 5},
    ]


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_keeps_non_string_sources_as_they_are(tmp_path, target):
    table = pa.table(
        {
            "n": pa.array([1, 2, 2], pa.int64()),
            "f": pa.array([0.5, None, None], pa.float64()),
            "s": pa.array([" a ", "NULL", "NULL"]),
            "t": pa.array([INGESTED, None, None], pa.timestamp("us", tz="UTC")),
        }
    )
    plan, result = write_both(tmp_path, target, table)
    assert [c.type for c in plan.columns] == ["source", "source", "string", "source"]
    assert result.row_count == 2
    silver = read(result.location)
    assert silver.schema.field("n").type == pa.int64()
    assert silver.schema.field("t").type == pa.timestamp("us", tz="UTC")
    assert sorted_rows(silver.select(["n", "f", "s", "t"]), "n") == [
        {"n": 1, "f": 0.5, "s": "a", "t": INGESTED},
        {"n": 2, "f": None, "s": None, "t": None},
    ]


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_json_text_is_not_trimmed(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", pa.table({"j": pa.array([' {"a": 1} ', "null"])}))
    target.write_bronze(source_for(src))
    plan = SilverPlan(columns=[SilverColumn("j", "j", "string", "json")], null_tokens=TOKENS)
    target.write_silver(source_for(src), plan)
    assert sorted(read(target.location(SILVER)).column("j").to_pylist()) == [' {"a": 1} ', "null"]


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_null_token_that_casts_is_still_null(tmp_path, target):
    table = pa.table({"n": pa.array(["5", "-1", " -1 ", "7"])})
    plan, result = write_both(tmp_path, target, table, tokens=["-1"])
    assert plan.columns[0].type == "integer"
    assert sorted(read(result.location).column("n").to_pylist(), key=lambda v: (v is None, v)) == [5, 7, None]


@pytest.mark.usefixtures("both_silver_shapes")
@pytest.mark.parametrize(
    "values, tokens, expected",
    [
        (["5", "-1", " -1 ", "7"], ["-1"], [5, 7, None]),  # a token that fits the grammar
        (["1.5", "nan", " nan ", "NaN", "2"], ["nan", "NaN"], [1.5, 2.0, None]),  # one that only casts
    ],
)
def test_a_sampled_plan_nulls_tokens_that_fit_or_cast(tmp_path, target, values, tokens, expected):
    plan, _ = write_both(tmp_path, target, pa.table({"n": pa.array(values)}), tokens=tokens)
    sampled = SilverPlan(plan.columns, plan.null_tokens, verified=False)
    result = target.write_silver(source_for(tmp_path / "in.parquet"), sampled)
    got = read(result.location).column("n").to_pylist()
    assert sorted(got, key=lambda v: (v is None, v)) == expected


def test_silver_twice_gives_the_same_table(tmp_path, target):
    plan, first = write_both(tmp_path, target)
    second = target.write_silver(source_for(tmp_path / "in.parquet"), plan)
    assert (second.row_count, (target.count_rows(BRONZE) - second.row_count)) == (
        first.row_count,
        (target.count_rows(BRONZE) - first.row_count),
    )
    table = DeltaTable(second.location)
    assert table.version() == 1
    assert table.to_pyarrow_table().num_rows == first.row_count
    assert data_files(second.location) == sorted(
        pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()
    )


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_hinted_columns_beside_inferred_ones(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", pa.table({"n": ["1", " 2 ", "x"], "s": [" a", "NULL", "b"]}))
    target.write_bronze(source_for(src))
    plan = SilverPlan(
        [SilverColumn("n", "n", "integer", "string", hinted=True), SilverColumn("s", "s", "string", "string")], TOKENS
    )
    silver = read(target.write_silver(source_for(src), plan).location)
    assert silver.column_names == ["n", "s", "_rescued_data", "_dataset_id", "_ingested_at"]
    assert sorted_rows(silver.select(["n", "s", "_rescued_data"]), "n") == [
        {"n": 1, "s": "a", "_rescued_data": None},
        {"n": 2, "s": None, "_rescued_data": None},
        {"n": None, "s": "b", "_rescued_data": '{"n":"x"}'},
    ]


def test_hinted_decimals_that_would_be_rounded_are_rescued(tmp_path, target):
    values = ["1.5", " 2.10 ", "1.239", "12345678.99", "123456789.1", "1.2300", "abc", "NULL"]
    src = write_parquet(tmp_path / "in.parquet", pa.table({"k": [str(i) for i in range(len(values))], "d": values}))
    target.write_bronze(source_for(src))
    plan = SilverPlan(
        [SilverColumn("k", "k", "integer", "string"), SilverColumn("d", "d", "decimal(10,2)", "string", hinted=True)],
        TOKENS,
    )
    result = target.write_silver(source_for(src), plan)
    silver = read(result.location)
    rows = {r["k"]: (r["d"], r["_rescued_data"]) for r in silver.to_pylist()}
    assert {k: None if d is None else str(d) for k, (d, _) in rows.items()} == {
        0: "1.50",
        1: "2.10",
        2: None,
        3: "12345678.99",
        4: None,
        5: "1.23",
        6: None,
        7: None,
    }
    assert {k: r for k, (_, r) in rows.items() if r} == {
        2: '{"d":"1.239"}',
        4: '{"d":"123456789.1"}',
        6: '{"d":"abc"}',
    }
    assert result.values_rescued == 3


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_of_an_empty_file(tmp_path, target):
    empty = pa.table({"a": pa.array([], pa.string())})
    _, result = write_both(tmp_path, target, empty)
    assert (result.row_count, (target.count_rows(BRONZE) - result.row_count)) == (0, 0)
    table = read(result.location)
    assert table.num_rows == 0
    assert table.column_names == ["a", "_dataset_id", "_ingested_at"]


@pytest.mark.usefixtures("both_silver_shapes")
def test_silver_with_a_plan_that_does_not_fit_is_permanent(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", pa.table({"v": pa.array(["1", "abc"])}))
    target.write_bronze(source_for(src))
    wrong_type = SilverPlan([SilverColumn("v", "v", "integer", "string")], TOKENS)
    with pytest.raises(PermanentTargetError, match="abc"):
        target.write_silver(source_for(src), wrong_type)
    for plan in (
        SilverPlan([SilverColumn("nope", "v", "string", "string")], TOKENS),
        SilverPlan([SilverColumn("v", "v", "uuid", "string")], TOKENS),
        SilverPlan([SilverColumn("v", "a", "string", "string"), SilverColumn("v", "A", "string", "string")], TOKENS),
        SilverPlan([SilverColumn("v", "_dataset_id", "string", "string")], TOKENS),
        SilverPlan([], TOKENS),
    ):
        with pytest.raises(PermanentTargetError):
            target.write_silver(source_for(src), plan)
    assert not os.path.exists(os.path.join(target.location(SILVER), "_delta_log"))


@pytest.mark.usefixtures("both_silver_shapes")
def test_a_sampled_plan_gives_the_same_silver_as_a_verified_one(tmp_path, target):
    plan, verified = write_both(tmp_path, target)
    expected = sorted_rows(read(verified.location), "customer_id")
    sampled = SilverPlan(plan.columns, plan.null_tokens, verified=False)
    result = target.write_silver(source_for(tmp_path / "in.parquet"), sampled)
    assert (result.row_count, (target.count_rows(BRONZE) - result.row_count)) == (
        verified.row_count,
        (target.count_rows(BRONZE) - verified.row_count),
    )
    assert sorted_rows(read(result.location), "customer_id") == expected


@pytest.mark.usefixtures("both_silver_shapes")
def test_a_sampled_plan_that_a_late_value_disproves_is_rejected(tmp_path, target):
    n = SAMPLE_ROWS * 2
    table = pa.table({"n": [str(i) for i in range(n)] + ["2.5"], "s": ["a"] * (n + 1)})
    src = write_parquet(tmp_path / "in.parquet", table)
    target.write_bronze(source_for(src))
    target.write_silver(source_for(src), infer_plan(src, null_tokens=TOKENS))
    before = read(target.location(SILVER))

    sampled = infer_plan(src, null_tokens=TOKENS, sampled=True)
    assert not sampled.verified
    assert [c.type for c in sampled.columns] == ["integer", "string"]
    with pytest.raises(SampledPlanRejected, match="2.5"):
        target.write_silver(source_for(src), sampled)
    # The table written before is untouched and no staged file is left.
    assert read(target.location(SILVER)) == before
    assert [c.type for c in infer_plan(src, null_tokens=TOKENS).columns] == ["double", "string"]


def test_silver_without_bronze_is_permanent(target):
    plan = SilverPlan([SilverColumn("v", "v", "string", "string")], TOKENS)
    with pytest.raises(PermanentTargetError, match="does not exist"):
        target.write_silver(TABLES, plan)


# ---------------------------------------------------------------------- admin


def test_count_drop_and_ping(tmp_path, target):
    target.ping()
    assert (tmp_path / "lake").is_dir()
    with pytest.raises(PermanentTargetError):
        target.count_rows(BRONZE)
    target.write_bronze(source_for(write_parquet(tmp_path / "in.parquet", CSV_LIKE)))
    assert target.count_rows(BRONZE) == CSV_LIKE.num_rows
    target.drop_tables(TABLES, [BRONZE])
    assert not os.path.exists(target.location(BRONZE))
    target.drop_tables(TABLES, [BRONZE])  # absent: no error


def test_from_config_and_registry(tmp_path):
    config = {
        "LAKEHOUSE_DIR": str(tmp_path / "lh"),
        "DUCKDB_MEMORY_LIMIT": "300MB",
        "DUCKDB_THREADS": 3,
        "DATA_DIR": str(tmp_path),
    }
    target = DeltaTarget.from_config(config)
    assert target.name == "delta"
    assert target.lakehouse_dir == str(tmp_path / "lh")
    assert (target.duckdb_memory_limit, target.duckdb_threads) == ("300MB", 3)
    assert isinstance(get_target(config), DeltaTarget)


# ---------------------------------------------------------------------- error mapping


def test_lakehouse_under_a_regular_file(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    target = DeltaTarget(blocker / "lake")
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)
    with pytest.raises(PermanentTargetError) as info:
        target.write_bronze(source_for(src))
    assert isinstance(info.value.__cause__, OSError)
    assert info.value.__cause__.errno == errno.ENOTDIR
    with pytest.raises(PermanentTargetError):
        target.ping()


@pytest.mark.parametrize(
    "code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EAGAIN, errno.EDQUOT]
)
def test_storage_errors_while_writing_are_transient(tmp_path, target, monkeypatch, code):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)

    def failing_copy(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(delta_bronze.shutil, "copyfile", failing_copy)
    monkeypatch.setattr(delta_bronze.os, "link", failing_copy)
    with pytest.raises(TransientTargetError) as info:
        target.write_bronze(source_for(src))
    assert info.value.__cause__.errno == code
    table_dir = target.location(BRONZE)
    assert not data_files(table_dir) and not os.listdir(table_dir)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (CommitFailedError("Transaction failed: version already exists: 1"), TransientTargetError),
        (
            DeltaError("Generic LocalFileSystem error: Unable to open file: No space left on device (os error 28)"),
            TransientTargetError,
        ),
        (
            DeltaError("Could not create local directory\nError: Os { code: 30, kind: ReadOnlyFilesystem }"),
            TransientTargetError,
        ),
        (
            DeltaError("Could not create local directory\nError: Os { code: 13, kind: PermissionDenied }"),
            TransientTargetError,
        ),
        (DeltaError("Generic error: Failed to canonicalize path: Not a directory (os error 20)"), PermanentTargetError),
        (DeltaError("Schema error: Duplicate field name"), PermanentTargetError),
    ],
)
def test_delta_commit_errors_are_mapped(tmp_path, target, monkeypatch, error, expected):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)

    def failing_commit(*args, **kwargs):
        raise error

    monkeypatch.setattr(delta_commit, "create_table_with_add_actions", failing_commit)
    with pytest.raises(expected) as info:
        target.write_bronze(source_for(src))
    assert info.value.__cause__ is error
    # The data file that was never committed does not stay behind.
    assert data_files(target.location(BRONZE)) == []


def test_engine_errors_in_silver_are_mapped(tmp_path, target, monkeypatch):
    plan, _ = write_both(tmp_path, target)
    real_connect = delta_target.q.connect

    class FullDisk:
        def __init__(self, con):
            self.con = con

        def execute(self, sql, *args):
            if sql.startswith("COPY"):
                raise duckdb.IOException('IO Error: Could not write file "x": No space left on device')
            return self.con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.con, name)

    monkeypatch.setattr(delta_target.q, "connect", lambda *a, **k: FullDisk(real_connect(*a, **k)))
    with pytest.raises(TransientTargetError, match="No space left"):
        target.write_silver(TABLES, plan)

    monkeypatch.setattr(delta_target.q, "connect", real_connect)
    # The earlier silver version is untouched by the failed attempt.
    assert target.count_rows(SILVER) == 5


def test_leftovers_of_a_killed_write_are_cleaned_up(tmp_path, target):
    src = write_parquet(tmp_path / "in.parquet", CSV_LIKE)
    table_dir = target.location(BRONZE)
    old_staging = os.path.join(table_dir, ".staging-dead")
    fresh_staging = os.path.join(table_dir, ".staging-busy")
    old_spill = os.path.join(target.temp_dir, "duckdb-dead")
    for d in (old_staging, fresh_staging, old_spill):
        os.makedirs(d)
    long_ago = dt.datetime.now().timestamp() - 7 * 3600
    os.utime(old_staging, (long_ago, long_ago))
    os.utime(old_spill, (long_ago, long_ago))

    target.write_bronze(source_for(src))
    target.write_silver(source_for(src), infer_plan(src, null_tokens=TOKENS))
    assert not os.path.exists(old_staging)
    assert os.path.exists(fresh_staging)  # may belong to a write still running
    assert not os.path.exists(old_spill)
    # What is left is this process's own spill directory, kept for its next step.
    own = f"duckdb-{socket.gethostname()}-{os.getpid()}-"
    assert [name for name in os.listdir(target.temp_dir) if not name.startswith(own)] == []


def test_rows_whose_distinct_would_outgrow_memory_are_deduplicated_by_hash():
    plan = SilverPlan(
        columns=[
            SilverColumn(source_name="id", name="id", type="integer", source_type="string"),
            SilverColumn(source_name="day", name="day", type="date", source_type="string"),
            SilverColumn(source_name="name", name="name", type="string", source_type="string"),
        ],
        null_tokens=[],
        verified=True,
    )
    # 8 + 4 + 16 bytes of slots and 24 of overhead a row.
    assert duckdb_sql.hash_table_bytes(plan, 1000) == 52_000
    con = duckdb.connect(config={"memory_limit": "1MiB"})
    assert duckdb_sql.memory_limit_bytes(con) == 1 << 20
    assert not duckdb_sql.dedup_by_hash(con, plan, 20_000)  # 1.04 MB
    assert duckdb_sql.dedup_by_hash(con, plan, 30_000)  # 1.56 MB
    wide = SilverPlan(columns=plan.columns * (duckdb_sql.WIDE_TABLE_COLUMNS // 3 + 1), null_tokens=[], verified=True)
    assert duckdb_sql.dedup_by_hash(con, wide, 1)


@pytest.mark.usefixtures("both_silver_shapes")
def test_wide_tables_are_deduplicated_exactly(tmp_path, target):
    n_columns = duckdb_sql.WIDE_TABLE_COLUMNS + 6
    rows = [[f"v{r}_{c}" for c in range(n_columns)] for r in range(40)]
    rows.append(list(rows[3]))  # an exact duplicate
    rows.append([" " + v + " " for v in rows[5]])  # a duplicate once trimmed
    rows.append(list(rows[7][:-1]) + ["other"])  # differs in one column only
    table = pa.table({f"c{c}": pa.array([row[c] for row in rows]) for c in range(n_columns)})
    _, result = write_both(tmp_path, target, table)
    assert (result.row_count, (target.count_rows(BRONZE) - result.row_count)) == (41, 2)
    silver = read(result.location)
    assert silver.num_rows == 41
    got = {tuple(r[f"c{c}"] for c in range(n_columns)) for r in silver.to_pylist()}
    assert got == {tuple(row) for row in rows[:40]} | {tuple(rows[-1])}


@pytest.mark.usefixtures("both_silver_shapes")
def test_a_sampled_plan_that_a_late_value_disproves_is_rejected_on_a_wide_table(tmp_path, target):
    n_columns, n = duckdb_sql.WIDE_TABLE_COLUMNS + 2, SAMPLE_ROWS * 2
    table = pa.table({f"c{c}": [str(i) for i in range(n)] + ["late text"] for c in range(n_columns)})
    src = write_parquet(tmp_path / "in.parquet", table)
    target.write_bronze(source_for(src))
    sampled = infer_plan(src, null_tokens=TOKENS, sampled=True)
    assert sampled.columns[0].type == "integer"
    with pytest.raises(SampledPlanRejected, match="late text"):
        target.write_silver(source_for(src), sampled)
    assert not os.path.exists(os.path.join(target.location(SILVER), "_delta_log"))
    result = target.write_silver(source_for(src), infer_plan(src, null_tokens=TOKENS))
    assert (result.row_count, (target.count_rows(BRONZE) - result.row_count)) == (n + 1, 0)


@pytest.mark.usefixtures("both_silver_shapes")
def test_wide_tables_without_duplicates_keep_every_row(tmp_path, target):
    n_columns = duckdb_sql.WIDE_TABLE_COLUMNS + 3
    table = pa.table({f"c{c}": [f"{r}-{c}" for r in range(50)] for c in range(n_columns)})
    _, result = write_both(tmp_path, target, table)
    assert (result.row_count, (target.count_rows(BRONZE) - result.row_count)) == (50, 0)
    silver = read(result.location)
    assert sorted(silver.column("c0").to_pylist()) == sorted(f"{r}-0" for r in range(50))
    assert silver.column_names[-2:] == ["_dataset_id", "_ingested_at"]
    assert len(data_files(result.location)) == 1


def test_huge_row_groups_are_rewritten_smaller(tmp_path, target, monkeypatch):
    monkeypatch.setattr(delta_bronze, "BRONZE_MAX_ROW_GROUP_BYTES", 1024)
    monkeypatch.setattr(delta_bronze, "BRONZE_TARGET_ROW_GROUP_BYTES", 1)
    table = pa.table({"a": pa.array([str(i) for i in range(5000)]), "b": pa.array([f"x{i}" for i in range(5000)])})
    src = tmp_path / "in.parquet"
    pq.write_table(table, src, row_group_size=5000)
    result = target.write_bronze(source_for(src))
    (data_file,) = data_files(result.location)
    metadata = pq.read_metadata(os.path.join(result.location, data_file))
    assert metadata.num_row_groups == 5  # 1024-row groups, the smallest allowed
    assert read(result.location).select(["a", "b"]).to_pylist() == table.to_pylist()
