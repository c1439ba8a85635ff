"""SYNC_TARGET=databricks end to end: the real API, broker and worker against the local
Databricks emulator (Files API, Statement Execution API on DuckDB, OAuth M2M)."""

from __future__ import annotations

import datetime as dt
import io
import secrets
import uuid

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.helpers import upload, wait_for_sync

CSV = (
    "Customer ID,Zip Code,Amount (€),Signed Up,Active,Last Seen,Note\n"
    "1,02134,10.50,2024-01-05,true,2024-01-05T10:00:00Z, hello \n"
    "2,90210,3,2024-02-29,FALSE,2024-02-01 08:30:00,NULL\n"
    "3,00501,,2023-12-31,false,2024-03-01T00:00:00+02:00,N/A\n"
    "2,90210,3,2024-02-29,FALSE,2024-02-01 08:30:00,NULL\n"
)

# Every silver rule at once: trimming, each null token, each type, quotes and backslashes,
# unicode, a value at the edge of double, duplicates (rows 2 and 4, 3 and 6 after cleaning).
RICH_CSV = (
    "id,Name,Amount (€),Ratio,Active,Joined,Last Seen,Note,Code,Empty\n"
    "1, Ada ,10.50,1e3,true,2024-01-05,2024-01-05T10:00:00Z, hello ,007,\n"
    "2,Grace,3,-2.5,FALSE,2024-02-29,2024-02-01 08:30:00,NULL,0042,NULL\n"
    '3,"O\'Neil",,0.1, True ,2023-12-31,2024-03-01T00:00:00+02:00,N/A,x1,\n'
    "2,Grace,3,-2.5,FALSE,2024-02-29,2024-02-01 08:30:00,NULL,0042,NULL\n"
    '4,"back\\slash ""quoted""",1.7976931348623157e308,NA,false,,2024-03-01 00:00:00.123456,None,,\n'
    '3,"O\'Neil" ,, 0.1,true,2023-12-31, 2024-02-29T22:00:00Z,null,x1,None\n'
    # Spaces are trimmed; the no-break space (U+00A0) is data on both targets.
    '5,Zoë ✓,-0.5,7,TRUE,2000-01-01,1999-12-31T23:59:59.5-05:00,"\u00a0a, b ",0,\n'
)


