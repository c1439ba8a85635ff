"""Databricks Unity Catalog target, through the Files API and the SQL Statement Execution API.

Bronze
    The local Parquet file plus ``_dataset_id``, ``_ingested_at`` and ``_source_file`` is
    written batch by batch to a scratch file, streamed to the tenant catalog's staging
    volume with one ``PUT /api/2.0/fs/files`` (the Files API takes at most 5 GiB per
    request), then loaded with ``COPY INTO``.

    The staged path is deterministic per run: ``bronze/<table>/<ingestion time>.parquet``.
    A retried step uploads the same bytes to the same path, and COPY INTO, which loads a
    path at most once per table, skips it. A new run (resync) stages a new path, so COPY
    INTO loads it, and rows of earlier runs (another ``_ingested_at``) are then deleted:
    the table ends with exactly the file's rows either way. Older staged files are removed
    once the load succeeded.

    The table is created as an empty placeholder with Delta column mapping, so that COPY
    INTO takes the schema from the file and source column names with spaces or brackets
    are kept as they are.

Quarantine
    The upload's bad rows (``line``, ``reason``, ``raw``) plus bronze's metadata columns,
    loaded into ``<bronze table>_quarantine`` exactly as bronze is: staged under
    ``bronze/<table>_quarantine/``, COPY INTO, rows of earlier runs deleted.

Silver
    ``CREATE OR REPLACE TABLE ... AS SELECT DISTINCT ...`` built from the SilverPlan by
    ``service.lakehouse.spark_sql``, which follows the local target's rules exactly.
"""

from __future__ import annotations

import base64
import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote, urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from service.lakehouse import spark_sql as sql
from service.lakehouse.base import (
    LakehouseTarget,
    PermanentTargetError,
    SyncContext,
    TableRef,
    TableResult,
    TableState,
    TableStates,
    TransientTargetError,
)
from service.lakehouse.http import HttpClient, RemotePermanentError, RemoteTransientError, sleep_until
from service.table_rules import (
    BRONZE_META_FIELDS,
    INGESTED_AT,
    QUARANTINE_FIELDS,
    meta_columns,
    quarantine_columns,
    spark_compatible_type,
    to_storable_array,
)
from service.transform.plan import SilverPlan

log = logging.getLogger(__name__)

# The Files API accepts at most this much in one PUT.
FILES_API_MAX_UPLOAD = 5 * 1024**3
BATCH_ROWS = 64 * 1024
TERMINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELED", "CLOSED")
# Error classes of statements that may pass when tried again.
TRANSIENT_SQL_ERRORS = (
    "TEMPORARILY_UNAVAILABLE",
    "DELTA_CONCURRENT",
    "CONCURRENT_APPEND",
    "CONCURRENT_DELETE",
    "METADATA_CHANGED",
    "PROTOCOL_CHANGED",
)
# What Databricks says when a catalog or schema is missing.
MISSING_CATALOG_ERRORS = ("NO_SUCH_CATALOG", "CATALOG_NOT_FOUND")
MISSING_ERRORS = MISSING_CATALOG_ERRORS + ("SCHEMA_NOT_FOUND", "NO_SUCH_SCHEMA")
# Column mapping keeps source names with spaces or brackets; timestamps without a time
# zone (TIMESTAMP_NTZ) need their table feature.
TABLE_PROPERTIES = "TBLPROPERTIES ('delta.columnMapping.mode' = 'name', 'delta.feature.timestampNtz' = 'supported')"


class StatementFailed(RemotePermanentError):
    """A SQL statement ended FAILED."""


@dataclass
class StatementResult:
    statement_id: str
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)

    def scalar(self, row: int = 0, col: int = 0):
        try:
            return self.rows[row][col]
        except IndexError:
            raise PermanentTargetError(f"statement {self.statement_id} returned no value") from None


