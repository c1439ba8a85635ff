"""SYNC_TARGET=mcp end to end: the real API, broker and worker against the local MCP
emulator, which downloads each Parquet file from our API over HTTP."""

from __future__ import annotations

import secrets
import uuid

import pyarrow as pa

from tests.helpers import upload, wait_for_sync

CSV = (
    "Customer ID,Amount (€),Signed Up,Note\n"
    "1,10.50,2024-01-05, hello \n"
    "2,3,2024-02-29,NULL\n"
    "3,,2023-12-31,N/A\n"
    "2,3,2024-02-29,NULL\n"
)


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(3)}"


def test_upload_syncs_through_the_mcp_server(mcp, auth, tenant):
    emulator = mcp.extras["emulator"]
    client = mcp.app.test_client()
    response = upload(client, auth, CSV, "Orders.csv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    status = wait_for_sync(client, auth, body["id"], timeout=90)
    assert status["status"] == "synced", status
    assert status["target"] == "mcp"
    # The tables are the ones the server named, not the names we proposed.
    proposed = f"{tenant['catalog']}.bronze.orders_{uuid.UUID(body['id']).hex[:8]}"
    bronze = emulator.datasets[body["id"]]["bronze_table"]
    assert bronze != proposed
    assert status["bronze_table"] == bronze
    assert status["silver_table"] == emulator.datasets[body["id"]]["silver_table"]
    assert status["bronze_location"] == f"mcp://{emulator.url.removeprefix('http://')}/{bronze}"
    assert (status["row_count_bronze"], status["row_count_silver"], status["duplicates_removed"]) == (4, 3, 1)

    # The server fetched the file from our internal endpoint, by a URL signed for that file.
    assert any(
        url.split("?")[0].endswith(f"/internal/storage/datasets/{body['file_name']}")
        and code == 200
        and "signature=" in url
        for url, code in emulator.downloads
    )
    entry = emulator.datasets[body["id"]]
    assert entry["schema"][0]["source_name"] == "Customer ID"

    bronze = emulator.read_table(status["bronze_table"])
    assert bronze.num_rows == 4 and {"_dataset_id", "_ingested_at", "_source_file"} <= set(bronze.column_names)
    silver = emulator.read_table(status["silver_table"])
    types = {f.name: f.type for f in silver.schema}
    assert types["customer_id"] == pa.int64() and types["amount"] == pa.float64() and types["signed_up"] == pa.date32()
    by_id = {r["customer_id"]: r for r in silver.to_pylist()}
    assert by_id[1]["note"] == "hello" and by_id[2]["note"] is None and by_id[3]["amount"] is None


def test_transient_server_errors_are_retried_until_synced(mcp, auth):
    emulator = mcp.extras["emulator"]
    name = _unique("busy")
    emulator.inject(
        503,
        {"error": {"code": "unavailable", "message": "Databricks warehouse starting"}},
        headers={"Retry-After": "0"},
        method="POST",
        path="/databricks/datasets",
        body_match=name,
        times=4,
    )
    emulator.inject(
        429,
        {"error": {"code": "rate_limited", "message": "slow down"}},
        headers={"Retry-After": "1"},
        method="POST",
        path="/databricks/transformations/silver",
        body_match=name,
    )
    client = mcp.app.test_client()
    response = upload(client, auth, CSV, f"{name}.csv")
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    assert status["status"] == "synced", status
    assert emulator.faults.pending() == 0
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["bronze"]["attempts"] == 2 and steps["silver"]["attempts"] == 1
    assert status["row_count_bronze"] == 4


def test_a_refusal_fails_with_the_server_message(mcp, auth):
    emulator = mcp.extras["emulator"]
    name = _unique("refused")
    emulator.inject(
        403,
        {"error": {"code": "forbidden", "message": f"service principal may not write {name}"}},
        method="POST",
        path="/databricks/transformations/silver",
        body_match=name,
    )
    client = mcp.app.test_client()
    response = upload(client, auth, CSV, f"{name}.csv")
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    assert status["status"] == "failed"
    assert status["last_error"] == "silver: target_rejected: the lakehouse target refused the data"
    assert {s["step"]: s for s in status["runs"][0]["steps"]}["silver"]["attempts"] == 1


def test_server_down_leaves_the_dataset_local_with_a_reason_then_resync_works(mcp, auth):
    emulator = mcp.extras["emulator"]
    client = mcp.app.test_client()
    emulator.stop()
    response = upload(client, auth, CSV, "offline.csv")
    assert response.status_code == 201, response.get_json()  # the upload never depends on the target
    dataset_id = response.get_json()["id"]
    status = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert status["status"] == "failed"
    assert status["last_error"] == "bronze: target_unavailable: the lakehouse target could not be reached"
    assert {s["step"]: s for s in status["runs"][0]["steps"]}["bronze"]["attempts"] == 3
    rows = client.get(f"/api/v1/datasets/{dataset_id}/rows", headers=auth).get_json()
    assert len(rows["rows"]) == 4

    integration = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert integration["reachable"] is False and integration["error"] == "the mcp target could not be reached"
    assert integration["failed"] == 1
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 503 and response.get_json()["error"]["code"] == "target_unavailable"

    emulator.start()
    assert client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth).status_code == 202
    status = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert status["status"] == "synced", status
    assert status["last_error"] is None and status["row_count_silver"] == 3


def test_delete_removes_the_dataset_on_the_server(mcp, auth):
    emulator = mcp.extras["emulator"]
    client = mcp.app.test_client()
    response = upload(client, auth, CSV, "gone.csv")
    dataset_id = response.get_json()["id"]
    status = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert status["status"] == "synced"
    assert emulator.table_exists(status["bronze_table"]) and emulator.table_exists(status["silver_table"])
    assert client.delete(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 204
    assert dataset_id not in emulator.datasets
    assert not emulator.table_exists(status["bronze_table"]) and not emulator.table_exists(status["silver_table"])
    assert ("DELETE", f"/databricks/datasets/{dataset_id}", 204) in emulator.requests


def test_catalog_initialize_and_integration_status(mcp, auth, tenant):
    emulator = mcp.extras["emulator"]
    client = mcp.app.test_client()
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["target"] == "mcp" and body["catalog"] == tenant["catalog"]
    assert body["details"] == {"managed_by": "mcp"}
    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["target"] == "mcp" and status["reachable"] is True
    assert status["details"] == {"target": "mcp"} and emulator.url not in str(status)
    assert status["datasets_total"] == 0 and status["sync_percentage"] == 0.0
