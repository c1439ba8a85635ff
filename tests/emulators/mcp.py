"""A local MCP server for tests that speaks only the documented protocol, building real tables.

It reads no request field beyond the protocol's and answers with no field beyond it:

- ``POST /databricks/datasets`` ``{tenant_id, dataset_id, dataset_name, parquet_url, schema}``
  → ``{bronze_table, row_count}``: really downloads ``parquet_url`` over HTTP with the
  internal API key (so the app under test must be served over HTTP) and writes the bronze
  table under a name of its own choosing (not the one a client would propose);
- ``POST /databricks/transformations/silver`` ``{bronze_table, tenant_id}`` →
  ``{silver_table, row_count}``: infers its own plan from the downloaded file;
- ``GET /databricks/datasets/{id}/status`` → ``{status, bronze_exists, silver_exists,
  last_sync_at, error}``; ``DELETE /databricks/datasets/{id}`` with ``{"tenant_id"}``;
  ``GET /health``.

Tables are Delta tables under ``<root>/lakehouse``, written by our own DeltaTarget.
``inject()`` queues canned responses; ``stop()``/``start()`` takes the server down and
back on the same port.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import requests
from deltalake import DeltaTable
from flask import Flask, jsonify, request

from service.lakehouse.base import PermanentTargetError, SyncContext, TableRef, TransientTargetError
from service.lakehouse.delta import DeltaTarget
from service.transform import infer_plan
from tests.emulators.server import Emulator, FaultQueue, ServerThread

DEFAULT_NULL_TOKENS = ["", "NULL", "null", "N/A", "NA", "None"]


def _error(status: int, code: str, message: str):
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    return response


class McpEmulator(Emulator):
    def __init__(self, root: Path, *, api_key: str, internal_api_key: str, null_tokens: list[str] | None = None):
        self.root = Path(root)
        self.downloads_dir = self.root / "downloads"
        self.downloads_dir.mkdir(parents=True, exist_ok=True)
        self.api_key = api_key
        self.internal_api_key = internal_api_key
        self.null_tokens = list(DEFAULT_NULL_TOKENS if null_tokens is None else null_tokens)
        self.lakehouse = DeltaTarget(self.root / "lakehouse", duckdb_threads=2, temp_dir=self.root / "tmp")
        self.faults = FaultQueue()
        self.datasets: dict[str, dict] = {}
        self.downloads: list[tuple[str, int]] = []  # (url, status) of each download
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self.app = self._make_app()
        self.server = ServerThread(self.app)

    def read_table(self, full_name: str) -> pa.Table:
        return DeltaTable(self.lakehouse.location(_ref(full_name))).to_pyarrow_table()

    def table_exists(self, full_name: str) -> bool:
        return (Path(self.lakehouse.location(_ref(full_name))) / "_delta_log").is_dir()

    def _download(self, url: str, dest: Path) -> None:
        partial = dest.with_suffix(".part")
        try:
            with requests.get(
                url, headers={"Authorization": f"Bearer {self.internal_api_key}"}, stream=True, timeout=30
            ) as response:
                self.downloads.append((url, response.status_code))
                if response.status_code != 200:
                    raise DownloadError(response.status_code, response.text[:300])
                with open(partial, "wb") as out:
                    for chunk in response.iter_content(1024 * 1024):
                        out.write(chunk)
            partial.replace(dest)
        except requests.RequestException as exc:
            self.downloads.append((url, 0))
            raise DownloadError(0, str(exc)) from exc
        finally:
            partial.unlink(missing_ok=True)

    def _make_app(self) -> Flask:
        app = Flask(f"mcp-emulator-{id(self)}")
        emulator = self

        @app.before_request
        def _faults_and_auth():
            canned = emulator.faults.take(request)
            if canned is not None:
                return canned
            if request.headers.get("Authorization") != f"Bearer {emulator.api_key}":
                return _error(401, "unauthorized", "missing or invalid API key")
            return None

        @app.after_request
        def _log(response):
            emulator.requests.append((request.method, request.path, response.status_code))
            return response

        @app.get("/health")
        def health():
            return jsonify({"status": "ok"})

        @app.post("/databricks/datasets")
        def create_dataset():
            body = request.get_json(silent=True) or {}
            invalid = [k for k in ("tenant_id", "dataset_id", "dataset_name", "parquet_url") if not body.get(k)]
            if not isinstance(body.get("schema"), list):
                invalid.append("schema")
            if invalid:
                return _error(400, "invalid_request", f"missing or invalid fields: {', '.join(invalid)}")
            dataset_id, tenant_id = str(body["dataset_id"]), str(body["tenant_id"])
            ref = emulator.bronze_ref(tenant_id, dataset_id)
            path = emulator.downloads_dir / f"{dataset_id}.parquet"
            try:
                emulator._download(body["parquet_url"], path)
            except DownloadError as exc:
                if exc.status == 0 or exc.status >= 500:
                    return _error(502, "download_failed", f"cannot download {body['parquet_url']}: {exc}")
                return _error(422, "download_failed", f"cannot download {body['parquet_url']}: {exc}")
            ctx = _context(dataset_id, tenant_id, body["dataset_name"], ref, path)
            try:
                result = emulator.lakehouse.write_bronze(ctx)
            except (PermanentTargetError, TransientTargetError) as exc:
                return emulator._failed(dataset_id, exc)
            with emulator._lock:
                entry = emulator.datasets.setdefault(dataset_id, {})
                entry.update(
                    tenant_id=tenant_id,
                    dataset_name=body["dataset_name"],
                    bronze_table=ref.full_name,
                    file=str(path),
                    schema=body["schema"],
                    error=None,
                    last_sync_at=_now(),
                )
                entry.pop("silver_table", None)
            return jsonify({"bronze_table": ref.full_name, "row_count": result.row_count}), 201

        @app.post("/databricks/transformations/silver")
        def silver():
            body = request.get_json(silent=True) or {}
            if not body.get("bronze_table") or not body.get("tenant_id"):
                return _error(400, "invalid_request", "bronze_table and tenant_id are required")
            with emulator._lock:
                found = [(k, v) for k, v in emulator.datasets.items() if v.get("bronze_table") == body["bronze_table"]]
            if not found:
                return _error(404, "not_found", f"no bronze table {body['bronze_table']}")
            dataset_id, entry = found[0]
            if entry["tenant_id"] != str(body["tenant_id"]):
                return _error(403, "forbidden", "the bronze table belongs to another tenant")
            bronze = _ref(entry["bronze_table"])
            silver_ref = TableRef(bronze.catalog, "silver", bronze.table)
            plan = infer_plan(entry["file"], null_tokens=emulator.null_tokens)
            ctx = _context(
                dataset_id, entry["tenant_id"], entry["dataset_name"], bronze, Path(entry["file"]), silver=silver_ref
            )
            try:
                result = emulator.lakehouse.write_silver(ctx, plan)
            except (PermanentTargetError, TransientTargetError) as exc:
                return emulator._failed(dataset_id, exc)
            with emulator._lock:
                entry.update(silver_table=silver_ref.full_name, error=None, last_sync_at=_now())
            return jsonify({"silver_table": silver_ref.full_name, "row_count": result.row_count})

        @app.get("/databricks/datasets/<dataset_id>/status")
        def status(dataset_id):
            with emulator._lock:
                entry = dict(emulator.datasets.get(dataset_id) or {})
            if not entry:
                return _error(404, "not_found", f"no dataset {dataset_id}")
            exists = {
                layer: bool(entry.get(f"{layer}_table")) and emulator.table_exists(entry[f"{layer}_table"])
                for layer in ("bronze", "silver")
            }
            state = (
                "failed"
                if entry.get("error")
                else "silver"
                if exists["silver"]
                else "bronze"
                if exists["bronze"]
                else "pending"
            )
            return jsonify(
                {
                    "status": state,
                    "bronze_exists": exists["bronze"],
                    "silver_exists": exists["silver"],
                    "last_sync_at": entry.get("last_sync_at"),
                    "error": entry.get("error"),
                }
            )

        @app.delete("/databricks/datasets/<dataset_id>")
        def delete(dataset_id):
            body = request.get_json(silent=True) or {}
            if not body.get("tenant_id"):
                return _error(400, "invalid_request", "tenant_id is required")
            with emulator._lock:
                entry = emulator.datasets.get(dataset_id)
                if entry is not None and entry["tenant_id"] != str(body["tenant_id"]):
                    return _error(403, "forbidden", "the dataset belongs to another tenant")
                emulator.datasets.pop(dataset_id, None)
            if entry is None:
                return _error(404, "not_found", f"no dataset {dataset_id}")
            tables = [_ref(entry[f"{layer}_table"]) for layer in ("bronze", "silver") if entry.get(f"{layer}_table")]
            emulator.lakehouse.drop_tables(
                _context(dataset_id, entry["tenant_id"], entry["dataset_name"], tables[0], Path(entry["file"])), tables
            )
            Path(entry["file"]).unlink(missing_ok=True)
            return "", 204

        return app

    @staticmethod
    def bronze_ref(tenant_id: str, dataset_id: str) -> TableRef:
        """The server's own name for a dataset's bronze table."""
        return TableRef(f"mcp_{uuid.UUID(tenant_id).hex[:12]}", "bronze", f"ds_{uuid.UUID(dataset_id).hex}")

    def _failed(self, dataset_id: str, exc: Exception):
        with self._lock:
            if dataset_id in self.datasets:
                self.datasets[dataset_id]["error"] = str(exc)
        return _error(500 if isinstance(exc, TransientTargetError) else 400, "databricks_error", str(exc))


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _context(
    dataset_id: str, tenant_id: str, name: str, bronze: TableRef, path: Path, silver: TableRef | None = None
) -> SyncContext:
    return SyncContext(
        dataset_id=dataset_id,
        tenant_id=tenant_id,
        run_id="",
        dataset_name=name,
        bronze=bronze,
        silver=silver or TableRef(bronze.catalog, "silver", bronze.table),
        source_path=path,
        source_file=path.name,
        ingested_at=datetime.now(UTC),
    )


class DownloadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def _ref(full_name: str) -> TableRef:
    catalog, schema, table = full_name.split(".")
    return TableRef(catalog, schema, table)