def _parquet_bytes() -> bytes:
    table = pa.table(
        {
            "id": pa.array([1, 2, 2, 3, None], pa.int64()),
            "score": [0.5, 1.5, 1.5, None, -3.25],
            "day": [dt.date(2024, 1, 1), None, None, dt.date(1999, 12, 31), dt.date(2024, 2, 29)],
            "at": pa.array(
                [dt.datetime(2024, 1, 1, 10, tzinfo=dt.UTC)] * 3 + [None, None], pa.timestamp("ms", tz="UTC")
            ),
            "local": pa.array(
                [dt.datetime(2024, 1, 1, 10, 30)] * 3 + [None, dt.datetime(2000, 1, 1)], pa.timestamp("us")
            ),
            "flag": [True, False, False, None, True],
            "label": [" x ", "NULL", "NULL", "", "y"],
            "count": pa.array([1, 2, 2, 3, 4], pa.uint32()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _canonical(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_timestamp(t):
        tz = None if t.tz is None else ("UTC" if t.tz in ("UTC", "Etc/UTC", "+00:00", "Z") else t.tz)
        return f"timestamp[{t.unit}, {tz}]"
    return str(t)


def _comparable(table: pa.Table) -> tuple[list, list]:
    """(column names and types, sorted rows) without the per-dataset metadata values."""
    kept = [n for n in table.column_names if n not in ("_dataset_id", "_ingested_at")]
    schema = [(f.name, _canonical(f.type)) for f in table.schema]
    rows = table.select(kept).to_pylist()
    key = lambda r: [(v is None, str(type(v)), v if v is not None else 0) for v in r.values()]  # noqa: E731
    return schema, sorted(rows, key=key)


def _sync(stack, auth, content, file_name, **form) -> dict:
    client = stack.app.test_client()
    response = upload(client, auth, content, file_name, **form)
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    return status


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def test_upload_syncs_to_unity_catalog_tables(databricks, auth, tenant):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    response = upload(client, auth, CSV, "Revenue Q1.csv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    status = wait_for_sync(client, auth, body["id"], timeout=90)
    assert status["status"] == "synced", status
    short = uuid.UUID(body["id"]).hex[:8]
    table = f"revenue_q1_{short}"
    assert status["target"] == "databricks"
    assert status["bronze_table"] == f"{tenant['catalog']}.bronze.{table}"
    assert status["silver_table"] == f"{tenant['catalog']}.silver.{table}"
    host = emulator.url.removeprefix("http://")
    assert status["bronze_location"] == f"databricks://{host}/{tenant['catalog']}.bronze.{table}"
    assert (status["row_count_local"], status["row_count_bronze"], status["row_count_silver"]) == (4, 4, 3)
    assert status["duplicates_removed"] == 1 and status["last_error"] is None
    assert [s["status"] for s in status["runs"][0]["steps"]] == ["succeeded"] * 3

    # The catalog, its schemas and the staging volume were created on first use.
    assert emulator.has_schema(tenant["catalog"], "bronze") and emulator.has_volume(
        tenant["catalog"], "staging", "uploads"
    )
    [staged] = emulator.volume_files(tenant["catalog"], "staging", "uploads")
    assert staged.startswith(f"bronze/{table}/") and staged.endswith(".parquet")

    bronze = emulator.read_table(status["bronze_table"])
    assert bronze.column_names == [
        "Customer ID",
        "Zip Code",
        "Amount (€)",
        "Signed Up",
        "Active",
        "Last Seen",
        "Note",
        "_dataset_id",
        "_ingested_at",
        "_source_file",
    ]
    rows = sorted(bronze.to_pylist(), key=lambda r: (r["Customer ID"], r["Zip Code"]))
    assert rows[0]["Zip Code"] == "02134" and rows[0]["Note"] == " hello " and rows[3]["Amount (€)"] == ""
    assert {r["_dataset_id"] for r in rows} == {body["id"]}
    assert {r["_source_file"] for r in rows} == {body["file_name"]}
    assert bronze.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")

    silver = emulator.read_table(status["silver_table"])
    types = {f.name: f.type for f in silver.schema}
    assert types["customer_id"] == pa.int64() and types["amount"] == pa.float64()
    assert types["signed_up"] == pa.date32() and types["active"] == pa.bool_()
    assert _canonical(types["zip_code"]) == "string" and _canonical(types["last_seen"]) == "timestamp[us, UTC]"
    by_id = {r["customer_id"]: r for r in silver.to_pylist()}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["note"] == "hello" and by_id[1]["zip_code"] == "02134"
    assert by_id[2]["note"] is None and by_id[3]["note"] is None and by_id[3]["amount"] is None
    assert by_id[3]["last_seen"] == dt.datetime(2024, 2, 29, 22, 0, tzinfo=dt.UTC)

    dataset = client.get(f"/api/v1/datasets/{body['id']}", headers=auth).get_json()
    assert {c["name"]: c["type"] for c in dataset["columns"]}["customer_id"] == "integer"


@pytest.mark.parametrize(
    "file_name, content", [("rich.csv", RICH_CSV), ("typed.parquet", _parquet_bytes())], ids=["csv", "parquet"]
)
def test_delta_and_databricks_build_identical_silver_tables(delta, databricks_stack, auth, file_name, content):
    local = _sync(delta, auth, content, file_name)
    remote = _sync(databricks_stack, auth, content, file_name)
    assert local["status"] == remote["status"] == "synced", (local, remote)
    assert local["row_count_silver"] == remote["row_count_silver"]
    assert local["duplicates_removed"] == remote["duplicates_removed"] > 0

    delta_silver = DeltaTable(local["silver_location"]).to_pyarrow_table()
    databricks_silver = databricks_stack.extras["emulator"].read_table(remote["silver_table"])
    delta_schema, delta_rows = _comparable(delta_silver)
    databricks_schema, databricks_rows = _comparable(databricks_silver)
    assert databricks_schema == delta_schema
    assert databricks_rows == delta_rows
    assert len(delta_rows) == local["row_count_silver"]


def test_throttling_and_unavailability_are_retried_until_synced(databricks, auth):
    emulator = databricks.extras["emulator"]
    name = _unique("throttled")
    emulator.inject(
        429,
        {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "Too many requests"},
        headers={"Retry-After": "1"},
        method="PUT",
        path=f"/api/2.0/fs/files/.*/{name}_",
    )
    # More 503s than one step tries in-process: the chain's broker retry runs the step again.
    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "The service is temporarily unavailable"},
        method="POST",
        path="/api/2.0/sql/statements",
        body_match=rf"COPY INTO `[^`]+`\.`bronze`\.`{name}_",
        times=3,
    )
    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "The service is temporarily unavailable"},
        method="POST",
        path="/api/2.0/sql/statements",
        body_match=rf"CREATE OR REPLACE TABLE `[^`]+`\.`silver`\.`{name}_",
    )
    status = _sync(databricks, auth, CSV, f"{name}.csv")
    assert status["status"] == "synced", status
    assert emulator.faults.pending() == 0
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["bronze"]["attempts"] == 2 and steps["silver"]["attempts"] == 1
    assert (status["row_count_bronze"], status["row_count_silver"]) == (4, 3)  # retries added no rows
    assert emulator.read_table(status["bronze_table"]).num_rows == 4

    # Retry-After was honoured: the upload came again at least a second after the 429.
    puts = [(t, s) for t, m, p, s in emulator.request_log if m == "PUT" and f"/{name}_" in p]
    throttled = next(t for t, s in puts if s == 429)
    assert next(t for t, s in puts if t > throttled) - throttled >= 0.95


def test_permission_denied_fails_with_the_databricks_message(databricks, auth):
    emulator = databricks.extras["emulator"]
    name = _unique("denied")
    message = f"User does not have CREATE TABLE on Schema 'bronze' ({name})"
    emulator.inject(
        403,
        {"error_code": "PERMISSION_DENIED", "message": message},
        method="POST",
        path="/api/2.0/sql/statements",
        body_match=rf"CREATE TABLE IF NOT EXISTS `[^`]+`\.`bronze`\.`{name}_",
    )
    client = databricks.app.test_client()
    response = upload(client, auth, CSV, f"{name}.csv")
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    assert status["status"] == "failed"
    assert status["last_error"] == "bronze: target_rejected: the lakehouse target refused the data"
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["bronze"]["attempts"] == 1 and "silver" not in steps
    rows = client.get(f"/api/v1/datasets/{response.get_json()['id']}/rows", headers=auth).get_json()
    assert len(rows["rows"]) == 4  # still available locally


def test_a_failed_statement_fails_the_step_with_the_sql_error(databricks, auth):
    emulator = databricks.extras["emulator"]
    name = _unique("sqlerror")
    message = "[DELTA_FAILED_TO_MERGE_FIELDS] Failed to merge fields 'note' and 'note'. SQLSTATE: 22005"
    emulator.fail_statements(
        rf"CREATE OR REPLACE TABLE `[^`]+`\.`silver`\.`{name}_", error_code="BAD_REQUEST", message=message
    )
    status = _sync(databricks, auth, CSV, f"{name}.csv")
    assert status["status"] == "failed"
    assert status["last_error"] == "silver: target_rejected: the lakehouse target refused the data"
    assert message not in status["last_error"]
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["bronze"]["status"] == "succeeded" and steps["silver"]["attempts"] == 1


def test_resync_leaves_exactly_the_file_rows(databricks, auth, tenant):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    first = _sync(databricks, auth, CSV, "again.csv")
    assert first["status"] == "synced"
    dataset_id = first["dataset_id"]
    response = client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth)
    assert response.status_code == 202, response.get_json()
    second = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert second["status"] == "synced" and len(second["runs"]) == 2
    bronze = emulator.read_table(second["bronze_table"])
    assert bronze.num_rows == 4 and len(set(bronze.column("_ingested_at").to_pylist())) == 1
    table = second["bronze_table"].split(".")[-1]
    staged = [f for f in emulator.volume_files(tenant["catalog"], "staging", "uploads") if f"/{table}/" in f]
    assert len(staged) == 1  # the file of the first run was removed
    assert len(emulator.loaded_files(second["bronze_table"])) == 2
    assert emulator.read_table(second["silver_table"]).num_rows == 3


