"""Upload → local Parquet → Celery chain → Delta tables, through the real API, broker and worker."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from tests.helpers import upload, wait_for_sync

pytestmark = pytest.mark.usefixtures("worker")

CSV = (
    "Customer ID,Zip Code,Amount (€),Signed Up,Active,Last Seen,Note\n"
    "1,02134,10.50,2024-01-05,true,2024-01-05T10:00:00Z, hello \n"
    "2,90210,3,2024-02-29,FALSE,2024-02-01 08:30:00,NULL\n"
    "3,00501,,2023-12-31,false,2024-03-01T00:00:00+02:00,N/A\n"
    "2,90210,3,2024-02-29,FALSE,2024-02-01 08:30:00,NULL\n"
)


def table(location: str) -> pa.Table:
    return DeltaTable(location).to_pyarrow_table()


def test_csv_upload_reaches_synced_with_exact_bronze_and_typed_silver(client, auth, tenant):
    response = upload(client, auth, CSV, "Revenue Q1.csv", description="first quarter")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert response.headers["Location"].endswith(f"/api/v1/datasets/{body['id']}")
    assert body["name"] == "Revenue Q1"
    assert body["description"] == "first quarter"
    assert body["source_format"] == "csv"
    assert body["row_count"] == 4
    assert body["sync_status"] == "pending"
    assert body["file_name"] == f"{body['id']}.parquet"
    assert [c["source_name"] for c in body["columns"]][:3] == ["Customer ID", "Zip Code", "Amount (€)"]
    assert body["columns"][0]["name"] == "customer_id"

    status = wait_for_sync(client, auth, body["id"])
    assert status["status"] == "synced", status
    short = uuid.UUID(body["id"]).hex[:8]
    assert status["bronze_table"] == f"{tenant['catalog']}.bronze.revenue_q1_{short}"
    assert status["silver_table"] == f"{tenant['catalog']}.silver.revenue_q1_{short}"
    assert status["row_count_local"] == 4
    assert status["row_count_bronze"] == 4
    assert status["row_count_silver"] == 3
    assert status["duplicates_removed"] == 1
    assert status["step"] is None and status["last_error"] is None and status["last_sync_at"]
    [run] = status["runs"]
    assert run["status"] == "synced"
    assert [s["step"] for s in run["steps"]] == ["bronze", "silver", "metadata"]
    assert all(s["status"] == "succeeded" and s["duration_ms"] is not None for s in run["steps"])
    assert run["steps"][0]["rows"] == 4

    bronze = table(status["bronze_location"])
    assert bronze.num_rows == 4
    rows = sorted(bronze.to_pylist(), key=lambda r: (r["Customer ID"], r["Zip Code"]))
    assert rows[0]["Zip Code"] == "02134"
    assert rows[0]["Note"] == " hello "
    assert rows[1]["Amount (€)"] == "3"
    assert rows[3]["Amount (€)"] == ""  # row "3": an empty field stays the empty string
    assert {r["_dataset_id"] for r in rows} == {body["id"]}
    assert {r["_source_file"] for r in rows} == {body["file_name"]}
    assert all(isinstance(r["_ingested_at"], dt.datetime) for r in rows)

    silver = table(status["silver_location"])
    types = {f.name: f.type for f in silver.schema}
    assert types["customer_id"] == pa.int64()
    assert types["zip_code"] == pa.string() or types["zip_code"] == pa.large_string()
    assert types["amount"] == pa.float64()
    assert types["signed_up"] == pa.date32()
    assert types["active"] == pa.bool_()
    assert pa.types.is_timestamp(types["last_seen"])
    by_id = {r["customer_id"]: r for r in silver.to_pylist()}
    assert set(by_id) == {1, 2, 3}
    assert by_id[1]["zip_code"] == "02134"
    assert by_id[1]["note"] == "hello"
    assert by_id[2]["note"] is None and by_id[3]["note"] is None
    assert by_id[3]["amount"] is None
    assert by_id[3]["last_seen"] == dt.datetime(2024, 2, 29, 22, 0, tzinfo=dt.UTC)

    dataset = client.get(f"/api/v1/datasets/{body['id']}", headers=auth).get_json()
    assert dataset["sync_status"] == "synced"
    col_types = {c["name"]: c["type"] for c in dataset["columns"]}
    assert col_types["customer_id"] == "integer" and col_types["zip_code"] == "string"


@pytest.mark.parametrize(
    ("file_name", "content", "fmt"),
    [
        ("people.tsv", "id\tname\n1\tAda\n2\tGrace\n", "tsv"),
        ("people.json", json.dumps([{"id": 1, "name": "Ada"}, {"id": 2, "name": "Grace"}]), "json"),
        ("people.ndjson", '{"id": 1, "name": "Ada"}\n{"id": 2, "name": "Grace"}\n', "ndjson"),
    ],
)
def test_text_formats_sync(client, auth, file_name, content, fmt):
    response = upload(client, auth, content, file_name)
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["source_format"] == fmt
    status = wait_for_sync(client, auth, response.get_json()["id"])
    assert status["status"] == "synced", status
    silver = table(status["silver_location"]).to_pylist()
    assert sorted((r["id"], r["name"]) for r in silver) == [(1, "Ada"), (2, "Grace")]


def test_parquet_upload_keeps_source_types(client, auth):
    source = pa.table({"id": pa.array([1, 2], pa.int64()), "score": [0.5, 1.5], "day": [dt.date(2024, 1, 1), None]})
    buf = io.BytesIO()
    pq.write_table(source, buf)
    response = upload(client, auth, buf.getvalue(), "scores.parquet")
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"])
    assert status["status"] == "synced", status
    bronze = table(status["bronze_location"])
    assert bronze.schema.field("id").type == pa.int64()
    assert bronze.schema.field("day").type == pa.date32()
    assert bronze.select(["id", "score", "day"]).to_pylist() == source.to_pylist()


def test_json_records_upload(client, auth):
    records = [{"sku": "A-1", "qty": 3}, {"sku": "B-2", "qty": 5}, {"sku": "A-1", "qty": 3}]
    response = client.post("/api/v1/datasets", headers=auth, json={"name": "orders", "records": records})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["source_format"] == "json" and body["row_count"] == 3
    status = wait_for_sync(client, auth, body["id"])
    assert status["status"] == "synced"
    assert status["row_count_silver"] == 2 and status["duplicates_removed"] == 1


def test_latin1_and_cp1252_files_are_decoded(client, auth):
    content = "city,price\nMünchen,5\nCafé,€3\n".encode("cp1252")
    response = upload(client, auth, content, "prices.csv")
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"])
    rows = table(status["bronze_location"]).to_pylist()
    assert sorted(r["city"] for r in rows) == ["Café", "München"]
    assert "€3" in {r["price"] for r in rows}


def test_transient_failure_is_retried_then_synced(client, auth):
    response = upload(client, auth, "a,b\n1,2\n", "flaky silver.csv")
    assert response.status_code == 201
    status = wait_for_sync(client, auth, response.get_json()["id"])
    assert status["status"] == "synced", status
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["silver"]["attempts"] == 2
    assert steps["bronze"]["attempts"] == 1 and steps["metadata"]["attempts"] == 1
    assert status["attempts"] == 4


def test_retries_exhausted_ends_failed_with_reason(client, auth):
    response = upload(client, auth, "a,b\n1,2\n", "broken silver.csv")
    dataset_id = response.get_json()["id"]
    status = wait_for_sync(client, auth, dataset_id)
    assert status["status"] == "failed"
    # Tenants read a stable code and a plain message, not the raw error.
    assert status["last_error"] == "silver: target_unavailable: the lakehouse target could not be reached"
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["silver"]["attempts"] == 3 and steps["silver"]["status"] == "failed"
    assert "metadata" not in steps
    # The dataset stays available locally.
    rows = client.get(f"/api/v1/datasets/{dataset_id}/rows", headers=auth).get_json()
    assert rows["rows"] == [{"a": "1", "b": "2"}]


def test_permanent_failure_fails_at_once(client, auth):
    response = upload(client, auth, "a,b\n1,2\n", "bad silver.csv")
    status = wait_for_sync(client, auth, response.get_json()["id"])
    assert status["status"] == "failed"
    assert status["last_error"] == "silver: target_rejected: the lakehouse target refused the data"
    steps = {s["step"]: s for s in status["runs"][0]["steps"]}
    assert steps["silver"]["attempts"] == 1


def test_a_step_redone_after_a_crash_leaves_the_same_tables(app, client, auth):
    """A worker that died after writing a table but before recording it: the step runs again."""
    from service import sync
    from service.db import session_scope
    from service.models import Dataset, SyncRun, Tenant
    from service.runtime import runtime

    response = upload(client, auth, "k,v\n1,x\n2,y\n2,y\n", "twice.csv")
    dataset_id = uuid.UUID(response.get_json()["id"])
    first = wait_for_sync(client, auth, str(dataset_id))
    assert first["status"] == "synced"
    with app.app_context():
        with session_scope() as session:
            run = SyncRun(id=uuid.uuid4(), dataset_id=dataset_id, trigger="manual", status="pending")
            session.add(run)
            dataset = session.get(Dataset, dataset_id)
            dataset.current_run_id = run.id
            ctx = sync.context_for(
                dataset, session.get(Tenant, dataset.tenant_id), run_id=run.id, ingested_at=dt.datetime.now(dt.UTC)
            )
        # The crashed attempt wrote the bronze table twice, then died.
        with runtime().store.local_copy(ctx.source_file) as path:
            ctx = dataclasses.replace(ctx, source_path=path)
            runtime().target().write_bronze(ctx)
            runtime().target().write_bronze(ctx)
        for step in (sync.run_bronze, sync.run_silver, sync.run_silver, sync.run_metadata):
            step(dataset_id, run.id)
    second = wait_for_sync(client, auth, str(dataset_id))
    bronze, silver = table(second["bronze_location"]), table(second["silver_location"])
    assert bronze.num_rows == 3 and silver.num_rows == 2
    assert sorted(silver.column("k").to_pylist()) == [1, 2]
    assert second["row_count_bronze"] == 3 and second["row_count_silver"] == 2
    steps = {s["step"]: s["attempts"] for s in second["runs"][0]["steps"]}
    assert steps == {"bronze": 1, "silver": 1, "metadata": 1}  # the second silver call found it done


def test_bookkeeping_cut_by_a_dropped_connection_is_tried_again(app, client, auth, monkeypatch):
    """PostgreSQL drops the step's connection in the middle of recording its start and its
    success: each transaction is tried again on a new connection, and the run ends synced."""
    from sqlalchemy import text

    from service import progress, sync
    from service.db import session_scope
    from service.models import Dataset, SyncRun

    response = upload(client, auth, "k,v\n1,x\n2,y\n2,y\n", "dropped.csv")
    dataset_id = uuid.UUID(response.get_json()["id"])
    assert wait_for_sync(client, auth, str(dataset_id))["status"] == "synced"
    dropped = []

    def dropping(write):
        def first_call_drops(conn, *args, **kwargs):
            if write.__name__ not in dropped:
                dropped.append(write.__name__)
                conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
            return write(conn, *args, **kwargs)

        return first_call_drops

    monkeypatch.setattr(progress, "start_step", dropping(progress.start_step))
    monkeypatch.setattr(progress, "set_step", dropping(progress.set_step))
    with app.app_context():
        with session_scope() as session:
            run = SyncRun(id=uuid.uuid4(), dataset_id=dataset_id, trigger="manual", status="pending")
            session.add(run)
            session.get(Dataset, dataset_id).current_run_id = run.id
        for step in sync.STEPS.values():
            assert not step(dataset_id, run.id).get("skipped")
    assert dropped == ["start_step", "set_step"]
    status = wait_for_sync(client, auth, str(dataset_id))
    assert status["status"] == "synced" and status["last_error"] is None, status
    current = status["runs"][0]
    assert current["status"] == "synced"
    assert {s["step"]: (s["status"], s["attempts"]) for s in current["steps"]} == {
        "bronze": ("succeeded", 1),
        "silver": ("succeeded", 1),
        "metadata": ("succeeded", 1),
    }
    assert status["row_count_bronze"] == 3 and status["row_count_silver"] == 2


def test_types_hold_for_every_row_not_just_the_sampled_ones(client, auth):
    from service.transform.inference import SAMPLE_ROWS

    n = SAMPLE_ROWS * 3
    lines = ["id,qty,code"] + [f"{i},{i % 7},{i}" for i in range(n)] + [f"{n},2.5,A-{n}"]
    response = upload(client, auth, "\n".join(lines) + "\n", "late.csv")
    assert response.status_code == 201, response.get_json()
    status = wait_for_sync(client, auth, response.get_json()["id"])
    assert status["status"] == "synced", status
    silver = table(status["silver_location"])
    types = {f.name: f.type for f in silver.schema}
    # The sample saw integers only; the last row makes qty a double and code a string.
    assert (types["id"], types["qty"]) == (pa.int64(), pa.float64())
    assert pa.types.is_string(types["code"]) or pa.types.is_large_string(types["code"])
    assert silver.num_rows == n + 1
    last = [r for r in silver.to_pylist() if r["id"] == n]
    assert last == [
        {
            "id": n,
            "qty": 2.5,
            "code": f"A-{n}",
            "_dataset_id": status["dataset_id"],
            "_ingested_at": last[0]["_ingested_at"],
        }
    ]
    dataset = client.get(f"/api/v1/datasets/{status['dataset_id']}", headers=auth).get_json()
    assert [(c["name"], c["type"]) for c in dataset["columns"]] == [
        ("id", "integer"),
        ("qty", "double"),
        ("code", "string"),
    ]


def test_work_files_of_uploads_cut_short_are_deleted(app):
    """A body spooled by an API process that was killed, deleted by the worker's housekeeping."""
    import os
    import time

    from service.datasets import LEFTOVER_SECONDS

    runtime = app.extensions["lakesync"]
    store = runtime.store
    stale = time.time() - LEFTOVER_SECONDS - 60
    left = [
        store.incoming_dir / f"upload-{uuid.uuid4().hex}.part",
        Path(runtime.ingest_settings.temp_dir) / f".ingest-{uuid.uuid4().hex}.utf8.csv",
    ]
    fresh = store.incoming_dir / f"upload-{uuid.uuid4().hex}.part"
    for path in left + [fresh]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a body")
    for path in left:
        os.utime(path, (stale, stale))

    app.extensions["celery"].send_task("uploads.remove_leftovers")
    deadline = time.monotonic() + 30
    while any(p.exists() for p in left) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(p.exists() for p in left)
    assert fresh.exists()
    fresh.unlink()
