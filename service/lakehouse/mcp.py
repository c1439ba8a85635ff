"""The MCP target: an intermediary service that loads datasets into Databricks for us.

API (``Authorization: Bearer MCP_API_KEY``, base ``MCP_SERVER_URL``):

- ``POST /databricks/datasets`` ``{tenant_id, dataset_id, dataset_name, parquet_url,
  schema}`` → ``{bronze_table, row_count}``. The server downloads ``parquet_url`` (our
  ``/internal/storage/datasets/<file>`` endpoint under PUBLIC_INTERNAL_URL) with
  INTERNAL_API_KEY. Extra fields name the table we expect: ``catalog``, ``table``,
  ``bronze_table``, plus ``source_file`` and ``ingested_at`` for the metadata columns.
- ``POST /databricks/transformations/silver`` ``{bronze_table, tenant_id}`` →
  ``{silver_table, row_count}``. Extra fields: ``dataset_id``, ``silver_table`` and
  ``plan`` (the SilverPlan as JSON), so the server applies the same naming, cleaning and
  types as the other targets.
- ``GET /databricks/datasets/<id>/status``, ``DELETE /databricks/datasets/<id>``,
  ``GET /health``.

Errors are sorted as for Databricks (``service.lakehouse.http``): a server that is down
or answers 429/5xx is transient, so the dataset stays local and its sync is retried, then
failed with the reason; any other 4xx is permanent.
"""
from __future__ import annotations

import dataclasses
import logging
import threading
from datetime import timezone
from urllib.parse import quote, urlsplit

from service.lakehouse.base import BronzeSource, LakehouseTarget, PermanentTargetError, TableRef, TableResult
from service.lakehouse.http import HttpClient
from service.transform.plan import SilverPlan

log = logging.getLogger(__name__)


