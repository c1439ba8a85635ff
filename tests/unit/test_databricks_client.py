"""The Databricks target's HTTP behaviour against the local emulator: auth, retries,
Retry-After, error classification, statement polling, staging and COPY INTO."""

from __future__ import annotations

import datetime as dt
import socket
import time
from email.utils import format_datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from service.lakehouse import databricks as dbx
from service.lakehouse.base import PermanentTargetError, TableRef, TransientTargetError
from service.lakehouse.http import (
    HttpClient,
    RemotePermanentError,
    RemoteTransientError,
    classify,
    error_details,
    parse_retry_after,
)
from service.transform.plan import SilverColumn, SilverPlan
from tests.emulators.databricks import DatabricksEmulator
from tests.support.contexts import sync_context


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    emu = DatabricksEmulator(tmp_path_factory.mktemp("dbx"), oauth_ttl=3600, pending_seconds=0.01).start()
    yield emu
    emu.stop()


@pytest.fixture(autouse=True)
def _clean_faults(emulator):
    emulator.clear_faults()
    yield
    emulator.clear_faults()


def target(emulator, tmp_path, **kwargs) -> dbx.DatabricksTarget:
    options = {
        "token": emulator.token,
        "scratch_dir": tmp_path,
        "statement_timeout": 10,
        "http_timeout": 5,
        "poll_interval": (0.02, 0.2),
    }
    options.update(kwargs)
    return dbx.DatabricksTarget(emulator.url, warehouse_id=emulator.warehouse_id, **options)


