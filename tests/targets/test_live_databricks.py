"""The Databricks target against a real workspace.

Runs only when DATABRICKS_HOST is set (with DATABRICKS_WAREHOUSE_ID and DATABRICKS_TOKEN,
or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET). Tables are written to the catalog
DATABRICKS_TEST_CATALOG (default ``lakesync_live_test``), created when missing, and
dropped at the end. See docs/databricks.md.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets

import pyarrow as pa
import pytest

pytestmark = pytest.mark.skipif(
    not os.environ.get("DATABRICKS_HOST"),
    reason="live Databricks tests: set DATABRICKS_HOST, DATABRICKS_WAREHOUSE_ID and DATABRICKS_TOKEN "
    "(or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET) to run them against a real workspace",
)

CATALOG = os.environ.get("DATABRICKS_TEST_CATALOG", "lakesync_live_test")

CSV = (
    "id,Name,Amount (€),Ratio,Active,Joined,Last Seen,Note\n"
    "1, Ada ,10.50,1e3,true,2024-01-05,2024-01-05T10:00:00Z, hello \n"
    "2,Grace,3,-2.5,FALSE,2024-02-29,2024-02-01 08:30:00,NULL\n"
    '3,"O\'Neil",,0.1, True ,2023-12-31,2024-03-01T00:00:00+02:00,N/A\n'
    "2,Grace,3,-2.5,FALSE,2024-02-29,2024-02-01 08:30:00,NULL\n"
    '4,"back\\slash ""quoted""",-0.5,7,false,,2024-03-01 00:00:00.123456,None\n'
)

SPARK_TYPES = {
    "int64": "bigint",
    "double": "double",
    "string": "string",
    "large_string": "string",
    "bool": "boolean",
    "date32[day]": "date",
    "timestamp[us, tz=UTC]": "timestamp",
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from service.config import from_env
    from service.lakehouse.databricks import DatabricksTarget

    config = from_env()
    if not config["DATABRICKS_WAREHOUSE_ID"]:
        pytest.skip("DATABRICKS_WAREHOUSE_ID is not set")
    if not (config["DATABRICKS_TOKEN"] or (config["DATABRICKS_CLIENT_ID"] and config["DATABRICKS_CLIENT_SECRET"])):
        pytest.skip("no Databricks credentials: DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET")
    target = DatabricksTarget.from_config({**config, "DATA_DIR": str(tmp_path_factory.mktemp("live"))})
    target.ping()
    return target


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    from service.ingest import convert_file

    root = tmp_path_factory.mktemp("live-source")
    (root / "rich.csv").write_text(CSV, encoding="utf-8")
    convert_file(root / "rich.csv", root / "rich.parquet", file_name="rich.csv")
    return root / "rich.parquet"


@pytest.fixture
def refs(live):
    from service.lakehouse.base import TableRef
    from tests.support.contexts import sync_context

    name = f"live_{secrets.token_hex(4)}"
    bronze, silver = TableRef(CATALOG, "bronze", name), TableRef(CATALOG, "silver", name)
    yield bronze, silver
    live.drop_tables(sync_context(None, bronze=bronze, silver=silver), [bronze, silver])


def test_ping_and_initialize_catalog(live):
    assert live.describe()["warehouse_id"] == os.environ["DATABRICKS_WAREHOUSE_ID"]
    result = live.initialize_catalog(CATALOG)
    assert f"{CATALOG}.bronze" in result["schemas"] and f"{CATALOG}.silver" in result["schemas"]
    assert live.initialize_catalog(CATALOG) == result


def test_bronze_and_silver_match_the_local_target(live, source, refs, tmp_path):
    from service.lakehouse.base import TableRef
    from service.lakehouse.databricks import StatementFailed
    from service.lakehouse.delta import DeltaTarget
    from service.lakehouse.spark_sql import table_name
    from service.transform import infer_plan
    from tests.support.contexts import sync_context

    bronze, silver = refs
    at = dt.datetime.now(dt.UTC).replace(microsecond=123456)

    def ctx(b, s, when):
        return sync_context(
            source, bronze=b, silver=s, dataset_id="live-test", source_file=source.name, ingested_at=when
        )

    src = ctx(bronze, silver, at)
    assert live.write_bronze(src).row_count == 5
    assert live.write_bronze(src).row_count == 5  # a retried step adds nothing
    resync = ctx(bronze, silver, at + dt.timedelta(minutes=1))
    assert live.write_bronze(resync).row_count == 5  # a new run replaces the rows

    plan = infer_plan(source, null_tokens=["", "NULL", "N/A", "None"])
    remote = live.write_silver(resync, plan)
    local_target = DeltaTarget(tmp_path / "lakehouse")
    local_ctx = ctx(TableRef("c", "bronze", "t"), TableRef("c", "silver", "t"), resync.ingested_at)
    local_silver = local_ctx.silver
    local_target.write_bronze(local_ctx)
    local = local_target.write_silver(local_ctx, plan)
    assert remote.row_count == local.row_count == 4

    from deltalake import DeltaTable

    expected = DeltaTable(local_target.location(local_silver)).to_pyarrow_table()
    described = live.execute(f"DESCRIBE TABLE {table_name(silver)}").rows
    types = {row[0]: row[1] for row in described if row[0] and not row[0].startswith("#")}
    for field in expected.schema:
        assert types[field.name] == SPARK_TYPES.get(str(field.type), str(field.type)), field.name

    # Per-column fingerprints computed by Databricks and locally.
    for field in expected.schema:
        if field.name in ("_dataset_id", "_ingested_at"):
            continue
        column = expected.column(field.name)
        remote_count, remote_distinct = live.execute(
            f"SELECT COUNT(`{field.name}`), COUNT(DISTINCT `{field.name}`) FROM {table_name(silver)}"
        ).rows[0]
        assert int(remote_count) == len(column) - column.null_count, field.name
        assert int(remote_distinct) == len(set(v for v in column.to_pylist() if v is not None)), field.name
        if pa.types.is_integer(field.type) or pa.types.is_floating(field.type):
            remote_sum = live.execute(f"SELECT SUM(`{field.name}`) FROM {table_name(silver)}").scalar()
            local_sum = sum(v for v in column.to_pylist() if v is not None)
            assert float(remote_sum) == pytest.approx(local_sum), field.name
    assert {r[0] for r in live.execute(f"SELECT `note` FROM {table_name(silver)}").rows} == set(
        expected.column("note").to_pylist()
    )

    live.drop_tables(resync, [bronze])
    with pytest.raises(StatementFailed, match="TABLE_OR_VIEW_NOT_FOUND"):
        live.count_rows(bronze)