def test_delete_drops_the_tables_and_the_staged_file(databricks, auth, tenant):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    status = _sync(databricks, auth, CSV, "doomed.csv")
    assert status["status"] == "synced"
    table = status["bronze_table"].split(".")[-1]
    assert emulator.table_exists(status["bronze_table"]) and emulator.table_exists(status["silver_table"])
    response = client.delete(f"/api/v1/datasets/{status['dataset_id']}", headers=auth)
    assert response.status_code == 204, response.get_json()
    assert not emulator.table_exists(status["bronze_table"]) and not emulator.table_exists(status["silver_table"])
    assert not [f for f in emulator.volume_files(tenant["catalog"], "staging", "uploads") if f"/{table}/" in f]
    assert client.get(f"/api/v1/datasets/{status['dataset_id']}", headers=auth).status_code == 404


def test_catalog_initialize_and_integration_status(databricks, auth, tenant):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    catalog = tenant["catalog"]
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == {
        "target": "databricks",
        "catalog": catalog,
        "schemas": [f"{catalog}.bronze", f"{catalog}.silver", f"{catalog}.staging"],
        "volumes": [f"{catalog}.staging.uploads"],
        "details": {},
    }
    assert emulator.has_catalog(catalog) and emulator.has_volume(catalog, "staging", "uploads")
    assert client.post("/api/v1/catalog/initialize", headers=auth).status_code == 200  # idempotent

    assert _sync(databricks, auth, "a,b\n1,2\n", "one.csv")["status"] == "synced"
    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["target"] == "databricks" and status["reachable"] is True and status["error"] is None
    # Hosts and warehouse ids are not shown to tenants.
    assert status["details"] == {"target": "databricks"}
    assert emulator.url not in str(status) and emulator.warehouse_id not in str(status)
    assert (status["datasets_total"], status["synced"], status["failed"]) == (1, 1, 0)
    assert status["sync_percentage"] == 100.0

    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "warehouse unavailable"},
        path="/api/2.0/sql/warehouses/",
        times=3,
    )
    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["reachable"] is False and status["error"] == "the databricks target could not be reached"

    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "warehouse unavailable"},
        path="/api/2.0/sql/statements",
        times=3,
    )
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "target_unavailable"

    emulator.inject(
        403,
        {"error_code": "PERMISSION_DENIED", "message": "User does not have CREATE CATALOG"},
        path="/api/2.0/sql/statements",
    )
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 502
    error = response.get_json()["error"]
    assert error["code"] == "target_error" and "CREATE CATALOG" in error["message"]


