"""SYNC_ENABLED, AUTO_SYNC and the per-upload `sync` choice: datasets that stay local_only
until asked, through the real API, broker and worker."""

from __future__ import annotations

import pytest
from deltalake import DeltaTable

from tests.conftest import make_app
from tests.helpers import upload, wait_for_sync

pytestmark = pytest.mark.usefixtures("worker")

CSV = "id,city,amount\n1,Oslo,10.5\n2,Lima,3\n2,Lima,3\n3,Pune,\n"


@pytest.fixture(scope="module")
def app_with(app_env):
    """Apps on the session's stack (same database, broker and worker) with switches changed."""
    apps: dict[tuple, object] = {}

    def build(**switches):
        key = tuple(sorted(switches.items()))
        if key not in apps:
            apps[key] = make_app({**app_env, **switches})
        return apps[key]

    return build


def sync_state(client, auth, dataset_id: str) -> dict:
    response = client.get(f"/api/v1/datasets/{dataset_id}/sync", headers=auth)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def assert_local_only(client, auth, dataset_id: str) -> None:
    """Stored, previewable, and never asked to sync: no run, no tables."""
    state = sync_state(client, auth, dataset_id)
    assert state["status"] == "local_only", state
    assert state["runs"] == [] and state["bronze_table"] is None and state["step"] is None
    assert client.get(f"/api/v1/datasets/{dataset_id}", headers=auth).get_json()["sync_status"] == "local_only"


def assert_synced_like_any_upload(state: dict, trigger: str = "manual") -> None:
    """The run of a dataset that was local first ends as an upload's own run does."""
    assert state["status"] == "synced", state
    assert state["row_count_local"] == 4 and state["row_count_bronze"] == 4 and state["row_count_silver"] == 3
    assert state["duplicates_removed"] == 1 and state["last_error"] is None
    [run] = state["runs"]
    assert run["status"] == "synced" and run["trigger"] == trigger
    assert [(s["step"], s["status"]) for s in run["steps"]] == [
        ("bronze", "succeeded"),
        ("silver", "succeeded"),
        ("metadata", "succeeded"),
    ]
    bronze = DeltaTable(state["bronze_location"]).to_pyarrow_table()
    assert sorted(zip(bronze["id"].to_pylist(), bronze["amount"].to_pylist())) == [
        ("1", "10.5"),
        ("2", "3"),
        ("2", "3"),
        ("3", ""),
    ]
    silver = {r["id"]: r for r in DeltaTable(state["silver_location"]).to_pyarrow_table().to_pylist()}
    assert silver[1]["amount"] == 10.5 and silver[3]["amount"] is None and set(silver) == {1, 2, 3}


def test_upload_with_sync_false_stays_local_then_syncs_on_request(app, client, auth):
    response = upload(client, auth, CSV, "cities.csv", sync="false")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert created["sync_status"] == "local_only"
    dataset_id = created["id"]
    assert_local_only(client, auth, dataset_id)

    rows = client.get(f"/api/v1/datasets/{dataset_id}/rows?limit=2", headers=auth).get_json()
    assert rows["rows"] == [{"id": "1", "city": "Oslo", "amount": "10.5"}, {"id": "2", "city": "Lima", "amount": "3"}]
    assert rows["total"] == 4

    listed = client.get("/api/v1/datasets?status=local_only", headers=auth).get_json()
    assert [d["id"] for d in listed["items"]] == [dataset_id]

    # Neither the outbox relay nor the sweeper has anything to send for it.
    from service.runs import relay_unpublished, sweep_stuck

    with app.app_context():
        relay_unpublished(min_age=0.0)
        sweep_stuck()
    assert_local_only(client, auth, dataset_id)

    response = client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "pending"
    assert_synced_like_any_upload(wait_for_sync(client, auth, dataset_id))
    assert client.get("/api/v1/datasets?status=local_only", headers=auth).get_json()["total"] == 0


def test_json_records_choose_with_a_sync_member(client, auth):
    local = client.post("/api/v1/datasets", headers=auth, json={"name": "kept", "records": [{"a": 1}], "sync": False})
    assert local.status_code == 201, local.get_json()
    assert local.get_json()["sync_status"] == "local_only"
    assert_local_only(client, auth, local.get_json()["id"])

    synced = client.post("/api/v1/datasets", headers=auth, json={"name": "sent", "records": [{"a": 1}], "sync": True})
    assert synced.status_code == 201 and synced.get_json()["sync_status"] == "pending"
    assert wait_for_sync(client, auth, synced.get_json()["id"])["status"] == "synced"


def test_integration_status_counts_local_only_apart(client, auth):
    synced_id = upload(client, auth, "a\n1\n", "one.csv").get_json()["id"]
    assert wait_for_sync(client, auth, synced_id)["status"] == "synced"
    for i in range(3):
        upload(client, auth, "a\n1\n", f"kept{i}.csv", sync="0")
    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["datasets_total"] == 4 and status["local_only"] == 3 and status["synced"] == 1
    # Of the datasets asked to sync, all are synced.
    assert status["sync_percentage"] == 100.0
    assert status["sync_enabled"] is True and status["auto_sync"] is True


