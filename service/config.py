"""Configuration, read from the environment in one place."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".data"

DEFAULT_NULL_TOKENS = ("", "NULL", "null", "N/A", "NA", "None")
# The worker's steps de-duplicate whole tables: the hash table of a 5M-row file fits in
# this (at 512MB it spilled, and the silver step took about 15% longer); larger files spill.
DEFAULT_SYNC_MEMORY_LIMIT = "704MB"


def sync_duckdb(config: dict) -> tuple[str, int, str | None]:
    """(memory limit, threads, spill directory) of a worker's DuckDB: inference and the Delta
    target use these, and so share one database per process."""
    data_dir = config.get("DATA_DIR")
    return (
        str(config.get("DUCKDB_SYNC_MEMORY_LIMIT") or config.get("DUCKDB_MEMORY_LIMIT") or DEFAULT_SYNC_MEMORY_LIMIT),
        int(config.get("DUCKDB_THREADS") or 2),
        str(Path(data_dir) / "tmp" / "duckdb") if data_dir else None,
    )


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def as_bool(value: object, name: str) -> bool:
    """A switch's value as a bool; settings passed to create_app may still be strings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, not {value!r}")


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None or not raw.strip() else as_bool(raw, name)


def _list(name: str, default: tuple[str, ...]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    # Comma-separated; an empty item ("a,,b" or a leading comma) is the empty-string token.
    return raw.split(",")


def from_env() -> dict:
    """Every setting the app, the worker and the CLI read, with its default."""
    data_dir = Path(os.environ.get("DATA_DIR", DEFAULT_DATA_DIR))
    mcp_key = os.environ.get("MCP_API_KEY", "")
    return {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": os.environ.get("DATABASE_URL", ""),
        "REDIS_URL": os.environ.get("REDIS_URL", ""),
        "STORAGE_DIR": os.environ.get("STORAGE_DIR", str(data_dir / "datasets")),
        "LAKEHOUSE_DIR": os.environ.get("LAKEHOUSE_DIR", str(data_dir / "lakehouse")),
        "MAX_UPLOAD_MB": _int("MAX_UPLOAD_MB", 1024),
        "MAX_JSON_BODY_MB": _int("MAX_JSON_BODY_MB", 64),
        "INTERNAL_API_KEY": os.environ.get("INTERNAL_API_KEY", mcp_key),
        "SYNC_TARGET": os.environ.get("SYNC_TARGET", "delta"),
        # Whether datasets reach the lakehouse at all, and whether an upload starts its sync by itself.
        "SYNC_ENABLED": _bool("SYNC_ENABLED", True),
        "AUTO_SYNC": _bool("AUTO_SYNC", True),
        "SYNC_RETRY_ATTEMPTS": _int("SYNC_RETRY_ATTEMPTS", 3),
        "SYNC_RETRY_INTERVAL": _float("SYNC_RETRY_INTERVAL", 300.0),
        "BROKER_VISIBILITY_TIMEOUT": _int("BROKER_VISIBILITY_TIMEOUT", 7200),
        "SYNC_MAX_DELIVERIES": _int("SYNC_MAX_DELIVERIES", 5),
        "SYNC_STUCK_TIMEOUT": _float("SYNC_STUCK_TIMEOUT", 600.0),
        "SYNC_SWEEP_INTERVAL": _float("SYNC_SWEEP_INTERVAL", 30.0),
        "SYNC_RELAY_INTERVAL": _float("SYNC_RELAY_INTERVAL", 10.0),
        "NULL_TOKENS": _list("NULL_TOKENS", DEFAULT_NULL_TOKENS),
        "DUCKDB_MEMORY_LIMIT": os.environ.get("DUCKDB_MEMORY_LIMIT", "512MB"),
        "DUCKDB_SYNC_MEMORY_LIMIT": os.environ.get("DUCKDB_SYNC_MEMORY_LIMIT", DEFAULT_SYNC_MEMORY_LIMIT),
        "DUCKDB_THREADS": _int("DUCKDB_THREADS", os.cpu_count() or 2),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO"),
        # Databricks Unity Catalog (SYNC_TARGET=databricks)
        "DATABRICKS_HOST": os.environ.get("DATABRICKS_HOST", ""),
        "DATABRICKS_TOKEN": os.environ.get("DATABRICKS_TOKEN", ""),
        "DATABRICKS_CLIENT_ID": os.environ.get("DATABRICKS_CLIENT_ID", ""),
        "DATABRICKS_CLIENT_SECRET": os.environ.get("DATABRICKS_CLIENT_SECRET", ""),
        "DATABRICKS_WAREHOUSE_ID": os.environ.get("DATABRICKS_WAREHOUSE_ID", ""),
        "DATABRICKS_STAGING_VOLUME": os.environ.get("DATABRICKS_STAGING_VOLUME", "staging"),
        "DATABRICKS_STATEMENT_TIMEOUT": _float("DATABRICKS_STATEMENT_TIMEOUT", 600.0),
        "HTTP_TIMEOUT": _float("HTTP_TIMEOUT", 60.0),
        # MCP server (SYNC_TARGET=mcp)
        "MCP_SERVER_URL": os.environ.get("MCP_SERVER_URL", ""),
        "MCP_API_KEY": mcp_key,
        "PUBLIC_INTERNAL_URL": os.environ.get("PUBLIC_INTERNAL_URL", "http://127.0.0.1:8000"),
    }
