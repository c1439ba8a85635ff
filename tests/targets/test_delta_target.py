"""SYNC_TARGET=delta through its own stack: the same API, chain and status as the remote
targets."""

from __future__ import annotations

from deltalake import DeltaTable

from tests.helpers import upload, wait_for_sync


def test_upload_syncs_to_local_delta_tables(delta, auth, tenant):
    client = delta.app.test_client()
    response = upload(client, auth, "k,v\n1,x\n2,y\n2,y\n", "pairs.csv")
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"], timeout=90)
    assert status["status"] == "synced", status
    assert status["target"] == "delta"
    assert status["bronze_location"].startswith(delta.env["LAKEHOUSE_DIR"])
    silver = DeltaTable(status["silver_location"]).to_pyarrow_table()
    assert sorted(silver.column("k").to_pylist()) == [1, 2]
    assert (status["row_count_bronze"], status["row_count_silver"], status["duplicates_removed"]) == (3, 2, 1)


def test_catalog_initialize_and_integration_status(delta, auth, tenant):
    client = delta.app.test_client()
    response = client.post("/api/v1/catalog/initialize", headers=auth)
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["target"] == "delta"
    assert response.get_json()["catalog"] == tenant["catalog"]

    assert wait_for_sync(client, auth, upload(client, auth, "a\n1\n", "ok.csv").get_json()["id"])["status"] == "synced"
    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["target"] == "delta" and status["reachable"] is True and status["error"] is None
    assert (status["datasets_total"], status["synced"], status["pending"], status["syncing"]) == (1, 1, 0, 0)
    assert status["sync_percentage"] == 100.0
