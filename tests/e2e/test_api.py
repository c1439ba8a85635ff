"""API behaviour: bad input, auth and tenant isolation, listing, preview, internal files, health."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import INTERNAL_KEY
from tests.helpers import assert_error, upload, wait_for_sync


@pytest.mark.parametrize(
    ("content", "file_name", "status", "code", "needle"),
    [
        (b"", "empty.csv", 400, "empty_file", "empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "image.png", 415, "unsupported_format", "csv"),
        (b"a,b\n1,2\n3,4,5\n", "extra.csv", 400, "malformed_csv", "line 3"),
        (b'a,b\n1,2\n"3,4\n5,6\n', "quote.csv", 400, "malformed_csv", "line 3"),
        (b'[{"a": 1},\n{"a": 2,,}]', "bad.json", 400, "invalid_json", "line 2"),
        (b'{"a": 1}\n{"a": \n{"a": 3}\n', "bad.ndjson", 400, "invalid_json", "line 2"),
        (b'{"a": 1, "b": [1, 2]}', "one.json", 400, "invalid_json", "array of objects"),
        (b"[1, 2, 3]", "numbers.json", 400, "invalid_json", "array of objects"),
    ],
)
def test_bad_uploads_answer_clear_errors_and_leave_nothing(
    client, auth, leftovers, content, file_name, status, code, needle
):
    before = leftovers()
    error = assert_error(upload(client, auth, content, file_name), status, code)
    assert needle in error["message"].lower()
    assert leftovers() == before


def test_upload_without_file_part(client, auth, leftovers):
    before = leftovers()
    response = client.post("/api/v1/datasets", headers=auth, data={"name": "x"}, content_type="multipart/form-data")
    assert "file" in assert_error(response, 400, "missing_file")["message"]
    assert leftovers() == before


def test_upload_over_the_size_limit_is_413(client, auth, leftovers):
    before = leftovers()
    big = b"a,b\n" + b"1234567890,1234567890\n" * (6 * 1024 * 1024 // 22)
    error = assert_error(upload(client, auth, big, "big.csv"), 413, "payload_too_large")
    assert "5 MB" in error["message"] and error["details"]["limit_mb"] == 5
    assert leftovers() == before


def test_chunked_upload_over_the_limit_is_413(live_server, auth, leftovers):
    """No Content-Length: the limit still holds while the body streams in."""
    boundary = "bnd"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'.encode()
    line = b"1234567890,1234567890\n"

    def chunks():
        yield head + b"a,b\n"
        for _ in range(6 * 1024 * 1024 // (len(line) * 1000)):
            yield line * 1000
        yield f"\r\n--{boundary}--\r\n".encode()

    before = leftovers()
    response = requests.post(
        f"{live_server}/api/v1/datasets",
        headers={**auth, "Content-Type": f"multipart/form-data; boundary={boundary}"},
        data=chunks(),  # a generator: requests sends it with Transfer-Encoding: chunked
        timeout=60,
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    # The server removes the spooled part just after it has sent the response.
    deadline = time.monotonic() + 5
    while leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers() == before


def test_spooled_upload_is_removed_once_the_response_is_sent(client, auth, leftovers):
    """Removing a large body takes time the client should not wait for: it goes after the 201."""
    before_incoming = leftovers()[2]
    response = client.post(
        "/api/v1/datasets",
        headers=auth,
        content_type="multipart/form-data",
        data={"file": (io.BytesIO(b"a,b\n1,2\n"), "late.csv")},
        buffered=False,
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    spooled = [name for name in leftovers()[2] if name not in before_incoming]
    assert len(spooled) == 1 and spooled[0].endswith(".part")
    response.close()  # what the server does once the response is sent
    assert leftovers()[2] == before_incoming


def test_unsupported_content_type_is_415(client, auth):
    response = client.post("/api/v1/datasets", headers={**auth, "Content-Type": "text/plain"}, data="a,b")
    error = assert_error(response, 415, "unsupported_media_type")
    assert error["details"]["supported_formats"] == ["csv", "tsv", "json", "ndjson", "parquet", "xlsx"]


def test_json_records_validation(client, auth, leftovers):
    before = leftovers()
    error = assert_error(client.post("/api/v1/datasets", headers=auth, json={"records": []}), 422, "validation_error")
    assert "name" in error["details"]["json"] and "records" in error["details"]["json"]
    error = assert_error(
        client.post("/api/v1/datasets", headers=auth, json={"name": "x", "records": [{"a": 1}, 5]}),
        422,
        "validation_error",
    )
    response = client.post(
        "/api/v1/datasets",
        headers={**auth, "Content-Type": "application/json"},
        data='{"name": "x", "records": [{"a": 1}',
    )
    assert_error(response, 400, "invalid_json")
    assert leftovers() == before


@pytest.mark.parametrize("value", ["yes", "maybe", "2", "", "TRUE "])
def test_sync_choice_other_than_true_false_1_0_is_422(client, auth, leftovers, value):
    before = leftovers()
    error = assert_error(upload(client, auth, "a\n1\n", "choice.csv", sync=value), 422, "validation_error")
    assert "sync" in error["message"] and "true or false" in error["message"]
    assert "sync" in error["details"]["form"]
    error = assert_error(
        client.post("/api/v1/datasets", headers=auth, json={"name": "x", "records": [{"a": 1}], "sync": value}),
        422,
        "validation_error",
    )
    assert "sync" in error["details"]["json"]
    assert leftovers() == before


def test_missing_and_wrong_keys_are_401(client):
    assert_error(client.get("/api/v1/datasets"), 401, "unauthorized")
    assert_error(client.get("/api/v1/datasets", headers={"Authorization": "Bearer lks_nope_nope"}), 401, "unauthorized")
    assert_error(client.get("/api/v1/datasets", headers={"Authorization": "Basic abc"}), 401, "unauthorized")


def test_revoked_key_is_401(app, client, tenant, auth):
    from service.auth import revoke_key
    from service.db import session_scope

    assert client.get("/api/v1/datasets", headers=auth).status_code == 200
    with app.app_context(), session_scope() as session:
        assert revoke_key(session, tenant["key"].split("_")[1])
    assert_error(client.get("/api/v1/datasets", headers=auth), 401, "unauthorized")


def test_tenants_see_only_their_own_datasets(client, auth, other_auth):
    dataset_id = upload(client, auth, "a\n1\n", "mine.csv").get_json()["id"]
    for path in ("", "/sync", "/rows"):
        assert_error(client.get(f"/api/v1/datasets/{dataset_id}{path}", headers=other_auth), 404, "not_found")
    assert client.get("/api/v1/datasets", headers=other_auth).get_json()["total"] == 0
    assert_error(client.get(f"/api/v1/datasets/{uuid.uuid4()}", headers=auth), 404, "not_found")


@pytest.mark.usefixtures("worker")
def test_list_paginates_and_filters_by_status(client, auth):
    ids = [upload(client, auth, f"a\n{i}\n", f"d{i}.csv").get_json()["id"] for i in range(3)]
    for dataset_id in ids:
        wait_for_sync(client, auth, dataset_id)
    page = client.get("/api/v1/datasets?limit=2&offset=0", headers=auth).get_json()
    assert page["total"] == 3 and len(page["items"]) == 2 and page["limit"] == 2
    rest = client.get("/api/v1/datasets?limit=2&offset=2", headers=auth).get_json()
    assert {d["id"] for d in page["items"] + rest["items"]} == set(ids)
    assert client.get("/api/v1/datasets?status=synced", headers=auth).get_json()["total"] == 3
    assert client.get("/api/v1/datasets?status=failed", headers=auth).get_json()["total"] == 0
    assert_error(client.get("/api/v1/datasets?status=bogus", headers=auth), 422, "unprocessable_entity")
    assert_error(client.get("/api/v1/datasets?limit=0", headers=auth), 422, "unprocessable_entity")


def test_preview_rows_from_local_parquet(client, auth):
    content = "n,word\n" + "".join(f"{i},w{i}\n" for i in range(250))
    dataset_id = upload(client, auth, content, "words.csv").get_json()["id"]
    body = client.get(f"/api/v1/datasets/{dataset_id}/rows?limit=3&offset=100", headers=auth).get_json()
    assert body["columns"] == ["n", "word"]
    assert body["rows"] == [{"n": "100", "word": "w100"}, {"n": "101", "word": "w101"}, {"n": "102", "word": "w102"}]
    assert body["total"] == 250
    assert client.get(f"/api/v1/datasets/{dataset_id}/rows?offset=1000", headers=auth).get_json()["rows"] == []


def test_internal_file_endpoint(app, client, auth):
    created = upload(client, auth, "a\n1\n", "internal.csv").get_json()
    url = f"/internal/storage/datasets/{created['file_name']}"
    assert_error(client.get(url), 401, "unauthorized")
    assert_error(client.get(url, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
    good = {"Authorization": f"Bearer {INTERNAL_KEY}"}
    response = client.get(url, headers=good)
    assert response.status_code == 200
    stored = Path(app.config["STORAGE_DIR"]) / created["file_name"]
    assert response.data == stored.read_bytes() and response.data[:4] == b"PAR1"
    for bad in ("..%2F..%2Fetc%2Fpasswd", "notes.txt", "..", f"{created['file_name']}.bak"):
        assert client.get(f"/internal/storage/datasets/{bad}", headers=good).status_code in (400, 404)
    assert_error(client.get("/internal/storage/datasets/not-a-file.parquet", headers=good), 400, "invalid_file_name")
    assert_error(client.get(f"/internal/storage/datasets/{uuid.uuid4()}.parquet", headers=good), 404, "not_found")


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "checks": {"postgres": "ok", "redis": "ok"}}


def test_openapi_is_generated_from_the_schemas(client):
    spec = client.get("/api/openapi.json").get_json()
    assert spec["info"]["title"] == "lakesync"
    paths = spec["paths"]
    for path in (
        "/api/v1/datasets",
        "/api/v1/datasets/{dataset_id}",
        "/api/v1/datasets/{dataset_id}/sync",
        "/api/v1/datasets/{dataset_id}/rows",
        "/internal/storage/datasets/{file_name}",
        "/healthz",
        "/readyz",
    ):
        assert path in paths, path
    post = paths["/api/v1/datasets"]["post"]
    assert set(post["requestBody"]["content"]) == {
        "multipart/form-data",
        "application/json",
        "text/csv",
        "text/tab-separated-values",
        "application/x-ndjson",
        "application/vnd.apache.parquet",
        "application/x-parquet",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    }
    assert {p["name"] for p in post["parameters"] if p["in"] == "query"} == {
        "name",
        "description",
        "sync",
        "sheet",
        "records_path",
        "bad_rows",
        "schema_hints",
    }
    assert "SyncStatusResponse" in json.dumps(spec["components"]["schemas"])
    schemas = spec["components"]["schemas"]
    for upload_schema in ("DatasetUploadRequest", "DatasetRecordsRequest"):
        assert schemas[upload_schema]["properties"]["sync"]["type"] == ["boolean", "null"]
    assert "local_only" in schemas["DatasetResponse"]["properties"]["sync_status"]["enum"]
    assert "local_only" in schemas["BulkResyncRequest"]["properties"]["status"]["enum"]
    assert "local_only" in schemas["IntegrationStatusResponse"]["required"]
    assert "409" in paths["/api/v1/sync"]["post"]["responses"]
    assert "409" in paths["/api/v1/datasets/{dataset_id}/sync"]["post"]["responses"]
    assert client.get("/api/docs").status_code == 200


@pytest.mark.parametrize(
    ("records", "code"),
    [
        ([{"k": "x\udaf2y"}], "invalid_text"),
        ([{"\udaf2": 1}], "invalid_text"),
        ([{"a\u0000b": 1}], "invalid_column_name"),
    ],
)
def test_records_that_are_not_storable_text_are_400(client, auth, leftovers, records, code):
    before = leftovers()
    assert_error(client.post("/api/v1/datasets", headers=auth, json={"name": "x", "records": records}), 400, code)
    assert leftovers() == before


@pytest.mark.parametrize("name", ["a\u0000b", "x\udaf2"])
def test_names_and_descriptions_postgresql_cannot_store_are_422(client, auth, leftovers, name):
    before = leftovers()
    error = assert_error(
        client.post("/api/v1/datasets", headers=auth, json={"name": name, "records": [{"a": 1}]}),
        422,
        "validation_error",
    )
    assert "name" in error["details"]["json"]
    if "\x00" in name:  # a multipart body is bytes: it cannot spell a lone surrogate
        error = assert_error(upload(client, auth, "a\n1\n", description=name), 422, "validation_error")
        assert "description" in error["details"]["form"]
        error = assert_error(upload(client, auth, "a\n1\n", file_name=f"{name}.csv"), 422, "validation_error")
        assert "file name" in error["details"]["form"]["file"][0]
    assert leftovers() == before


def test_json_body_over_its_limit_is_413(client, auth, leftovers):
    before = leftovers()
    records = [{"payload": "x" * 1000}] * 3000  # about 3 MB; the test limit is 2 MB
    assert_error(
        client.post("/api/v1/datasets", headers=auth, json={"name": "big", "records": records}),
        413,
        "payload_too_large",
    )
    assert leftovers() == before


def test_too_many_multipart_parts_is_413(client, auth, leftovers):
    before = leftovers()
    data = {f"extra{i}": "x" for i in range(40)}
    data["file"] = (io.BytesIO(b"a\n1\n"), "parts.csv")
    response = client.post("/api/v1/datasets", headers=auth, data=data, content_type="multipart/form-data")
    assert_error(response, 413, "payload_too_large")
    assert leftovers() == before


def test_internal_files_open_with_a_signed_url_for_that_file_only(app, client, auth):
    from service.signing import sign

    created = upload(client, auth, "a\n1\n", "signed.csv").get_json()
    other = upload(client, auth, "a\n2\n", "other.csv").get_json()
    url = f"/internal/storage/datasets/{created['file_name']}"
    query = sign(app.config, created["file_name"])
    assert client.get(url, query_string=query).status_code == 200
    assert_error(
        client.get(f"/internal/storage/datasets/{other['file_name']}", query_string=query), 401, "unauthorized"
    )
    expired = sign(app.config, created["file_name"], now=time.time() - 2 * int(app.config["INTERNAL_URL_TTL"]))
    assert_error(client.get(url, query_string=expired), 401, "unauthorized")
    # A trailing newline is not part of a stored name.
    good = {"Authorization": f"Bearer {INTERNAL_KEY}"}
    assert_error(client.get(f"{url}%0a", headers=good), 400, "invalid_file_name")
    app.config["INTERNAL_ACCEPT_BEARER"] = False
    try:
        assert_error(client.get(url, headers=good), 401, "unauthorized")
        assert client.get(url, query_string=query).status_code == 200
    finally:
        app.config["INTERNAL_ACCEPT_BEARER"] = True
