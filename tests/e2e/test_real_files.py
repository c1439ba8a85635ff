"""Files as colleagues export them, through the API and the worker into Delta: quotes that
are data, a header with a line break in a CRLF file, JSON records inside an object,
compressed uploads, UTF-16 text and Excel workbooks."""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
from pathlib import Path

import pytest
import zstandard
from deltalake import DeltaTable

from tests.corpus.xlsx import write_xlsx
from tests.helpers import upload, wait_for_sync

pytestmark = pytest.mark.usefixtures("worker")

# Free text that starts with a double quote, as package descriptions often do; the quote
# before "AGENT" is data, and no quote here ever closes a field.
TSV_BARE_QUOTES = (
    "package\tversion\tsummary\n"
    + "".join(f"pkg{i}\t1.{i}\tplain summary {i}\n" for i in range(300))
    + 'agentk\t0.1\t"AGENT" K is a framework\n'
    + 'mooi\t2.0\t"Mooi & Anders": design tokens\n'
    + 'inch\t1.0\tA 5" screen, "bright"\n'
)


def synced(client, auth, body: dict) -> dict:
    status = wait_for_sync(client, auth, body["id"])
    assert status["status"] == "synced", status
    assert status["row_count_bronze"] == body["row_count"]
    return status


def bronze_rows(status: dict) -> list[dict]:
    return DeltaTable(status["bronze_location"]).to_pyarrow_table().to_pylist()


