"""A local MCP server for tests: the HTTP API the MCP target calls, building real tables.

``POST /databricks/datasets`` really downloads ``parquet_url`` over HTTP with the internal
API key (so the app under test must be served over HTTP) and writes the bronze table;
``POST /databricks/transformations/silver`` builds the silver table with the plan sent in
the request (or, without one, a plan inferred from the downloaded file). Tables are Delta
tables under ``<root>/lakehouse``, written by our own DeltaTarget, so their rules are the
local target's. ``inject()`` queues canned responses; ``stop()``/``start()`` takes the
server down and back on the same port.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import requests
from deltalake import DeltaTable
from flask import Flask, jsonify, request

from service.lakehouse.base import BronzeSource, PermanentTargetError, TableRef, TransientTargetError
from service.lakehouse.delta import DeltaTarget
from service.lakehouse.mcp import plan_from_json
from service.naming import table_name
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
            with requests.get(url, headers={"Authorization": f"Bearer {self.internal_api_key}"}, stream=True,
                              timeout=30) as response:
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
            return jsonify({"status": "ok", "databricks": "connected"})

        @app.post("/databricks/datasets")
        def create_dataset():
            body = request.get_json(silent=True) or {}
            invalid = [k for k in ("tenant_id", "dataset_id", "dataset_name", "parquet_url") if not body.get(k)]
            if not isinstance(body.get("schema"), list):
                invalid.append("schema")
            if invalid:
                return _error(400, "invalid_request", f"missing or invalid fields: {', '.join(invalid)}")
            dataset_id = str(body["dataset_id"])
            catalog = body.get("catalog") or f"tenant_{uuid.UUID(str(body['tenant_id'])).hex[:12]}"
            table = body.get("table") or table_name(body["dataset_name"], uuid.UUID(dataset_id))
            ref = TableRef(catalog, "bronze", table)
            path = emulator.downloads_dir / f"{dataset_id}.parquet"
            try:
                emulator._download(body["parquet_url"], path)
            except DownloadError as exc:
                if exc.status == 0 or exc.status >= 500:
                    return _error(502, "download_failed", f"cannot download {body['parquet_url']}: {exc}")
                return _error(422, "download_failed", f"cannot download {body['parquet_url']}: {exc}")
            ingested_at = datetime.fromisoformat(body["ingested_at"]) if body.get("ingested_at") else datetime.now(timezone.utc)
            source = BronzeSource(dataset_id=dataset_id, parquet_path=path,
                                  source_file=body.get("source_file") or path.name, ingested_at=ingested_at,
                                  tenant_id=str(body["tenant_id"]), dataset_name=body["dataset_name"])
            try:
                result = emulator.lakehouse.write_bronze(ref, source)
            except (PermanentTargetError, TransientTargetError) as exc:
                return _error(500 if isinstance(exc, TransientTargetError) else 400, "databricks_error", str(exc))
            with emulator._lock:
                entry = emulator.datasets.setdefault(dataset_id, {})
                entry.update(tenant_id=str(body["tenant_id"]), bronze_table=ref.full_name, file=str(path),
                             schema=body["schema"])
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
            silver_ref = _ref(body["silver_table"]) if body.get("silver_table") else \
                TableRef(bronze.catalog, "silver", bronze.table)
            if body.get("plan"):
                plan = plan_from_json(body["plan"])
            else:
                from service.transform import infer_plan

                plan = infer_plan(entry["file"], null_tokens=emulator.null_tokens)
            try:
                result = emulator.lakehouse.write_silver(bronze, silver_ref, plan)
            except (PermanentTargetError, TransientTargetError) as exc:
                return _error(500 if isinstance(exc, TransientTargetError) else 400, "databricks_error", str(exc))
            with emulator._lock:
                entry["silver_table"] = silver_ref.full_name
            return jsonify({"silver_table": silver_ref.full_name, "row_count": result.row_count,
                            "bronze_row_count": result.row_count + result.duplicates_removed})

        @app.get("/databricks/datasets/<dataset_id>/status")
        def status(dataset_id):
            with emulator._lock:
                entry = emulator.datasets.get(dataset_id)
            if entry is None:
                return _error(404, "not_found", f"no dataset {dataset_id}")
            body = {"dataset_id": dataset_id, "tenant_id": entry["tenant_id"], "bronze_table": entry.get("bronze_table"),
                    "silver_table": entry.get("silver_table"), "bronze_row_count": None, "silver_row_count": None}
            for layer in ("bronze", "silver"):
                name = entry.get(f"{layer}_table")
                if name and emulator.table_exists(name):
                    body[f"{layer}_row_count"] = emulator.lakehouse.count_rows(_ref(name))
            body["status"] = "silver" if body["silver_row_count"] is not None else \
                "bronze" if body["bronze_row_count"] is not None else "pending"
            return jsonify(body)

        @app.delete("/databricks/datasets/<dataset_id>")
        def delete(dataset_id):
            with emulator._lock:
                entry = emulator.datasets.pop(dataset_id, None)
            if entry is None:
                return _error(404, "not_found", f"no dataset {dataset_id}")
            for layer in ("bronze", "silver"):
                if entry.get(f"{layer}_table"):
                    emulator.lakehouse.drop_table(_ref(entry[f"{layer}_table"]))
            Path(entry["file"]).unlink(missing_ok=True)
            return "", 204

        return app


class DownloadError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def _ref(full_name: str) -> TableRef:
    catalog, schema, table = full_name.split(".")
    return TableRef(catalog, schema, table)