def _response(status: int, body=None, headers=None, text=None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.headers.update(headers or {})
    if body is not None:
        import json

        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
    else:
        response._content = (text or "").encode()
    return response


# --- Retry-After and classification ---------------------------------------------------


def test_retry_after_seconds_dates_and_garbage():
    now = dt.datetime(2024, 1, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after("-4") == 0.0
    assert parse_retry_after(format_datetime(now + dt.timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - dt.timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("nan") is None


@pytest.mark.parametrize(
    "status, body, headers, kind, retry_after",
    [
        (
            429,
            {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"},
            {"Retry-After": "2"},
            RemoteTransientError,
            2.0,
        ),
        (503, {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "try later"}, {}, RemoteTransientError, None),
        (
            400,
            {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "warehouse starting"},
            {},
            RemoteTransientError,
            None,
        ),
        (500, {"error_code": "INTERNAL_ERROR", "message": "oops"}, {}, RemoteTransientError, None),
        (502, None, {}, RemoteTransientError, None),
        (401, {"error_code": "UNAUTHENTICATED", "message": "Credential was not sent"}, {}, RemotePermanentError, None),
        (403, {"error_code": "PERMISSION_DENIED", "message": "Invalid access token."}, {}, RemotePermanentError, None),
        (400, {"error_code": "INVALID_PARAMETER_VALUE", "message": "bad"}, {}, RemotePermanentError, None),
        (404, {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no warehouse"}, {}, RemotePermanentError, None),
    ],
)
def test_classification(status, body, headers, kind, retry_after):
    exc = classify("Databricks", _response(status, body, headers, text="Bad Gateway"), "a call")
    assert type(exc) is kind
    assert exc.status == status
    if body:
        assert body["message"] in str(exc)
    if kind is RemoteTransientError:
        assert isinstance(exc, TransientTargetError) and exc.retry_after == retry_after
    else:
        assert isinstance(exc, PermanentTargetError)


def test_error_details_of_the_known_shapes():
    assert error_details(_response(400, {"error_code": "X", "message": "m"})) == ("X", "m")
    assert error_details(_response(401, {"error": "invalid_client", "error_description": "bad secret"})) == (
        "invalid_client",
        "bad secret",
    )
    assert error_details(_response(422, {"error": {"code": "download_failed", "message": "m2"}})) == (
        "download_failed",
        "m2",
    )
    assert error_details(_response(500, text="plain failure")) == (None, "plain failure")


# --- the HTTP client ------------------------------------------------------------------


def _client(emulator, **kwargs) -> HttpClient:
    return HttpClient(
        "Databricks", emulator.url, timeout=5, auth=lambda: {"Authorization": f"Bearer {emulator.token}"}, **kwargs
    )


def test_retry_after_is_honoured_then_the_call_succeeds(emulator):
    emulator.inject(
        429,
        {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"},
        headers={"Retry-After": "1"},
        path="/api/2.0/sql/warehouses/",
    )
    started = time.monotonic()
    response = _client(emulator).request("GET", f"/api/2.0/sql/warehouses/{emulator.warehouse_id}")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.95
    assert emulator.faults.pending() == 0


def test_transient_errors_beyond_the_attempts_go_up_as_transient(emulator):
    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "warehouse is starting"},
        path="/api/2.0/sql/warehouses/",
        times=3,
    )
    with pytest.raises(RemoteTransientError, match="warehouse is starting") as info:
        _client(emulator, attempts=3, backoff=(0.01, 0.01)).request(
            "GET", f"/api/2.0/sql/warehouses/{emulator.warehouse_id}"
        )
    assert info.value.code == "TEMPORARILY_UNAVAILABLE"
    assert emulator.faults.pending() == 0


def test_a_long_retry_after_is_left_to_the_broker(emulator):
    emulator.inject(
        429, {"message": "come back in an hour"}, headers={"Retry-After": "3600"}, path="/api/2.0/sql/warehouses/"
    )
    started = time.monotonic()
    with pytest.raises(RemoteTransientError) as info:
        _client(emulator).request("GET", f"/api/2.0/sql/warehouses/{emulator.warehouse_id}")
    assert info.value.retry_after == 3600
    assert time.monotonic() - started < 1


def test_permanent_errors_are_not_retried(emulator):
    emulator.inject(
        403, {"error_code": "PERMISSION_DENIED", "message": "no USE CATALOG"}, path="/api/2.0/sql/warehouses/", times=2
    )
    with pytest.raises(RemotePermanentError, match="no USE CATALOG"):
        _client(emulator).request("GET", f"/api/2.0/sql/warehouses/{emulator.warehouse_id}")
    assert emulator.faults.pending() == 1


def test_connection_refused_is_transient():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = HttpClient("Databricks", f"http://127.0.0.1:{port}", timeout=2, attempts=2, backoff=(0.01, 0.01))
    with pytest.raises(RemoteTransientError, match="cannot reach Databricks"):
        client.request("GET", "/api/2.0/sql/warehouses/x")


# --- auth -----------------------------------------------------------------------------


def test_a_bad_token_is_a_permanent_error_with_databricks_message(emulator, tmp_path):
    with pytest.raises(PermanentTargetError, match="Invalid access token"):
        target(emulator, tmp_path, token="dapi-wrong").ping()


def test_oauth_tokens_are_fetched_once_and_renewed_before_expiry(emulator, tmp_path):
    t = target(emulator, tmp_path, token="", client_id=emulator.client_id, client_secret=emulator.client_secret)
    assert t.describe()["auth"] == "oauth-m2m"
    before = emulator.token_requests
    t.ping()
    t.ping()
    assert emulator.token_requests == before + 1
    t._oauth._expires_at = time.monotonic() - 1  # as if the cached token were about to expire
    t.ping()
    assert emulator.token_requests == before + 2


def test_oauth_short_lifetime_keeps_a_margin(emulator):
    tokens = dbx.OAuthTokens(emulator.url, emulator.client_id, emulator.client_secret, timeout=5)
    emulator.oauth_ttl = 20
    try:
        tokens.token()
        assert 0 < tokens._expires_at - time.monotonic() <= 18.1
    finally:
        emulator.oauth_ttl = 3600


def test_oauth_refreshes_once_on_401(emulator, tmp_path):
    t = target(emulator, tmp_path, token="", client_id=emulator.client_id, client_secret=emulator.client_secret)
    t.ping()
    emulator.inject(401, {"error_code": "UNAUTHENTICATED", "message": "token revoked"}, path="/api/2.0/sql/warehouses/")
    before = emulator.token_requests
    t.ping()
    assert emulator.token_requests == before + 1


def test_bad_client_secret_is_permanent(emulator, tmp_path):
    t = target(emulator, tmp_path, token="", client_id=emulator.client_id, client_secret="wrong")
    with pytest.raises(PermanentTargetError, match="invalid_client"):
        t.ping()


def test_missing_settings_are_reported(emulator):
    with pytest.raises(PermanentTargetError, match="DATABRICKS_HOST"):
        dbx.DatabricksTarget.from_config({"DATABRICKS_WAREHOUSE_ID": "x", "DATABRICKS_TOKEN": "t"})
    with pytest.raises(PermanentTargetError, match="DATABRICKS_WAREHOUSE_ID"):
        dbx.DatabricksTarget.from_config({"DATABRICKS_HOST": "h", "DATABRICKS_TOKEN": "t"})
    with pytest.raises(PermanentTargetError, match="credentials"):
        dbx.DatabricksTarget.from_config({"DATABRICKS_HOST": "h", "DATABRICKS_WAREHOUSE_ID": "x"})
    t = dbx.DatabricksTarget.from_config(
        {
            "DATABRICKS_HOST": "adb-1.azuredatabricks.net",
            "DATABRICKS_WAREHOUSE_ID": "w",
            "DATABRICKS_TOKEN": "secret",
            "DATABRICKS_STAGING_VOLUME": "files.uploads",
        }
    )
    assert t.host == "https://adb-1.azuredatabricks.net"
    assert "secret" not in str(t.describe())
    assert t.describe()["staging_volume"] == "files.uploads"
    assert t.location(TableRef("c", "s", "t")) == "databricks://adb-1.azuredatabricks.net/c.s.t"


# --- statements -----------------------------------------------------------------------


def test_statements_are_polled_until_they_succeed(emulator, tmp_path):
    emulator.delay_statements(r"SELECT 41", 0.4)
    result = target(emulator, tmp_path).execute("SELECT 41 + 1 AS answer")
    assert result.columns == ["answer"] and result.scalar() == "42"
    assert any(m == "GET" and "/api/2.0/sql/statements/" in p for _, m, p, _ in emulator.request_log)


def test_transient_errors_while_polling_are_retried(emulator, tmp_path):
    emulator.delay_statements(r"SELECT 7", 0.3)
    emulator.inject(
        503,
        {"error_code": "TEMPORARILY_UNAVAILABLE", "message": "busy"},
        method="GET",
        path="/api/2.0/sql/statements/.+",
    )
    assert target(emulator, tmp_path).execute("SELECT 7").scalar() == "7"
    assert emulator.faults.pending() == 0


def test_a_failed_statement_is_permanent_with_its_message(emulator, tmp_path):
    t = target(emulator, tmp_path)
    with pytest.raises(dbx.StatementFailed, match=r"NO_SUCH_CATALOG_EXCEPTION.*tenant_unit_missing"):
        t.count_rows(TableRef("tenant_unit_missing", "bronze", "nowhere"))
    t.initialize_catalog("tenant_unit_missing")
    with pytest.raises(dbx.StatementFailed, match=r"TABLE_OR_VIEW_NOT_FOUND.*nowhere") as info:
        t.count_rows(TableRef("tenant_unit_missing", "bronze", "nowhere"))
    assert isinstance(info.value, PermanentTargetError)


def test_temporarily_unavailable_statement_failures_are_transient(emulator, tmp_path):
    emulator.fail_statements(r"SELECT 5", error_code="TEMPORARILY_UNAVAILABLE", message="warehouse restarting")
    with pytest.raises(RemoteTransientError, match="warehouse restarting"):
        target(emulator, tmp_path).execute("SELECT 5")


def test_a_slow_statement_is_cancelled_after_the_timeout(emulator, tmp_path):
    emulator.delay_statements(r"SELECT 'slow'", 30)
    started = time.monotonic()
    with pytest.raises(TransientTargetError, match="did not finish within 1s"):
        target(emulator, tmp_path, statement_timeout=1).execute("SELECT 'slow'")
    assert time.monotonic() - started < 5
    assert emulator.cancelled
    cancelled = emulator.statements[emulator.cancelled[-1]]
    assert cancelled.text == "SELECT 'slow'" and cancelled.state == "CANCELED"


# --- bronze, silver and the catalog layout ---------------------------------------------


@pytest.fixture
def source_file(tmp_path):
    path = tmp_path / "source.parquet"
    pq.write_table(
        pa.table(
            {
                "Customer ID": ["1", "2", "3", "2"],
                "Amount (€)": ["10.50", "3", "", "3"],
                "_dataset_id": ["x", "y", "z", "y"],  # a source column that takes a metadata name
                "seen": pa.array([1, 2, 3, 2], pa.timestamp("ns", tz="Europe/Paris")),
                "n": pa.array([1, 2, 3, 2], pa.uint32()),
            }
        ),
        path,
    )
    return path


def _source(path, at, bronze, silver=None):
    return sync_context(path, bronze=bronze, silver=silver, source_file="ds-1.parquet", ingested_at=at)


def test_bronze_is_staged_copied_once_and_replaced_on_resync(emulator, tmp_path, source_file):
    t = target(emulator, tmp_path)
    catalog = "tenant_unit_bronze"
    ref = TableRef(catalog, "bronze", "sales_1a2b3c4d")
    first = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

    result = t.write_bronze(_source(source_file, first, ref))  # creates the catalog as needed
    assert result.row_count == 4
    assert result.location.endswith(f"/{ref.full_name}")
    assert t.write_bronze(_source(source_file, first, ref)).row_count == 4  # a retried step
    staged = emulator.volume_files(catalog, "staging", "staging")
    assert staged == ["bronze/sales_1a2b3c4d/20240501T120000123456Z.parquet"]
    assert len(emulator.loaded_files(ref.full_name)) == 1

    table = emulator.read_table(ref.full_name)
    assert table.column_names == [
        "Customer ID",
        "Amount (€)",
        "_dataset_id_2",
        "seen",
        "n",
        "_dataset_id",
        "_ingested_at",
        "_source_file",
    ]
    assert table.schema.field("n").type == pa.int64()
    assert table.schema.field("seen").type == pa.timestamp("us", tz="UTC")
    assert set(table.column("_dataset_id").to_pylist()) == {"ds-1"}
    assert set(table.column("_ingested_at").to_pylist()) == {first}
    assert sorted(table.column("_dataset_id_2").to_pylist()) == ["x", "y", "y", "z"]

    second = first + dt.timedelta(hours=1)  # a new run of the same dataset
    assert t.write_bronze(_source(source_file, second, ref)).row_count == 4
    assert emulator.volume_files(catalog, "staging", "staging") == [
        "bronze/sales_1a2b3c4d/20240501T130000123456Z.parquet"
    ]
    assert set(emulator.read_table(ref.full_name).column("_ingested_at").to_pylist()) == {second}

    t.drop_tables(_source(source_file, first, ref), [ref])
    assert not emulator.table_exists(ref.full_name)
    assert emulator.volume_files(catalog, "staging", "staging") == []
    t.drop_tables(_source(source_file, first, ref), [ref])  # already gone: fine


BAD_ROWS = [
    {"line": 3, "reason": "expected 2 fields, found 1", "raw": "## comment ##"},
    {"line": 7, "reason": "unclosed quote", "raw": "a,\"b\\c 'd'\nx"},
]


def test_quarantine_is_staged_loaded_once_and_replaced_on_resync(emulator, tmp_path, source_file):
    t = target(emulator, tmp_path)
    catalog = "tenant_unit_quarantine"
    bronze = TableRef(catalog, "bronze", "sales_5e6f7a8b")
    quarantine = TableRef(catalog, "bronze", "sales_5e6f7a8b_quarantine")
    first = dt.datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=dt.UTC)

    result = t.write_quarantine(_source(source_file, first, bronze), quarantine, BAD_ROWS)
    assert (result.table, result.row_count) == (quarantine, 2)
    assert result.location.endswith(f"/{quarantine.full_name}")
    again = t.write_quarantine(_source(source_file, first, bronze), quarantine, BAD_ROWS)  # a retried step
    assert again.row_count == 2
    assert emulator.volume_files(catalog, "staging", "staging") == [
        "bronze/sales_5e6f7a8b_quarantine/20240501T120000123456Z.parquet"
    ]
    assert len(emulator.loaded_files(quarantine.full_name)) == 1
    assert not list(tmp_path.glob("quarantine-*"))  # the scratch file is gone

    table = emulator.read_table(quarantine.full_name)
    assert table.column_names == ["line", "reason", "raw", "_dataset_id", "_ingested_at", "_source_file"]
    assert table.schema.field("line").type == pa.int64()
    assert table.schema.field("_ingested_at").type == pa.timestamp("us", tz="UTC")
    rows = sorted(table.to_pylist(), key=lambda r: r["line"])
    assert [(r["line"], r["reason"], r["raw"]) for r in rows] == [(b["line"], b["reason"], b["raw"]) for b in BAD_ROWS]
    assert {(r["_dataset_id"], r["_ingested_at"], r["_source_file"]) for r in rows} == {("ds-1", first, "ds-1.parquet")}

    second = first + dt.timedelta(hours=1)  # a new run of the same dataset
    assert t.write_quarantine(_source(source_file, second, bronze), quarantine, BAD_ROWS).row_count == 2
    assert set(emulator.read_table(quarantine.full_name).column("_ingested_at").to_pylist()) == {second}
    assert emulator.volume_files(catalog, "staging", "staging") == [
        "bronze/sales_5e6f7a8b_quarantine/20240501T130000123456Z.parquet"
    ]

    t.drop_tables(_source(source_file, second, bronze), [quarantine])
    assert not emulator.table_exists(quarantine.full_name)
    assert emulator.volume_files(catalog, "staging", "staging") == []


def test_silver_applies_the_plan_and_counts_duplicates(emulator, tmp_path, source_file):
    t = target(emulator, tmp_path)
    bronze, silver = (
        TableRef("tenant_unit_silver", "bronze", "s_00000000"),
        TableRef("tenant_unit_silver", "silver", "s_00000000"),
    )
    t.write_bronze(_source(source_file, dt.datetime.now(dt.UTC), bronze, silver))
    plan = SilverPlan(
        [
            SilverColumn("Customer ID", "customer_id", "integer", "string"),
            SilverColumn("Amount (€)", "amount", "double", "string"),
            SilverColumn("_dataset_id", "dataset_id", "string", "string"),
            SilverColumn("n", "n", "source", "integer"),
        ],
        null_tokens=[""],
    )
    result = t.write_silver(_source(source_file, dt.datetime.now(dt.UTC), bronze, silver), plan)
    assert (t.count_rows(bronze), result.row_count) == (4, 3)
    rows = sorted(emulator.read_table(silver.full_name).to_pylist(), key=lambda r: r["customer_id"])
    assert [(r["customer_id"], r["amount"], r["dataset_id"], r["n"]) for r in rows] == [
        (1, 10.5, "x", 1),
        (2, 3.0, "y", 2),
        (3, None, "z", 3),
    ]
    assert t.count_rows(silver) == 3


def test_a_value_that_does_not_fit_the_plan_fails_the_silver_step(emulator, tmp_path, source_file):
    t = target(emulator, tmp_path)
    bronze, silver = (
        TableRef("tenant_unit_bad", "bronze", "b_00000000"),
        TableRef("tenant_unit_bad", "silver", "b_00000000"),
    )
    t.write_bronze(_source(source_file, dt.datetime.now(dt.UTC), bronze, silver))
    plan = SilverPlan([SilverColumn("Amount (€)", "amount", "integer", "string")], null_tokens=[])
    with pytest.raises(dbx.StatementFailed, match="column Amount \\(€\\): value '10.50' is not a valid integer"):
        t.write_silver(_source(source_file, dt.datetime.now(dt.UTC), bronze, silver), plan)


def test_copy_into_without_column_mapping_is_refused_by_the_emulator(emulator, tmp_path, source_file):
    """The emulator enforces Delta's column-name rule, so the target's column mapping is tested."""
    t = target(emulator, tmp_path)
    t.initialize_catalog("tenant_unit_nomap")
    t.upload(source_file, "/Volumes/tenant_unit_nomap/staging/staging/raw.parquet")
    t.execute("CREATE TABLE IF NOT EXISTS `tenant_unit_nomap`.`bronze`.`raw`")
    with pytest.raises(dbx.StatementFailed, match="DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES"):
        t.execute(
            "COPY INTO `tenant_unit_nomap`.`bronze`.`raw` FROM '/Volumes/tenant_unit_nomap/staging/staging/raw.parquet' "
            "FILEFORMAT = PARQUET COPY_OPTIONS ('mergeSchema' = 'true')"
        )


def test_copy_into_loads_a_file_once_unless_forced(emulator, tmp_path, source_file):
    t = target(emulator, tmp_path)
    t.initialize_catalog("tenant_unit_copy")
    t.upload(source_file, "/Volumes/tenant_unit_copy/staging/staging/f.parquet")
    t.execute(
        "CREATE TABLE IF NOT EXISTS `tenant_unit_copy`.`bronze`.`f` TBLPROPERTIES ('delta.columnMapping.mode' = 'name')"
    )
    copy = (
        "COPY INTO `tenant_unit_copy`.`bronze`.`f` FROM '/Volumes/tenant_unit_copy/staging/staging/f.parquet' "
        "FILEFORMAT = PARQUET COPY_OPTIONS ('mergeSchema' = 'true'{})"
    )
    assert t.execute(copy.format("")).rows == [["4", "4", "0"]]
    assert t.execute(copy.format("")).rows == [["0", "0", "0"]]
    assert t.execute(copy.format(", 'force' = 'true'")).rows == [["4", "4", "0"]]
    assert t.count_rows(TableRef("tenant_unit_copy", "bronze", "f")) == 8


def test_initialize_catalog_creates_the_layout(emulator, tmp_path):
    t = target(emulator, tmp_path, staging_volume="landing.files")
    result = t.initialize_catalog("tenant_unit_init")
    assert result == {
        "catalog": "tenant_unit_init",
        "schemas": ["tenant_unit_init.bronze", "tenant_unit_init.silver", "tenant_unit_init.landing"],
        "volumes": ["tenant_unit_init.landing.files"],
    }
    assert all(emulator.has_schema("tenant_unit_init", s) for s in ("bronze", "silver", "landing"))
    assert emulator.has_volume("tenant_unit_init", "landing", "files")
    assert t.initialize_catalog("tenant_unit_init") == result  # idempotent
    with pytest.raises(PermanentTargetError):
        t.initialize_catalog("Bad-Name")


def test_files_above_the_single_upload_limit_are_refused(emulator, tmp_path, source_file, monkeypatch):
    monkeypatch.setattr(dbx, "FILES_API_MAX_UPLOAD", 10)
    with pytest.raises(PermanentTargetError, match="5 GiB"):
        target(emulator, tmp_path).upload(source_file, "/Volumes/x/staging/staging/f.parquet")


def test_upload_is_streamed_from_disk(emulator, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (3 * 1024 * 1024 + 7))
    t = target(emulator, tmp_path)
    t.initialize_catalog("tenant_unit_upload")
    t.upload(big, "/Volumes/tenant_unit_upload/staging/staging/deep/dir/big.bin")
    assert emulator.volume_files("tenant_unit_upload", "staging", "staging") == ["deep/dir/big.bin"]
    stored = emulator.warehouse.volume_dir("tenant_unit_upload", "staging", "staging") / "deep/dir/big.bin"
    assert stored.stat().st_size == big.stat().st_size