def test_tsv_whose_quotes_are_data_is_read_whole(client, auth):
    response = upload(client, auth, TSV_BARE_QUOTES, "packages.tsv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["row_count"] == 303
    assert body["source_format"] == "tsv"
    assert body["dialect"] == {"delimiter": "\t", "quote": None, "escape": None, "header_line": 1, "encoding": "utf-8"}
    summaries = {r["package"]: r["summary"] for r in bronze_rows(synced(client, auth, body))}
    assert summaries["agentk"] == '"AGENT" K is a framework'
    assert summaries["mooi"] == '"Mooi & Anders": design tokens'
    assert summaries["inch"] == 'A 5" screen, "bright"'


def test_csv_with_a_stray_quote_inside_a_field(client, auth):
    content = 'sku,title,price\nA1,"TV, 40""",300\nA2,Phone 5" screen,200\n'
    body = upload(client, auth, content, "products.csv").get_json()
    assert body["row_count"] == 2 and body["dialect"]["quote"] == '"'
    titles = [r["title"] for r in bronze_rows(synced(client, auth, body))]
    assert sorted(titles) == ['Phone 5" screen', 'TV, 40"']


def test_crlf_file_with_a_line_break_in_a_quoted_header_keeps_every_row(client, auth):
    content = b'id,"note\nsecond line",amount\r\n1,n1,1.5\r\n2,n2,2.5\r\n3,"multi\r\nline",3.5\r\n'
    response = upload(client, auth, content, "notes.csv")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["row_count"] == 3
    assert [c["source_name"] for c in body["columns"]] == ["id", "note\nsecond line", "amount"]
    rows = sorted(bronze_rows(synced(client, auth, body)), key=lambda r: r["id"])
    assert [r["amount"] for r in rows] == ["1.5", "2.5", "3.5"]
    assert rows[2]["note\nsecond line"] == "multi\r\nline"


def test_unclosed_quote_in_a_csv_is_still_refused_with_its_line(client, auth):
    response = upload(client, auth, 'a,b\n1,2\n"3,4\n5,6\n', "broken.csv")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["line"] == 3


COUNTRIES = {
    "3166-1": [
        {"alpha_2": "AD", "name": "Andorra", "numeric": "020"},
        {"alpha_2": "AE", "name": "United Arab Emirates", "numeric": "784"},
        {"alpha_2": "AF", "name": "Afghanistan", "numeric": "004"},
    ]
}


def test_json_object_wrapping_one_array_of_records(client, auth):
    body = upload(client, auth, json.dumps(COUNTRIES, indent=2), "iso_3166-1.json").get_json()
    assert body["row_count"] == 3 and body["records_path"] == "3166-1"
    assert body["dialect"] is None
    names = sorted(r["name"] for r in bronze_rows(synced(client, auth, body)))
    assert names == ["Afghanistan", "Andorra", "United Arab Emirates"]
    again = client.get(f"/api/v1/datasets/{body['id']}", headers=auth).get_json()
    assert again["records_path"] == "3166-1"


def test_records_path_names_a_nested_array(client, auth):
    document = {
        "meta": {"count": 2},
        "data": {"items": [{"a": 1}, {"a": 2}]},
        "links": [{"self": "x"}],
        "included": [{"id": 7}],
    }  # two arrays of objects at the top: the uploader chooses
    content = json.dumps(document)
    refused = upload(client, auth, content, "page.json")
    assert refused.status_code == 400
    assert "records_path" in refused.get_json()["error"]["message"]
    body = upload(client, auth, content, "page.json", records_path="data.items").get_json()
    assert body["row_count"] == 2 and body["records_path"] == "data.items"
    missing = upload(client, auth, content, "page.json", records_path="data.rows")
    assert missing.status_code == 400
    assert missing.get_json()["error"]["code"] == "records_path_not_found"


@pytest.mark.parametrize(
    ("compress", "suffix", "name"),
    [
        (gzip.compress, ".gz", "gzip"),
        (lambda data: zstandard.ZstdCompressor().compress(data), ".zst", "zstd"),
    ],
)
def test_compressed_uploads(client, auth, compress, suffix, name):
    csv_body = compress(("id;city\n" + "".join(f"{i};Zürich\n" for i in range(1000))).encode())
    body = upload(client, auth, csv_body, f"cities.csv{suffix}").get_json()
    assert body["row_count"] == 1000 and body["compression"] == name
    assert body["source_format"] == "csv" and body["dialect"]["delimiter"] == ";"
    assert synced(client, auth, body)["row_count_bronze"] == 1000
    ndjson = compress(b'{"a": 1}\n{"a": 2}\n')
    body = upload(client, auth, ndjson, f"events.ndjson{suffix}").get_json()
    assert body["row_count"] == 2 and body["source_format"] == "ndjson"


def test_a_compression_bomb_is_413_and_leaves_nothing(client, auth, app):
    bomb = gzip.compress(b"a,b\n" + b"1,2\n" * (20 << 20))  # 80 MB of text in well under 1 MB
    response = upload(client, auth, bomb, "bomb.csv.gz")
    assert response.status_code == 413, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "uncompressed_too_large" and error["details"]["max_ratio"] == 100


def test_damaged_gzip_is_400(client, auth):
    response = upload(client, auth, gzip.compress(b"a,b\n1,2\n" * 1000)[:-20], "cut.csv.gz")
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_compressed_file"


def test_utf16_csv_is_read_and_reported(client, auth):
    body = upload(client, auth, "name\tcity\nJosé\tZürich\nAnna\tMalmö\n".encode("utf-16"), "people.txt").get_json()
    assert body["row_count"] == 2 and body["dialect"]["encoding"] == "utf-16-le"
    rows = bronze_rows(synced(client, auth, body))
    assert sorted(r["city"] for r in rows) == ["Malmö", "Zürich"]


def workbook() -> bytes:
    buffer = io.BytesIO()
    write_xlsx(
        buffer,
        {
            "Notes": [["about"], ["prices of March"]],
            "Prices": [
                ["sku", "price", "in stock", "since", "checked at"],
                ["A-1", 9.5, True, dt.date(2024, 3, 1), dt.datetime(2024, 3, 1, 12, 30)],
                [],
                ["A-2", 10, False, dt.date(2023, 12, 31), None],
            ],
        },
    )
    return buffer.getvalue()


def test_excel_workbook_first_sheet_and_named_sheet(client, auth):
    first = upload(client, auth, workbook(), "prices.xlsx").get_json()
    assert first["source_format"] == "xlsx" and first["sheet"] == "Notes" and first["row_count"] == 1
    body = upload(client, auth, workbook(), "prices.xlsx", sheet="Prices").get_json()
    assert body["sheet"] == "Prices" and body["row_count"] == 2
    rows = sorted(bronze_rows(synced(client, auth, body)), key=lambda r: r["sku"])
    assert rows[0]["price"] == "9.5" and rows[0]["in stock"] == "true"
    assert rows[0]["since"] == "2024-03-01" and rows[0]["checked at"] == "2024-03-01T12:30:00"
    assert rows[1]["price"] == "10" and rows[1]["checked at"] == ""
    missing = upload(client, auth, workbook(), "prices.xlsx", sheet="Sales")
    assert missing.status_code == 422
    assert "Prices" in missing.get_json()["error"]["message"]


VECTORS = (
    'id,input,expected\n1,abc,ABC\n## section 2: mixed case ##\n2,aBc,ABC\n3,"x"y,XY\n4,def,DEF,extra\n5,ghi,GHI\n'
)


def test_comment_lines_refuse_the_file_by_default(client, auth):
    response = upload(client, auth, VECTORS, "vectors.csv")
    assert response.status_code == 400
    assert response.get_json()["error"]["details"]["line"] == 3


def test_comment_lines_are_quarantined_on_request(client, auth):
    response = upload(client, auth, VECTORS, "vectors.csv", bad_rows="quarantine")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["row_count"] == 3 and body["bad_row_count"] == 3
    page = client.get(f"/api/v1/datasets/{body['id']}/bad-rows?limit=2", headers=auth).get_json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [(r["line"], r["raw"]) for r in page["items"]] == [(3, "## section 2: mixed case ##"), (5, '3,"x"y,XY')]
    assert "expected 3 fields, found 1" in page["items"][0]["reason"]
    rest = client.get(f"/api/v1/datasets/{body['id']}/bad-rows?offset=2", headers=auth).get_json()
    assert [(r["line"], r["raw"]) for r in rest["items"]] == [(6, "4,def,DEF,extra")]
    status = synced(client, auth, body)
    assert sorted(r["id"] for r in bronze_rows(status)) == ["1", "2", "5"]


def test_ndjson_lines_that_are_not_objects_are_quarantined(client, auth):
    content = '{"a": 1}\nnot json\n{"a": 2}\n[1, 2]\n'
    body = upload(client, auth, content, "events.ndjson", bad_rows="quarantine").get_json()
    assert body["row_count"] == 2 and body["bad_row_count"] == 2
    page = client.get(f"/api/v1/datasets/{body['id']}/bad-rows", headers=auth).get_json()
    assert [r["line"] for r in page["items"]] == [2, 4]


def test_all_bad_or_too_many_bad_rows_is_still_400(client, auth):
    all_bad = "a,b\n1\n2\n3\n"
    error = upload(client, auth, all_bad, "bad.csv", bad_rows="quarantine").get_json()["error"]
    assert error["code"] == "too_many_bad_rows" and error["details"]["lines"] == [2, 3, 4]
    many = "a,b\n" + "1,2\n" * 10 + "x\n" * 10_001
    error = upload(client, auth, many, "many.csv", bad_rows="quarantine").get_json()["error"]
    assert error["code"] == "too_many_bad_rows" and error["details"]["limit"] == 10_000
    assert error["details"]["lines"][:3] == [12, 13, 14]


def test_bad_rows_mode_is_checked(client, auth):
    response = upload(client, auth, "a\n1\n", "a.csv", bad_rows="skip")
    assert response.status_code == 422


def test_quarantined_rows_reach_a_delta_table_beside_bronze(client, auth, tenant):
    body = upload(client, auth, VECTORS, "vectors.csv", bad_rows="quarantine").get_json()
    status = synced(client, auth, body)
    assert status["bad_row_count"] == 3
    assert status["quarantine_table"] == status["bronze_table"] + "_quarantine"
    location = status["bronze_location"] + "_quarantine"
    rows = sorted(DeltaTable(location).to_pyarrow_table().to_pylist(), key=lambda r: r["line"])
    assert [(r["line"], r["raw"]) for r in rows] == [
        (3, "## section 2: mixed case ##"),
        (5, '3,"x"y,XY'),
        (6, "4,def,DEF,extra"),
    ]
    assert {r["_dataset_id"] for r in rows} == {body["id"]}
    clean = upload(client, auth, "a,b\n1,2\n", "clean.csv", bad_rows="quarantine").get_json()
    assert synced(client, auth, clean)["quarantine_table"] is None
    assert client.delete(f"/api/v1/datasets/{body['id']}", headers=auth).status_code == 204
    assert not (Path(location) / "_delta_log").exists()


HINTED = "Order ID,Amount,Day,Paid\n1,10.50,2024-01-05,true\n2,n/a?,2024-02-30,yes\n3,7,2024-03-01,false\n"


def test_schema_hints_type_silver_and_rescue_what_does_not_fit(client, auth):
    hints = {"amount": "decimal(10,2)", "Day": "date", "paid": "boolean", "order_id": "string"}
    response = upload(client, auth, HINTED, "orders.csv", schema_hints=json.dumps(hints))
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    types = {c["name"]: c["type"] for c in body["columns"]}
    assert types == {"order_id": "string", "amount": "decimal(10,2)", "day": "date", "paid": "boolean"}
    status = synced(client, auth, body)
    assert status["values_rescued"] == 3
    silver = DeltaTable(status["silver_location"]).to_pyarrow_table()
    assert str(silver.schema.field("amount").type) == "decimal128(10, 2)"
    rows = {r["order_id"]: r for r in silver.to_pylist()}
    assert str(rows["1"]["amount"]) == "10.50" and rows["1"]["_rescued_data"] is None
    assert rows["2"]["amount"] is None and rows["2"]["day"] is None and rows["2"]["paid"] is None
    assert json.loads(rows["2"]["_rescued_data"]) == {"amount": "n/a?", "day": "2024-02-30", "paid": "yes"}
    assert rows["3"]["day"].isoformat() == "2024-03-01"
    again = client.get(f"/api/v1/datasets/{body['id']}", headers=auth).get_json()
    assert {c["name"]: c["type"] for c in again["columns"]}["amount"] == "decimal(10,2)"
    # The hints hold for a resync.
    assert client.post(f"/api/v1/datasets/{body['id']}/sync", headers=auth).status_code == 202
    assert synced(client, auth, body)["values_rescued"] == 3


def test_schema_hints_in_a_json_records_body(client, auth):
    document = {
        "name": "scores",
        "records": [{"id": 1, "score": "0.5"}, {"id": 2, "score": "high"}],
        "schema_hints": {"score": "double"},
    }
    body = client.post("/api/v1/datasets", headers=auth, json=document).get_json()
    assert {c["name"]: c["type"] for c in body["columns"]}["score"] == "double"
    assert synced(client, auth, body)["values_rescued"] == 1


@pytest.mark.parametrize(
    ("hints", "needle"),
    [
        ({"amount": "money"}, "unknown type"),
        ({"amount": "decimal(50,2)"}, "unknown type"),
        ({"total": "double"}, "no such column"),
    ],
)
def test_bad_schema_hints_are_422(client, auth, hints, needle):
    response = upload(client, auth, HINTED, "orders.csv", schema_hints=json.dumps(hints))
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "validation_error" and needle in json.dumps(error)