def test_bulk_sync_of_local_only_starts_each_of_the_tenants(client, auth, other_auth):
    kept = [upload(client, auth, CSV, f"bulk{i}.csv", sync="false").get_json()["id"] for i in range(2)]
    synced = upload(client, auth, "a\n1\n", "already.csv").get_json()["id"]
    assert wait_for_sync(client, auth, synced)["status"] == "synced"
    foreign = upload(client, other_auth, "a\n1\n", "foreign.csv", sync="false").get_json()["id"]

    response = client.post("/api/v1/sync", headers=auth, json={"status": "local_only"})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["requested"] == 2 and sorted(body["dataset_ids"]) == sorted(kept)
    for dataset_id in kept:
        assert_synced_like_any_upload(wait_for_sync(client, auth, dataset_id), trigger="bulk")
    assert len(sync_state(client, auth, synced)["runs"]) == 1
    assert_local_only(client, other_auth, foreign)


def test_auto_sync_off_keeps_uploads_local_unless_they_ask(app_with, auth):
    client = app_with(AUTO_SYNC=False).test_client()
    kept = upload(client, auth, CSV, "later.csv")
    assert kept.status_code == 201 and kept.get_json()["sync_status"] == "local_only"
    records = client.post("/api/v1/datasets", headers=auth, json={"name": "later", "records": [{"a": 1}]})
    assert records.get_json()["sync_status"] == "local_only"
    for dataset_id in (kept.get_json()["id"], records.get_json()["id"]):
        assert_local_only(client, auth, dataset_id)

    asked = upload(client, auth, "a\n1\n", "now.csv", sync="true")
    assert asked.get_json()["sync_status"] == "pending"
    assert wait_for_sync(client, auth, asked.get_json()["id"])["status"] == "synced"

    status = client.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["auto_sync"] is False and status["local_only"] == 2

    response = client.post(f"/api/v1/datasets/{kept.get_json()['id']}/sync", headers=auth)
    assert response.status_code == 202, response.get_json()
    assert_synced_like_any_upload(wait_for_sync(client, auth, kept.get_json()["id"]))


def test_sync_disabled_stores_uploads_and_refuses_to_sync_until_turned_on(app_with, client, auth):
    off = app_with(SYNC_ENABLED="false").test_client()
    # A transient silver failure on the first run shows the retries hold for it too.
    for form in ({}, {"sync": "true"}):
        response = upload(off, auth, CSV, "flaky_silver_off.csv", **form)
        assert response.status_code == 201, response.get_json()
        assert response.get_json()["sync_status"] == "local_only"
    dataset_id = response.get_json()["id"]
    assert_local_only(off, auth, dataset_id)
    assert off.get(f"/api/v1/datasets/{dataset_id}/rows", headers=auth).get_json()["total"] == 4

    for response in (
        off.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth),
        off.post("/api/v1/sync", headers=auth, json={"status": "local_only"}),
        off.post("/api/v1/sync", headers=auth, json={"status": "failed"}),
    ):
        assert response.status_code == 409, response.get_json()
        error = response.get_json()["error"]
        assert error["code"] == "sync_disabled" and "syncing is turned off" in error["message"]
    status = off.get("/api/v1/integration/status", headers=auth).get_json()
    assert status["sync_enabled"] is False and status["local_only"] == 2 and status["sync_percentage"] == 0.0
    assert_local_only(off, auth, dataset_id)

    # Switched back on (the default app): nothing moves by itself, and a request syncs it.
    assert_local_only(client, auth, dataset_id)
    response = client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth)
    assert response.status_code == 202, response.get_json()
    state = wait_for_sync(client, auth, dataset_id)
    assert_synced_like_any_upload(state)
    silver_step = state["runs"][0]["steps"][1]
    assert silver_step["attempts"] == 2


def test_cli_follows_the_switch(app, app_with, client, auth):
    dataset_id = upload(client, auth, CSV, "cli.csv", sync="false").get_json()["id"]
    off = app_with(SYNC_ENABLED=False)
    for args in (["sync", "resync", dataset_id], ["sync", "resync-failed"]):
        # `flask` pushes the app context itself; the test runner does not.
        with off.app_context():
            result = off.test_cli_runner().invoke(args=args)
        assert result.exit_code == 1 and "syncing is turned off" in result.output, result.output
    assert_local_only(client, auth, dataset_id)

    with app.app_context():
        result = app.test_cli_runner().invoke(args=["sync", "resync", dataset_id])
    assert result.exit_code == 0 and "requested" in result.output, result.output
    state = wait_for_sync(client, auth, dataset_id)
    assert state["status"] == "synced" and state["runs"][0]["trigger"] == "cli"


def test_a_local_only_dataset_is_deleted_without_the_target(app_with, client, auth):
    # An unreachable target would fail the delete if it were asked to drop tables.
    off = app_with(SYNC_ENABLED=False, SYNC_TARGET="mcp", MCP_SERVER_URL="http://127.0.0.1:9")
    dataset_id = upload(off.test_client(), auth, CSV, "gone.csv").get_json()["id"]
    response = off.test_client().delete(f"/api/v1/datasets/{dataset_id}", headers=auth)
    assert response.status_code == 204, response.get_data(as_text=True)
    assert client.get(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 404