def test_integration_endpoints_need_a_key(databricks):
    client = databricks.app.test_client()
    assert client.get("/api/v1/integration/status").status_code == 401
    assert client.post("/api/v1/catalog/initialize").status_code == 401


BAD_ROWS_CSV = "id,city\n1,Oslo\n## a comment ##\n2,Lima\n3,Rome,extra\n"


def test_quarantine_table_beside_bronze_as_on_delta(delta, databricks, auth, tenant):
    emulator = databricks.extras["emulator"]
    client = databricks.app.test_client()
    local = _sync(delta, auth, BAD_ROWS_CSV, "bad.csv", bad_rows="quarantine")
    status = _sync(databricks, auth, BAD_ROWS_CSV, "bad.csv", bad_rows="quarantine")
    assert local["status"] == status["status"] == "synced", (local, status)
    assert status["bad_row_count"] == 2
    assert status["quarantine_table"] == status["bronze_table"] + "_quarantine"

    quarantine = emulator.read_table(status["quarantine_table"])
    delta_quarantine = DeltaTable(local["bronze_location"] + "_quarantine").to_pyarrow_table()
    assert sorted(_comparable(quarantine)[0]) == sorted(_comparable(delta_quarantine)[0])
    bad = ["line", "reason", "raw"]
    rows = sorted(quarantine.to_pylist(), key=lambda r: r["line"])
    assert [{k: r[k] for k in bad} for r in rows] == sorted(
        delta_quarantine.select(bad).to_pylist(), key=lambda r: r["line"]
    )
    assert [(r["line"], r["raw"]) for r in rows] == [(3, "## a comment ##"), (5, "3,Rome,extra")]
    dataset = client.get(f"/api/v1/datasets/{status['dataset_id']}", headers=auth).get_json()
    assert {(r["_dataset_id"], r["_source_file"]) for r in rows} == {(dataset["id"], dataset["file_name"])}

    # A resync leaves the same rows, and one staged file per table.
    dataset_id = status["dataset_id"]
    assert client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth).status_code == 202
    again = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert again["status"] == "synced" and again["quarantine_table"] == status["quarantine_table"]
    assert sorted(emulator.read_table(status["quarantine_table"]).column("line").to_pylist()) == [3, 5]
    table = status["quarantine_table"].split(".")[-1]
    staged = [f for f in emulator.volume_files(tenant["catalog"], "staging", "uploads") if f"/{table}/" in f]
    assert len(staged) == 1

    assert client.delete(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 204
    assert not emulator.table_exists(status["quarantine_table"])
    assert not [f for f in emulator.volume_files(tenant["catalog"], "staging", "uploads") if f"/{table}/" in f]
