"""Raw-body uploads: the file is the request body, its format named by the Content-Type."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import time
from urllib.parse import urlencode

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from deltalake import DeltaTable

from service.api.uploads import XLSX
from tests.corpus.xlsx import write_xlsx
from tests.helpers import assert_error, upload, wait_for_sync

URL = "/api/v1/datasets"
ROWS = [{"id": 1, "city": "Oslo", "amount": 1.5}, {"id": 2, "city": "Lima", "amount": 2.25}]


def _parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(ROWS), sink)
    return sink.getvalue()


BODIES = {
    "text/csv": b"id,city,amount\n1,Oslo,1.5\n2,Lima,2.25\n",
    "text/tab-separated-values": b"id\tcity\tamount\n1\tOslo\t1.5\n2\tLima\t2.25\n",
    "application/x-ndjson": b"".join(json.dumps(r).encode() + b"\n" for r in ROWS),
    "application/json": json.dumps(ROWS).encode(),
    "application/vnd.apache.parquet": _parquet_bytes(),
}
FORMATS = {
    "text/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/x-ndjson": "ndjson",
    "application/json": "json",
    "application/vnd.apache.parquet": "parquet",
}


def post_raw(client, auth, body: bytes, content_type: str, query: str = "", **headers):
    return client.post(f"{URL}{query}", headers={**auth, "Content-Type": content_type, **headers}, data=body)


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("content_type", list(BODIES))
def test_raw_body_of_each_format_reaches_synced(client, auth, content_type):
    query = "?name=cities&description=two%20rows&sync=true"
    response = post_raw(client, auth, BODIES[content_type], content_type, query)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["name"] == "cities" and created["description"] == "two rows"
    assert created["source_format"] == FORMATS[content_type]
    assert created["row_count"] == 2
    assert [c["name"] for c in created["columns"]] == ["id", "city", "amount"]
    assert response.headers["Location"].endswith(created["id"])
    status = wait_for_sync(client, auth, created["id"])
    assert status["status"] == "synced", status
    assert status["row_count_bronze"] == status["row_count_silver"] == 2
    rows = client.get(f"{URL}/{created['id']}/rows", headers=auth).get_json()["rows"]
    assert [r["city"] for r in rows] == ["Oslo", "Lima"]


def test_raw_upload_takes_its_file_name_from_content_disposition(client, auth):
    response = post_raw(
        client,
        auth,
        BODIES["text/csv"],
        "text/csv",
        "?sync=false",
        **{"Content-Disposition": 'attachment; filename="sales q1.csv"'},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["name"] == "sales q1" and created["original_file_name"] == "sales q1.csv"
    assert created["sync_status"] == "local_only"


def test_raw_upload_without_labels_is_named_dataset(client, auth):
    response = post_raw(client, auth, BODIES["text/csv"], "text/csv; charset=utf-8", "?sync=false")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["name"] == "dataset" and response.get_json()["original_file_name"] is None


def test_tsv_content_type_picks_the_tab_delimiter(client, auth):
    """A single-column-looking body: the content type, not a guess, decides the delimiter."""
    response = post_raw(client, auth, b"a\tb\n1\t2\n", "text/tab-separated-values", "?sync=false")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert [c["name"] for c in response.get_json()["columns"]] == ["a", "b"]


def test_application_json_is_records_unless_the_query_or_a_disposition_names_a_file(client, auth, leftovers):
    before = leftovers()
    # No query parameter and no Content-Disposition: a records body, which is an object.
    error = assert_error(post_raw(client, auth, BODIES["application/json"], "application/json"), 400, "invalid_json")
    assert "records" in error["message"]
    assert leftovers() == before
    records = json.dumps({"name": "recs", "records": ROWS}).encode()
    response = post_raw(client, auth, records, "application/json")
    assert response.status_code == 201 and response.get_json()["row_count"] == 2
    # The same JSON array with a Content-Disposition header is a file.
    response = post_raw(
        client,
        auth,
        BODIES["application/json"],
        "application/json",
        **{"Content-Disposition": "attachment; filename=rows.json"},
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["name"] == "rows" and response.get_json()["source_format"] == "json"
    # A records body sent as a file is a file whose one array of records is found by itself.
    response = post_raw(client, auth, records, "application/json", "?name=x")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["records_path"] == "records" and response.get_json()["row_count"] == 2


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "needle"),
    [
        (b"id,city\n1,Oslo\n2,Lima,extra\n", "text/csv", 400, "malformed_csv", "line 3"),
        (b"", "text/csv", 400, "empty_file", "empty"),
        (b'{"a": 1}\n{"a": \n', "application/x-ndjson", 400, "invalid_json", "line 2"),
        (b"PAR1 not really", "application/vnd.apache.parquet", 400, "invalid_parquet", "parquet"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "text/csv", 415, "unsupported_format", "png"),
    ],
)
def test_bad_raw_bodies_answer_clear_errors_and_leave_nothing(
    client, auth, leftovers, body, content_type, status, code, needle
):
    before = leftovers()
    error = assert_error(post_raw(client, auth, body, content_type, "?name=bad"), status, code)
    assert needle in error["message"].lower()
    assert leftovers() == before


def test_unknown_content_type_is_415_listing_the_raw_types(client, auth, leftovers):
    before = leftovers()
    error = assert_error(
        post_raw(client, auth, b"a,b\n1,2\n", "application/octet-stream", "?name=x"), 415, "unsupported_media_type"
    )
    assert "text/csv" in error["message"] and "multipart/form-data" in error["message"]
    assert leftovers() == before


def test_bad_query_labels_are_422_naming_the_parameter(client, auth, leftovers):
    before = leftovers()
    error = assert_error(post_raw(client, auth, BODIES["text/csv"], "text/csv", "?sync=maybe"), 422, "validation_error")
    assert "sync" in error["details"]["query"]
    error = assert_error(post_raw(client, auth, BODIES["text/csv"], "text/csv", "?name="), 422, "validation_error")
    assert "name" in error["details"]["query"]
    assert leftovers() == before


def test_raw_body_over_the_upload_limit_is_413(client, auth, leftovers):
    """MAX_UPLOAD_MB is 5 in the tests; a raw JSON file is bounded by it, not by MAX_JSON_BODY_MB (2)."""
    before = leftovers()
    big = b"a,b\n" + b"1234567890,1234567890\n" * (6 * 1024 * 1024 // 22)
    error = assert_error(post_raw(client, auth, big, "text/csv", "?name=big"), 413, "payload_too_large")
    assert "5 MB" in error["message"] and error["details"]["limit_mb"] == 5
    rows = json.dumps([{"payload": "x" * 1000}] * 3000).encode()  # about 3 MB: over 2, under 5
    response = post_raw(client, auth, rows, "application/json", "?name=three_mb&sync=false")
    assert response.status_code == 201, response.get_data(as_text=True)
    assert response.get_json()["row_count"] == 3000
    assert leftovers()[2] == before[2]


def test_chunked_raw_body_over_the_limit_is_413(live_server, auth, leftovers):
    """No Content-Length: the limit holds while the body streams in, and the spool is removed."""
    line = b"1234567890,1234567890\n"

    def chunks():
        yield b"a,b\n"
        for _ in range(6 * 1024 * 1024 // (len(line) * 1000)):
            yield line * 1000

    before = leftovers()
    response = requests.post(
        f"{live_server}{URL}?name=big", headers={**auth, "Content-Type": "text/csv"}, data=chunks(), timeout=60
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large"
    deadline = time.monotonic() + 5
    while leftovers() != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert leftovers() == before


@pytest.mark.usefixtures("worker")
def test_curl_data_binary_uploads_a_file(live_server, auth, client, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_bytes(b"order_id,total\n" + b"".join(f"{i},{i * 1.5}\n".encode() for i in range(1, 501)))
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "-w",
            "\n%{http_code}",
            "-H",
            f"Authorization: {auth['Authorization']}",
            "-H",
            "Content-Type: text/csv",
            "--data-binary",
            f"@{path}",
            f"{live_server}{URL}?name=orders",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    body, status = result.stdout.rsplit("\n", 1)
    assert status == "201", body
    created = json.loads(body)
    assert created["row_count"] == 500 and created["name"] == "orders"
    assert wait_for_sync(client, auth, created["id"])["row_count_silver"] == 500


# --- the upload options in the query string ----------------------------------------------

BAD_ROWS_CSV = b"id,city\n1,Oslo\n## a comment ##\n2,Lima\n3,Rome,extra\n"
HINTED = b"Order ID,Amount,Day\n1,10.50,2024-01-05\n2,n/a,2024-02-30\n"
WRAPPED = {"data": {"items": [{"a": 1}, {"a": 2}]}, "links": [{"self": "x"}], "included": [{"id": 7}]}


def _workbook() -> bytes:
    buffer = io.BytesIO()
    write_xlsx(buffer, {"Notes": [["about"], ["prices"]], "Prices": [["sku", "price"], ["A-1", 9.5], ["A-2", 10]]})
    return buffer.getvalue()


def _synced(client, auth, created: dict) -> dict:
    status = wait_for_sync(client, auth, created["id"])
    assert status["status"] == "synced", status
    assert status["row_count_bronze"] == created["row_count"]
    return status


@pytest.mark.usefixtures("worker")
@pytest.mark.parametrize("compress", [None, gzip.compress], ids=["plain", "gzip"])
def test_bad_rows_quarantine_in_the_query(client, auth, compress):
    body = compress(BAD_ROWS_CSV) if compress else BAD_ROWS_CSV
    response = post_raw(client, auth, body, "text/csv", "?name=cities&bad_rows=quarantine")
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["row_count"] == 2 and created["bad_row_count"] == 2
    assert created["compression"] == ("gzip" if compress else None)
    page = client.get(f"{URL}/{created['id']}/bad-rows", headers=auth).get_json()
    assert [(r["line"], r["raw"]) for r in page["items"]] == [(3, "## a comment ##"), (5, "3,Rome,extra")]
    status = _synced(client, auth, created)
    assert status["quarantine_table"] == status["bronze_table"] + "_quarantine"
    quarantined = DeltaTable(status["bronze_location"] + "_quarantine").to_pyarrow_table().to_pylist()
    assert sorted(r["line"] for r in quarantined) == [3, 5]
    # Without the option the same body is refused at its first bad row.
    error = assert_error(post_raw(client, auth, body, "text/csv", "?name=cities"), 400, "malformed_csv")
    assert error["details"]["line"] == 3


@pytest.mark.usefixtures("worker")
def test_records_path_in_the_query(client, auth):
    body = json.dumps(WRAPPED).encode()
    # Two arrays of objects at the top: the uploader names the one that holds the records.
    error = assert_error(post_raw(client, auth, body, "application/json", "?name=page"), 400, "invalid_json")
    assert "records_path" in error["message"]
    response = post_raw(client, auth, body, "application/json", "?records_path=data.items")
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["records_path"] == "data.items" and created["row_count"] == 2 and created["source_format"] == "json"
    _synced(client, auth, created)
    rows = client.get(f"{URL}/{created['id']}/rows", headers=auth).get_json()["rows"]
    assert [r["a"] for r in rows] == [1, 2]


@pytest.mark.usefixtures("worker")
def test_schema_hints_in_the_query(client, auth):
    hints = {"amount": "decimal(10,2)", "Day": "date", "order_id": "string"}
    query = "?" + urlencode({"name": "orders", "schema_hints": json.dumps(hints)})
    response = post_raw(client, auth, HINTED, "text/csv", query)
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    types = {c["name"]: c["type"] for c in created["columns"]}
    assert types == {"order_id": "string", "amount": "decimal(10,2)", "day": "date"}
    status = _synced(client, auth, created)
    assert status["values_rescued"] == 2
    silver = {r["order_id"]: r for r in DeltaTable(status["silver_location"]).to_pyarrow_table().to_pylist()}
    assert str(silver["1"]["amount"]) == "10.50" and silver["1"]["day"].isoformat() == "2024-01-05"
    assert json.loads(silver["2"]["_rescued_data"]) == {"amount": "n/a", "day": "2024-02-30"}


@pytest.mark.usefixtures("worker")
def test_sheet_in_the_query(client, auth):
    first = post_raw(client, auth, _workbook(), XLSX, "?name=prices&sync=false")
    assert first.status_code == 201, first.get_data(as_text=True)
    assert first.get_json()["sheet"] == "Notes" and first.get_json()["source_format"] == "xlsx"
    response = post_raw(client, auth, _workbook(), XLSX, "?name=prices&sheet=Prices")
    assert response.status_code == 201, response.get_data(as_text=True)
    created = response.get_json()
    assert created["sheet"] == "Prices" and created["row_count"] == 2
    _synced(client, auth, created)
    rows = client.get(f"{URL}/{created['id']}/rows", headers=auth).get_json()["rows"]
    assert [(r["sku"], r["price"]) for r in rows] == [("A-1", "9.5"), ("A-2", "10")]


# (option, value, body, its Content-Type, the file name of the same body sent as multipart)
BAD_OPTIONS = [
    ("bad_rows", "skip", BODIES["text/csv"], "text/csv", "a.csv"),
    ("schema_hints", "{not json", HINTED, "text/csv", "a.csv"),
    ("schema_hints", "[1, 2]", HINTED, "text/csv", "a.csv"),
    ("schema_hints", json.dumps({"amount": "money"}), HINTED, "text/csv", "a.csv"),
    ("schema_hints", json.dumps({"total": "double"}), HINTED, "text/csv", "a.csv"),
    ("records_path", "", BODIES["application/json"], "application/json", "a.json"),
    ("records_path", "data.items", BODIES["text/csv"], "text/csv", "a.csv"),
    ("records_path", "data.rows", json.dumps(WRAPPED).encode(), "application/json", "a.json"),
    ("sheet", "", BODIES["text/csv"], "text/csv", "a.csv"),
    ("sheet", "Prices", BODIES["text/csv"], "text/csv", "a.csv"),
    ("sheet", "Sales", _workbook(), XLSX, "a.xlsx"),
]


@pytest.mark.parametrize(("option", "value", "body", "content_type", "file_name"), BAD_OPTIONS)
def test_bad_options_in_the_query_answer_as_in_a_form(
    client, auth, leftovers, option, value, body, content_type, file_name
):
    before = leftovers()
    raw = post_raw(client, auth, body, content_type, "?" + urlencode({"name": "x", option: value}))
    form = upload(client, auth, body, file_name, name="x", **{option: value})
    assert form.status_code in (400, 422), form.get_data(as_text=True)
    raw_error = assert_error(raw, form.status_code, form.get_json()["error"]["code"])
    assert raw_error["message"] == form.get_json()["error"]["message"]
    assert option in json.dumps(raw_error)
    if raw_error["message"].startswith("invalid request"):  # the schema's check names where the value was
        assert option in raw_error["details"]["query"] and option in form.get_json()["error"]["details"]["form"]
    assert leftovers() == before