class McpTarget(LakehouseTarget):
    name = "mcp"

    def __init__(self, server_url: str, *, api_key: str, public_internal_url: str, http_timeout: float = 60.0,
                 attempts: int = 3):
        if not server_url:
            raise PermanentTargetError("MCP_SERVER_URL is not set")
        if not public_internal_url:
            raise PermanentTargetError("PUBLIC_INTERNAL_URL is not set; the MCP server downloads files from it")
        self.server_url = server_url.rstrip("/")
        self.public_internal_url = public_internal_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = HttpClient("the MCP server", self.server_url, timeout=http_timeout,
                               auth=lambda: dict(headers), attempts=attempts)
        self._ids: dict[str, tuple[str, str]] = {}
        self._ids_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: dict) -> "McpTarget":
        return cls(
            config.get("MCP_SERVER_URL", ""),
            api_key=config.get("MCP_API_KEY", ""),
            public_internal_url=config.get("PUBLIC_INTERNAL_URL", ""),
            http_timeout=float(config.get("HTTP_TIMEOUT", 60.0)),
        )

    # The API is keyed by dataset and tenant ids, which only write_bronze is given; for the
    # other calls they are read from the dataset's rows (tables are named after datasets).
    def _dataset_of(self, ref: TableRef) -> tuple[str, str]:
        """(dataset id, tenant id) of the dataset a table belongs to."""
        key = f"{ref.catalog}.{ref.table}"
        with self._ids_lock:
            if key in self._ids:
                return self._ids[key]
        from sqlalchemy import String, cast, select

        from service.db import session_scope
        from service.models import Dataset, LakehouseTable, Tenant

        with session_scope() as session:
            row = session.execute(
                select(Dataset.id, Dataset.tenant_id).join(LakehouseTable, LakehouseTable.dataset_id == Dataset.id)
                .where(LakehouseTable.catalog == ref.catalog, LakehouseTable.table == ref.table).limit(1)
            ).first()
            if row is None:
                # Not recorded yet: the table name ends with the first 8 hex digits of the id.
                prefix = ref.table.rsplit("_", 1)[-1]
                slug = ref.catalog.removeprefix("tenant_")
                rows = session.execute(
                    select(Dataset.id, Dataset.tenant_id).join(Tenant, Tenant.id == Dataset.tenant_id)
                    .where(Tenant.slug == slug, cast(Dataset.id, String).like(f"{prefix}%")).limit(2)
                ).all()
                row = rows[0] if len(rows) == 1 else None
        if row is None:
            raise PermanentTargetError(f"no dataset owns table {ref.full_name}")
        ids = (str(row[0]), str(row[1]))
        with self._ids_lock:
            self._ids[key] = ids
        return ids

    def _remember(self, ref: TableRef, dataset_id: str, tenant_id: str) -> None:
        with self._ids_lock:
            self._ids[f"{ref.catalog}.{ref.table}"] = (dataset_id, tenant_id)

    def write_bronze(self, ref: TableRef, source: BronzeSource) -> TableResult:
        parquet_url = f"{self.public_internal_url}/internal/storage/datasets/{quote(source.source_file)}"
        body = {
            "tenant_id": source.tenant_id,
            "dataset_id": source.dataset_id,
            "dataset_name": source.dataset_name,
            "parquet_url": parquet_url,
            "schema": [dict(c) for c in source.columns],
            "catalog": ref.catalog,
            "table": ref.table,
            "bronze_table": ref.full_name,
            "source_file": source.source_file,
            "ingested_at": source.ingested_at.astimezone(timezone.utc).isoformat(),
        }
        data = self._json("POST", "/databricks/datasets", body, f"loading bronze table {ref.full_name}")
        if source.dataset_id and source.tenant_id:
            self._remember(ref, source.dataset_id, source.tenant_id)
        return TableResult(location=self._location(data.get("bronze_table") or ref.full_name),
                           row_count=_int(data, "row_count"))

    def write_silver(self, bronze: TableRef, silver: TableRef, plan: SilverPlan) -> TableResult:
        dataset_id, tenant_id = self._dataset_of(bronze)
        body = {
            "bronze_table": bronze.full_name,
            "tenant_id": tenant_id,
            "dataset_id": dataset_id,
            "silver_table": silver.full_name,
            "plan": plan_json(plan),
        }
        data = self._json("POST", "/databricks/transformations/silver", body, f"building silver table {silver.full_name}")
        rows = _int(data, "row_count")
        if "duplicates_removed" in data:
            removed = int(data["duplicates_removed"])
        elif "bronze_row_count" in data:
            removed = int(data["bronze_row_count"]) - rows
        else:
            removed = self.count_rows(bronze) - rows
        return TableResult(location=self._location(data.get("silver_table") or silver.full_name), row_count=rows,
                           duplicates_removed=removed)

    def count_rows(self, ref: TableRef) -> int:
        dataset_id, _ = self._dataset_of(ref)
        status = self._json("GET", f"/databricks/datasets/{quote(dataset_id)}/status", None,
                            f"reading the status of dataset {dataset_id}")
        key = f"{ref.schema}_row_count"
        if status.get(key) is None:
            raise PermanentTargetError(f"the MCP server reports no {ref.schema} table for dataset {dataset_id}")
        return int(status[key])

    def location(self, ref: TableRef) -> str:
        return self._location(ref.full_name)

    def _location(self, table: str) -> str:
        return f"mcp://{urlsplit(self.server_url).netloc}/{table}"

    def drop_table(self, ref: TableRef) -> None:
        # The server removes a dataset's tables together; the second call finds nothing.
        try:
            dataset_id, _ = self._dataset_of(ref)
        except PermanentTargetError:
            return
        self.http.request("DELETE", f"/databricks/datasets/{quote(dataset_id)}", what=f"deleting dataset {dataset_id}",
                          expected=(200, 202, 204), allow=(404,))

    def ping(self) -> None:
        self.http.request("GET", "/health", what="the health check", expected=(200,))

    def initialize_catalog(self, catalog: str) -> dict:
        # The server creates catalogs and schemas itself when it loads a dataset.
        self.ping()
        return {"catalog": catalog, "schemas": [f"{catalog}.bronze", f"{catalog}.silver"], "managed_by": "mcp"}

    def describe(self) -> dict:
        return {"target": self.name, "server_url": self.server_url, "public_internal_url": self.public_internal_url}

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
    from service.transform.plan import SilverColumn

    return SilverPlan(columns=[SilverColumn(**c) for c in data["columns"]], null_tokens=list(data.get("null_tokens", [])))


def _int(data: dict, key: str) -> int:
    try:
        return int(data[key])
    except (KeyError, TypeError, ValueError):
        raise PermanentTargetError(f"the MCP server's answer has no valid {key}: {data}") from None