class OAuthTokens:
    """OAuth machine-to-machine tokens of a service principal, cached until shortly
    before they expire."""

    def __init__(self, host: str, client_id: str, client_secret: str, *, timeout: float, attempts: int = 3):
        self.client_id = client_id
        self.client_secret = client_secret
        self.http = HttpClient("Databricks OAuth", host, timeout=timeout, attempts=attempts)
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def token(self) -> str:
        with self._lock:
            if self._token is None or time.monotonic() >= self._expires_at:
                self._token = self._fetch()
            return self._token

    def invalidate(self) -> bool:
        with self._lock:
            self._token = None
        return True

    def _fetch(self) -> str:
        response = self.http.request(
            "POST",
            "/oidc/v1/token",
            what="the OAuth token request",
            expected=(200,),
            data={"grant_type": "client_credentials", "scope": "all-apis"},
            headers={"Authorization": _basic(self.client_id, self.client_secret), "Accept": "application/json"},
        )
        body = response.json()
        token = body.get("access_token")
        if not token:
            raise PermanentTargetError("the Databricks OAuth token response has no access_token")
        expires_in = float(body.get("expires_in") or 3600)
        # Renew a minute early (or at 90% of a short lifetime) so no call carries a token
        # that expires on the way.
        margin = min(60.0, expires_in / 10)
        self._expires_at = time.monotonic() + expires_in - margin
        return token


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _host_url(host: str) -> str:
    host = host.strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        host = "https://" + host
    return host


def _staging(value: str) -> tuple[str, str]:
    """(schema, volume) of DATABRICKS_STAGING_VOLUME: ``schema.volume`` or a bare volume
    name in schema ``staging``."""
    schema, _, volume = value.strip().rpartition(".")
    schema = schema or "staging"
    return sql.identifier(schema, "staging schema name"), sql.identifier(volume, "staging volume name")


def _error_text(error: dict | None) -> tuple[str | None, str]:
    error = error or {}
    return error.get("error_code"), str(error.get("message") or "no message")


