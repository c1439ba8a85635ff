"""The MCP target: an intermediary service that loads datasets into Databricks for us.

The protocol (``Authorization: Bearer MCP_API_KEY``, base ``MCP_SERVER_URL``), all that a
server can be assumed to speak:

- ``POST /databricks/datasets`` ``{tenant_id, dataset_id, dataset_name, parquet_url,
  schema}`` → ``{bronze_table, row_count}``. The server downloads ``parquet_url`` (our
  ``/internal/storage/datasets/<file>`` endpoint under PUBLIC_INTERNAL_URL).
- ``POST /databricks/transformations/silver`` ``{bronze_table, tenant_id}`` →
  ``{silver_table, row_count}``.
- ``GET /databricks/datasets/{id}/status`` → ``{status, bronze_exists, silver_exists,
  last_sync_at, error}``.
- ``DELETE /databricks/datasets/{id}`` with ``{"tenant_id": ...}``; ``GET /health``.

We send a few extra fields that a server may use and may ignore: the names we would give
the tables (``catalog``, ``table``, ``bronze_table``, ``silver_table``), ``source_file``
and ``ingested_at`` for the metadata columns, and ``plan`` (the SilverPlan), so that a
server can apply the same naming, cleaning and types as the other targets. We rely only on
the fields above: the tables are the ones the server names, their row counts the
``row_count`` of its answers.

Errors are sorted as for Databricks (``service.lakehouse.http``): a server that is down
or answers 429/5xx is transient, so the dataset stays local and its sync is retried, then
failed with the reason; any other 4xx is permanent.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC
from urllib.parse import quote, urlsplit

from service.lakehouse.base import (
    LakehouseTarget,
    PermanentTargetError,
    SyncContext,
    TableRef,
    TableResult,
    TableState,
    TableStates,
)
from service.lakehouse.http import HttpClient
from service.signing import signing_settings, storage_url
from service.transform.plan import SilverColumn, SilverPlan

log = logging.getLogger(__name__)


class McpTarget(LakehouseTarget):
    name = "mcp"

    def __init__(
        self,
        server_url: str,
        *,
        api_key: str,
        public_internal_url: str,
        http_timeout: float = 60.0,
        attempts: int = 3,
        url_signing: dict | None = None,
    ):
        if not server_url:
            raise PermanentTargetError("MCP_SERVER_URL is not set")
        if not public_internal_url:
            raise PermanentTargetError("PUBLIC_INTERNAL_URL is not set; the MCP server downloads files from it")
        self.server_url = server_url.rstrip("/")
        self.public_internal_url = public_internal_url.rstrip("/")
        self.url_signing = url_signing or {}  # without a key, URLs go unsigned (the bearer opens them)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = HttpClient(
            "the MCP server", self.server_url, timeout=http_timeout, auth=lambda: dict(headers), attempts=attempts
        )

    @classmethod
    def from_config(cls, config: dict) -> McpTarget:
        return cls(
            config.get("MCP_SERVER_URL", ""),
            api_key=config.get("MCP_API_KEY", ""),
            public_internal_url=config.get("PUBLIC_INTERNAL_URL", ""),
            http_timeout=float(config.get("HTTP_TIMEOUT", 60.0)),
            url_signing=signing_settings(config),
        )

    def parquet_url(self, ctx: SyncContext) -> str:
        """Where the server downloads the dataset's Parquet file."""
        return storage_url(self.public_internal_url, ctx.source_file, self.url_signing)

    def write_bronze(self, ctx: SyncContext) -> TableResult:
        body = {
            "tenant_id": ctx.tenant_id,
            "dataset_id": ctx.dataset_id,
            "dataset_name": ctx.dataset_name,
            "parquet_url": self.parquet_url(ctx),
            "schema": [dict(c) for c in ctx.columns],
            # Extras a server may use: the name we would give the table, the metadata values.
            "catalog": ctx.bronze.catalog,
            "table": ctx.bronze.table,
            "bronze_table": ctx.bronze.full_name,
            "source_file": ctx.source_file,
            "ingested_at": ctx.ingested_at.astimezone(UTC).isoformat(),
        }
        data = self._json("POST", "/databricks/datasets", body, f"loading the bronze table of dataset {ctx.dataset_id}")
        return self._result(data, "bronze_table", default=ctx.bronze)

    def write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        body = {
            # ctx.bronze is the name the server gave the bronze table.
            "bronze_table": ctx.bronze.full_name,
            "tenant_id": ctx.tenant_id,
            "dataset_id": ctx.dataset_id,
            "silver_table": ctx.silver.full_name,
            "plan": plan_json(plan),
        }
        data = self._json(
            "POST", "/databricks/transformations/silver", body, f"building the silver table of dataset {ctx.dataset_id}"
        )
        return self._result(data, "silver_table", default=ctx.silver)

    def read_back(self, ctx: SyncContext) -> TableStates:
        status = self._json(
            "GET",
            f"/databricks/datasets/{quote(ctx.dataset_id)}/status",
            None,
            f"reading the status of dataset {ctx.dataset_id}",
        )

        def state(ref: TableRef, key: str) -> TableState:
            exists = status.get(key)
            if not isinstance(exists, bool):
                raise PermanentTargetError(f"the MCP server's status of dataset {ctx.dataset_id} has no boolean {key}")
            return TableState(ref, exists=exists, location=self._location(ref.full_name))

        return TableStates(bronze=state(ctx.bronze, "bronze_exists"), silver=state(ctx.silver, "silver_exists"))

    def location(self, ref: TableRef) -> str:
        return self._location(ref.full_name)

    def _location(self, table: str) -> str:
        return f"mcp://{urlsplit(self.server_url).netloc}/{table}"

    def drop_tables(self, ctx: SyncContext, tables: list[TableRef]) -> None:
        # The server removes a dataset's tables together; a second call finds nothing.
        self.http.request(
            "DELETE",
            f"/databricks/datasets/{quote(ctx.dataset_id)}",
            json={"tenant_id": ctx.tenant_id},
            what=f"deleting dataset {ctx.dataset_id}",
            expected=(200, 202, 204),
            allow=(404,),
        )

    def ping(self) -> None:
        self.http.request("GET", "/health", what="the health check", expected=(200,))

    def initialize_catalog(self, catalog: str) -> dict:
        # The server creates catalogs and schemas itself when it loads a dataset.
        self.ping()
        return {"catalog": catalog, "schemas": [f"{catalog}.bronze", f"{catalog}.silver"], "managed_by": "mcp"}

    def describe(self) -> dict:
        return {"target": self.name, "server_url": self.server_url, "public_internal_url": self.public_internal_url}

    def _result(self, data: dict, key: str, *, default: TableRef) -> TableResult:
        name = data.get(key)
        if not isinstance(name, str) or not name:
            raise PermanentTargetError(f"the MCP server's answer has no {key}")
        return TableResult(
            table=TableRef.parse(name, default=default),
            location=self._location(name),
            row_count=_int(data, "row_count"),
        )

    def _json(self, method: str, path: str, body, what: str) -> dict:
        response = self.http.request(method, path, json=body, what=what, expected=(200, 201))
        try:
            data = response.json()
        except ValueError:
            raise PermanentTargetError(f"the MCP server answered {what} with something other than JSON") from None
        if not isinstance(data, dict):
            raise PermanentTargetError(f"the MCP server answered {what} with {type(data).__name__}, not an object")
        return data


def plan_json(plan: SilverPlan) -> dict:
    return {"columns": [dataclasses.asdict(c) for c in plan.columns], "null_tokens": list(plan.null_tokens)}


def plan_from_json(data: dict) -> SilverPlan:
    return SilverPlan(
        columns=[SilverColumn(**c) for c in data["columns"]], null_tokens=list(data.get("null_tokens", []))
    )


def _int(data: dict, key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PermanentTargetError(f"the MCP server's answer has no valid {key}")
    try:
        return int(value)
    except ValueError:
        raise PermanentTargetError(f"the MCP server's answer has no valid {key}") from None
