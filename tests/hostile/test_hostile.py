"""Hostile uploads are answered with 201 or the right 4xx naming the problem, never a 5xx,
leave nothing half-stored, and leave the stack healthy. Time and memory per case are
measured by `make bench-hostile`, not here."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from tests.helpers import upload, wait_for_sync
from tests.hostile.cases import CASES, Case


def send(client, auth: dict, case: Case):
    headers = {**auth, **case.headers}
    if case.json_body:
        return client.post(
            "/api/v1/datasets", headers={**headers, "Content-Type": "application/json"}, data=case.build()
        )
    data = {"file": (io.BytesIO(case.build()), case.file_name)}
    return client.post("/api/v1/datasets", headers=headers, data=data, content_type="multipart/form-data")


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input_is_answered_without_a_server_error(client, auth, case):
    response = send(client, auth, case)
    body = response.get_json(silent=True)
    assert response.status_code in case.statuses, (response.status_code, response.get_data(as_text=True)[:500])
    if response.status_code == 201:
        assert body["id"] and body["row_count"] >= 1
        return
    assert set(body) == {"error"}
    if case.code:
        assert body["error"]["code"] == case.code, body
    if case.needle:
        assert case.needle in body["error"]["message"].lower(), body


def test_there_are_enough_cases():
    assert len(CASES) >= 30
    assert {c.json_body for c in CASES} == {True, False}


def test_long_file_names_are_cut_to_their_column_keeping_the_extension(client, auth):
    name = "n" * 296 + ".csv"
    created = upload(client, auth, b"a\n1\n", name).get_json()
    assert created["original_file_name"] == "n" * 251 + ".csv"
    assert created["name"] == "n" * 255


def test_deleting_another_tenants_dataset_is_404_even_while_it_is_locked(app, client, auth, other_auth):
    """Ownership is checked before the lock: a foreign id never waits on a busy dataset."""
    import uuid

    from service.locks import dataset_lock

    dataset_id = upload(client, auth, b"a\n1\n", "mine.csv").get_json()["id"]
    with app.app_context(), dataset_lock(uuid.UUID(dataset_id)):
        response = client.delete(f"/api/v1/datasets/{dataset_id}", headers=other_auth)
        assert response.status_code == 404, response.get_data(as_text=True)
    assert client.get(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 200


def test_preview_of_large_values_reads_only_the_rows_asked_for(client, auth):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = 2_000
    values = [f"{i:06d}" + "x" * 2_000 for i in range(rows)]
    table = pa.table({"n": pa.array(range(rows), pa.int64()), "s": pa.array(values)})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=rows)
    created = upload(client, auth, buf.getvalue(), "values.parquet").get_json()
    body = client.get(f"/api/v1/datasets/{created['id']}/rows?limit=3&offset=1500", headers=auth).get_json()
    assert [r["n"] for r in body["rows"]] == [1500, 1501, 1502]
    assert body["rows"][0]["s"].startswith("001500") and body["total"] == rows


@pytest.mark.usefixtures("worker")
def test_the_stack_is_healthy_after_the_hostile_cases(client, auth):
    # The refused cases again: what a hostile client can repeat at no cost of its own.
    for case in CASES:
        if 201 not in case.statuses:
            assert send(client, auth, case).status_code < 500, case.name
    assert client.get("/readyz").status_code == 200
    created = upload(client, auth, b"id,name\n1,a\n2,b\n", "normal.csv").get_json()
    status = wait_for_sync(client, auth, created["id"], timeout=300)
    assert status["status"] == "synced", status
    assert status["row_count_silver"] == 2


@pytest.mark.usefixtures("worker")
def test_a_file_of_thousands_of_columns_reaches_synced_with_its_types(client, auth):
    """Wide enough for silver's listed shape (duckdb_sql.LISTED_COLUMNS) and the Arrow writer."""
    from deltalake import DeltaTable

    columns = 2_000
    header = ",".join(["a"] * columns)  # one snake_case name for all: a, a_2, a_3...
    # Integers, padded text, dates and null tokens in turn; the third row repeats the first once trimmed.
    first = ",".join(("7", " x ", "2024-02-29", "NULL")[i % 4] for i in range(columns))
    second = ",".join(("8", "y", "2024-03-01", "")[i % 4] for i in range(columns))
    third = ",".join(("7", "x", "2024-02-29", "N/A")[i % 4] for i in range(columns))
    created = upload(client, auth, f"{header}\n{first}\n{second}\n{third}\n", "wide.csv").get_json()
    assert len(created["columns"]) == columns
    status = wait_for_sync(client, auth, created["id"], timeout=300)
    assert status["status"] == "synced", status
    assert (status["row_count_bronze"], status["row_count_silver"], status["duplicates_removed"]) == (3, 2, 1)
    silver = DeltaTable(status["silver_location"]).to_pyarrow_table()
    assert silver.num_columns == columns + 2  # and _dataset_id, _ingested_at
    names = silver.column_names
    assert names[:5] == ["a", "a_2", "a_3", "a_4", "a_5"]
    rows = sorted(silver.select(names[:4] + names[-6:-2]).to_pylist(), key=lambda r: r["a"])
    assert [tuple(r.values()) for r in rows] == [
        (7, "x", dt.date(2024, 2, 29), None, 7, "x", dt.date(2024, 2, 29), None),
        (8, "y", dt.date(2024, 3, 1), None, 8, "y", dt.date(2024, 3, 1), None),
    ]