class DatabricksTarget(LakehouseTarget):
    name = "databricks"

    def __init__(
        self,
        host: str,
        *,
        warehouse_id: str,
        token: str = "",
        client_id: str = "",
        client_secret: str = "",
        staging_volume: str = "staging",
        statement_timeout: float = 600.0,
        http_timeout: float = 60.0,
        scratch_dir: str | os.PathLike | None = None,
        wait_timeout: str = "10s",
        poll_interval: tuple[float, float] = (0.1, 2.0),
        attempts: int = 3,
    ):
        if not host:
            raise PermanentTargetError("DATABRICKS_HOST is not set")
        if not warehouse_id:
            raise PermanentTargetError("DATABRICKS_WAREHOUSE_ID is not set")
        self.host = _host_url(host)
        self.warehouse_id = warehouse_id
        self.staging_schema, self.staging_volume = _staging(staging_volume)
        self.statement_timeout = float(statement_timeout)
        self.wait_timeout = wait_timeout
        self.poll_interval = poll_interval
        self.scratch_dir = Path(scratch_dir) if scratch_dir else None
        if token:
            self.auth_kind = "pat"
            self._oauth = None
            auth, refresh = (lambda: {"Authorization": f"Bearer {token}"}), None
        elif client_id and client_secret:
            self.auth_kind = "oauth-m2m"
            oauth = OAuthTokens(self.host, client_id, client_secret, timeout=http_timeout, attempts=attempts)
            self._oauth = oauth
            auth, refresh = (lambda: {"Authorization": f"Bearer {oauth.token()}"}), oauth.invalidate
        else:
            raise PermanentTargetError(
                "no Databricks credentials: set DATABRICKS_TOKEN, or DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET"
            )
        self.http = HttpClient(
            "Databricks", self.host, timeout=http_timeout, auth=auth, on_unauthorized=refresh, attempts=attempts
        )
        self._ready: set[tuple[str, str]] = set()  # (catalog, schema) known to exist
        self._ready_lock = threading.Lock()
        self.warehouse_state: str | None = None  # as last seen by ping()

    @classmethod
    def from_config(cls, config: dict) -> DatabricksTarget:
        return cls(
            config.get("DATABRICKS_HOST", ""),
            warehouse_id=config.get("DATABRICKS_WAREHOUSE_ID", ""),
            token=config.get("DATABRICKS_TOKEN", ""),
            client_id=config.get("DATABRICKS_CLIENT_ID", ""),
            client_secret=config.get("DATABRICKS_CLIENT_SECRET", ""),
            staging_volume=config.get("DATABRICKS_STAGING_VOLUME") or "staging",
            statement_timeout=float(config.get("DATABRICKS_STATEMENT_TIMEOUT", 600.0)),
            http_timeout=float(config.get("HTTP_TIMEOUT", 60.0)),
            scratch_dir=Path(config["DATA_DIR"]) / "tmp" if config.get("DATA_DIR") else None,
        )

    # --- SQL statements ---------------------------------------------------------------

    def execute(self, statement: str, *, what: str | None = None) -> StatementResult:
        """Run one statement on the warehouse and wait for its end, at most
        DATABRICKS_STATEMENT_TIMEOUT seconds (then it is cancelled)."""
        what = what or statement.split(" AS SELECT", 1)[0][:120]
        deadline = time.monotonic() + self.statement_timeout
        body = {
            "warehouse_id": self.warehouse_id,
            "statement": statement,
            "wait_timeout": self.wait_timeout,
            "on_wait_timeout": "CONTINUE",
            "format": "JSON_ARRAY",
            "disposition": "INLINE",
        }
        data = self.http.request("POST", "/api/2.0/sql/statements", json=body, what=what, expected=(200,)).json()
        statement_id = data.get("statement_id")
        if not statement_id:
            raise PermanentTargetError(f"Databricks accepted no statement for {what}: {data}")
        interval, max_interval = self.poll_interval
        while _state(data) not in TERMINAL_STATES:
            if time.monotonic() >= deadline:
                self._cancel(statement_id)
                raise TransientTargetError(
                    f"Databricks statement {statement_id} ({what}) did not finish within "
                    f"{self.statement_timeout:g}s (DATABRICKS_STATEMENT_TIMEOUT) and was cancelled"
                )
            sleep_until(deadline, interval)
            interval = min(max_interval, interval * 1.5)
            data = self.http.request(
                "GET", f"/api/2.0/sql/statements/{quote(statement_id)}", what=what, expected=(200,)
            ).json()
        return self._outcome(statement_id, what, data)

    def _outcome(self, statement_id: str, what: str, data: dict) -> StatementResult:
        state = _state(data)
        if state == "SUCCEEDED":
            columns = [c.get("name") for c in (data.get("manifest", {}).get("schema", {}).get("columns") or [])]
            rows = (data.get("result") or {}).get("data_array") or []
            return StatementResult(statement_id, columns, rows)
        code, message = _error_text(data.get("status", {}).get("error"))
        if state == "FAILED":
            text = f"Databricks SQL failed during {what}: {message}"
            if any(t in f"{code} {message}" for t in TRANSIENT_SQL_ERRORS):
                raise RemoteTransientError(text, code=code)
            raise StatementFailed(text, code=code)
        # CANCELED (e.g. the warehouse stopped) or CLOSED: the statement may simply be run again.
        raise RemoteTransientError(f"Databricks statement {statement_id} ({what}) ended {state}: {message}", code=code)

    def _cancel(self, statement_id: str) -> None:
        try:
            self.http.request(
                "POST",
                f"/api/2.0/sql/statements/{quote(statement_id)}/cancel",
                what="cancelling a statement",
                expected=(200,),
            )
        except (TransientTargetError, PermanentTargetError) as exc:
            log.warning("could not cancel Databricks statement %s: %s", statement_id, exc)

    # --- catalog layout ---------------------------------------------------------------

    def _ensure_schemas(self, catalog: str, schemas: tuple[str, ...], volume: bool = False) -> None:
        """Create the schemas (and the staging volume) that this process has not seen yet;
        the catalog too when it is missing and the credentials may create it."""
        wanted = [s for s in schemas if (catalog, s) not in self._ready]
        if volume and (catalog, "volume") not in self._ready:
            wanted.append("volume")
        if not wanted:
            return
        try:
            self._create_layout(catalog, wanted)
        except StatementFailed as exc:
            if not any(t in str(exc) for t in MISSING_CATALOG_ERRORS):
                raise
            log.info("catalog %s does not exist; creating it", catalog)
            self.execute(f"CREATE CATALOG IF NOT EXISTS {sql.quote_identifier(catalog, 'catalog name')}")
            self._create_layout(catalog, wanted)

    def _create_layout(self, catalog: str, wanted: list[str]) -> None:
        for schema in wanted:
            if schema == "volume":
                self.execute(f"CREATE SCHEMA IF NOT EXISTS {sql.schema_name(catalog, self.staging_schema)}")
                self.execute(f"CREATE VOLUME IF NOT EXISTS {self._volume_name(catalog)}")
            else:
                self.execute(f"CREATE SCHEMA IF NOT EXISTS {sql.schema_name(catalog, schema)}")
            with self._ready_lock:
                self._ready.add((catalog, schema))

    @contextmanager
    def _refreshing_layout(self, catalog: str):
        """Forget what this process knows of a catalog whose schema or volume went missing
        (dropped by someone else), so the next attempt creates them again."""
        try:
            yield
        except RemotePermanentError as exc:
            if exc.status == 404 or any(t in str(exc) for t in MISSING_ERRORS):
                self._forget(catalog)
            raise

    def _forget(self, catalog: str) -> None:
        with self._ready_lock:
            self._ready = {k for k in self._ready if k[0] != catalog}

    def _volume_name(self, catalog: str) -> str:
        return ".".join(
            (
                sql.quote_identifier(catalog, "catalog name"),
                sql.quote_identifier(self.staging_schema),
                sql.quote_identifier(self.staging_volume),
            )
        )

    def initialize_catalog(self, catalog: str) -> dict:
        sql.identifier(catalog, "catalog name")
        self.execute(f"CREATE CATALOG IF NOT EXISTS {sql.quote_identifier(catalog)}")
        self._forget(catalog)
        self._ensure_schemas(catalog, ("bronze", "silver"), volume=True)
        return {
            "catalog": catalog,
            "schemas": [f"{catalog}.bronze", f"{catalog}.silver", f"{catalog}.{self.staging_schema}"],
            "volumes": [f"{catalog}.{self.staging_schema}.{self.staging_volume}"],
        }

    # --- staged files -----------------------------------------------------------------

    def _volume_path(self, catalog: str, *parts: str) -> str:
        return "/".join(("/Volumes", catalog, self.staging_schema, self.staging_volume, *parts))

    def _staging_dir(self, ref: TableRef) -> str:
        return self._volume_path(ref.catalog, "bronze", sql.identifier(ref.table, "table name"))

    @staticmethod
    def _files_url(kind: str, path: str) -> str:
        return f"/api/2.0/fs/{kind}" + quote(path)

    def upload(self, local: Path, remote: str) -> None:
        size = local.stat().st_size
        if size > FILES_API_MAX_UPLOAD:
            raise PermanentTargetError(
                f"the bronze file is {size} bytes; the Databricks Files API takes at most 5 GiB per upload"
            )
        self.http.request(
            "PUT",
            self._files_url("files", remote),
            what=f"uploading {remote}",
            expected=(200, 201, 204),
            params={"overwrite": "true"},
            data=lambda: open(local, "rb"),
            headers={"Content-Type": "application/octet-stream"},
        )

    def _list_dir(self, remote: str) -> list[dict]:
        entries: list[dict] = []
        token = None
        while True:
            params = {"page_token": token} if token else None
            response = self.http.request(
                "GET",
                self._files_url("directories", remote),
                what=f"listing {remote}",
                expected=(200,),
                allow=(404,),
                params=params,
            )
            if response.status_code == 404:
                return []
            body = response.json()
            entries += body.get("contents") or []
            token = body.get("next_page_token")
            if not token:
                return entries

    def _delete_file(self, remote: str) -> None:
        self.http.request(
            "DELETE", self._files_url("files", remote), what=f"deleting {remote}", expected=(200, 204), allow=(404,)
        )

    def _remove_staged(self, ref: TableRef, keep: str | None = None) -> None:
        directory = self._staging_dir(ref)
        for entry in self._list_dir(directory):
            path = entry.get("path") or f"{directory}/{entry.get('name')}"
            if path != keep and not entry.get("is_directory"):
                self._delete_file(path)
        if keep is None:
            self.http.request(
                "DELETE",
                self._files_url("directories", directory),
                what=f"deleting {directory}",
                expected=(200, 204),
                allow=(404, 409),
            )

    # --- the target interface ---------------------------------------------------------

    def write_bronze(self, ctx: SyncContext) -> TableResult:
        with self._refreshing_layout(ctx.bronze.catalog):
            return self._write_bronze(ctx)

    def _write_bronze(self, ctx: SyncContext) -> TableResult:
        ref = ctx.bronze
        self._ensure_schemas(ref.catalog, (ref.schema,), volume=True)
        ingested_at = ctx.ingested_at.astimezone(UTC)
        rows = self._load(ref, self._bronze_file(ctx, ingested_at), ingested_at)
        return TableResult(table=ref, location=self.location(ref), row_count=rows)

    def write_quarantine(self, ctx: SyncContext, table: TableRef, rows: list[dict]) -> TableResult:
        with self._refreshing_layout(table.catalog):
            self._ensure_schemas(table.catalog, (table.schema,), volume=True)
            ingested_at = ctx.ingested_at.astimezone(UTC)
            count = self._load(table, self._quarantine_file(ctx, rows, ingested_at), ingested_at)
        return TableResult(table=table, location=self.location(table), row_count=count)

    def _load(self, ref: TableRef, local: Path, ingested_at: datetime) -> int:
        """Make the table hold exactly the rows of ``local`` (a scratch Parquet file with
        bronze's metadata columns, removed here): staged at a path of its own per run, loaded
        with COPY INTO, rows of other runs deleted. The number of rows."""
        table = sql.table_name(ref)
        remote = f"{self._staging_dir(ref)}/{ingested_at.strftime('%Y%m%dT%H%M%S%fZ')}.parquet"
        try:
            self.upload(local, remote)
        finally:
            local.unlink(missing_ok=True)
        self.execute(f"CREATE TABLE IF NOT EXISTS {table} {TABLE_PROPERTIES}")
        self.execute(
            f"COPY INTO {table} FROM {sql.string_literal(remote)} FILEFORMAT = PARQUET "
            "FORMAT_OPTIONS ('mergeSchema' = 'true') COPY_OPTIONS ('mergeSchema' = 'true')"
        )
        # Rows of earlier runs; none on a retry of the same run.
        self.execute(
            f"DELETE FROM {table} WHERE `{INGESTED_AT}` IS NULL OR "
            f"`{INGESTED_AT}` <> {sql.timestamp_literal(ingested_at)}"
        )
        rows = self.count_rows(ref)
        try:
            self._remove_staged(ref, keep=remote)
        except (TransientTargetError, PermanentTargetError) as exc:
            log.warning("could not remove older staged files of %s: %s", ref.full_name, exc)
        return rows

    def _scratch_file(self, prefix: str) -> Path:
        if self.scratch_dir:
            self.scratch_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=".parquet", dir=self.scratch_dir)
        os.close(fd)
        return Path(name)

    @staticmethod
    def _meta_arrays(ctx: SyncContext, ingested_at: datetime, n: int) -> list[pa.Array]:
        """Bronze's metadata columns for ``n`` rows of this load."""
        return list(meta_columns(ctx.dataset_id, ingested_at, ctx.source_file, n).values())

    def _bronze_file(self, ctx: SyncContext, ingested_at: datetime) -> Path:
        """The local Parquet file plus the metadata columns, written batch by batch."""
        path = self._scratch_file("bronze-")
        try:
            reader = pq.ParquetFile(ctx.source_path)
            try:
                names = sql.bronze_column_names(reader.schema_arrow.names)
                fields = [pa.field(n, spark_compatible_type(f.type)) for n, f in zip(names, reader.schema_arrow)]
                schema = pa.schema(fields + list(BRONZE_META_FIELDS))
                with pq.ParquetWriter(path, schema) as writer:
                    for batch in reader.iter_batches(batch_size=BATCH_ROWS):
                        columns = [to_storable_array(a, f.type) for a, f in zip(batch.columns, fields)]
                        columns += self._meta_arrays(ctx, ingested_at, batch.num_rows)
                        writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
            finally:
                reader.close()
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            path.unlink(missing_ok=True)
            raise PermanentTargetError(f"cannot write the bronze file for Databricks: {exc}") from exc
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def _quarantine_file(self, ctx: SyncContext, rows: list[dict], ingested_at: datetime) -> Path:
        """The bad rows (at most MAX_BAD_ROWS, each cut to 8 KiB at upload) as one small file."""
        schema = pa.schema(list(QUARANTINE_FIELDS) + list(BRONZE_META_FIELDS))
        columns = quarantine_columns(rows) + self._meta_arrays(ctx, ingested_at, len(rows))
        path = self._scratch_file("quarantine-")
        try:
            pq.write_table(pa.Table.from_arrays(columns, schema=schema), path)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path

    def write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        with self._refreshing_layout(ctx.silver.catalog):
            return self._write_silver(ctx, plan)

    def _write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        silver = ctx.silver
        statement = sql.create_silver(ctx.bronze, silver, plan)
        self._ensure_schemas(silver.catalog, (silver.schema,))
        self.execute(statement, what=f"CREATE OR REPLACE TABLE {silver.full_name}")
        rescued = int(self.execute(sql.rescued_count(silver, plan)).scalar()) if plan.rescues else None
        return TableResult(
            table=silver, location=self.location(silver), row_count=self.count_rows(silver), values_rescued=rescued
        )

    def count_rows(self, ref: TableRef) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {sql.table_name(ref)}").scalar())

    def read_back(self, ctx: SyncContext) -> TableStates:
        # One statement for both counts; a missing table fails it, which the step reports.
        counts = self.execute(
            f"SELECT (SELECT COUNT(*) FROM {sql.table_name(ctx.bronze)}), "
            f"(SELECT COUNT(*) FROM {sql.table_name(ctx.silver)})"
        )
        return TableStates(
            bronze=TableState(ctx.bronze, True, self.location(ctx.bronze), int(counts.scalar(0, 0))),
            silver=TableState(ctx.silver, True, self.location(ctx.silver), int(counts.scalar(0, 1))),
        )

    def location(self, ref: TableRef) -> str:
        return f"databricks://{urlsplit(self.host).netloc}/{ref.full_name}"

    def drop_tables(self, ctx: SyncContext, tables: list[TableRef]) -> None:
        for ref in tables:
            try:
                self.execute(f"DROP TABLE IF EXISTS {sql.table_name(ref)}")
            except StatementFailed as exc:
                # No catalog or schema: no table either.
                if not any(t in str(exc) for t in MISSING_ERRORS):
                    raise
            if ref.schema == "bronze":
                self._remove_staged(ref)

    def ping(self) -> None:
        response = self.http.request(
            "GET",
            f"/api/2.0/sql/warehouses/{quote(self.warehouse_id)}",
            what="reading the SQL warehouse",
            expected=(200,),
        )
        self.warehouse_state = response.json().get("state")

    def describe(self) -> dict:
        return {
            "target": self.name,
            "host": self.host,
            "warehouse_id": self.warehouse_id,
            "auth": self.auth_kind,
            "staging_volume": f"{self.staging_schema}.{self.staging_volume}",
        }


def _state(data: dict) -> str:
    return (data.get("status") or {}).get("state") or "PENDING"
