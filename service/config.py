"""Configuration, read from the environment in one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA_DIR = ROOT / ".data"

DEFAULT_NULL_TOKENS = ("", "NULL", "null", "N/A", "NA", "None")
# The worker's steps de-duplicate whole tables: sized so the hash table of the 5M-row
# benchmark file fits (bench/README.md, "Why the settings are what they are"); tables whose
# hash table would not fit are de-duplicated by row hash (duckdb_sql.dedup_by_hash).
DEFAULT_SYNC_MEMORY_LIMIT = "704MB"
# Read for s3:// URLs (service.storage.s3); empty ones are left to the library's defaults.
S3_SETTINGS = (
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ALLOW_HTTP",
    "AWS_CONDITIONAL_PUT",
)


def sync_duckdb(config: dict) -> tuple[str, int, str | None]:
    """(memory limit, threads, spill directory) of a worker's DuckDB: inference and the Delta
    target use these, and so share one database per process."""
    data_dir = config.get("DATA_DIR")
    return (
        str(config.get("DUCKDB_SYNC_MEMORY_LIMIT") or config.get("DUCKDB_MEMORY_LIMIT") or DEFAULT_SYNC_MEMORY_LIMIT),
        int(config.get("DUCKDB_THREADS") or 2),
        str(Path(data_dir) / "tmp" / "duckdb") if data_dir else None,
    )


def storage_url(config: Mapping) -> str:
    """Where datasets' Parquet files are stored: STORAGE_URL, else the STORAGE_DIR path."""
    return str(config.get("STORAGE_URL") or config.get("STORAGE_DIR") or Path(config["DATA_DIR"]) / "datasets")


def lakehouse_url(config: Mapping) -> str:
    """Where the delta target's tables live: LAKEHOUSE_URL, else the LAKEHOUSE_DIR path."""
    return str(config.get("LAKEHOUSE_URL") or config.get("LAKEHOUSE_DIR") or Path(config["DATA_DIR"]) / "lakehouse")


def data_directories(config: dict) -> list[str]:
    """Every directory the processes read or write data files in (DuckDB may touch no other)."""
    data_dir = config.get("DATA_DIR")
    # Object-store URLs are read through local copies, which live under DATA_DIR.
    urls = [u for u in (storage_url(config), lakehouse_url(config)) if "://" not in u] if data_dir else []
    return [
        d
        for d in (
            data_dir,
            config.get("STORAGE_DIR"),
            config.get("LAKEHOUSE_DIR"),
            *urls,
            str(Path(data_dir) / "tmp") if data_dir else None,
        )
        if d
    ]


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


class _Env:
    """Typed reads of one environment mapping."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ

    def get(self, name: str, default: str = "") -> str:
        return self.environ.get(name, default)

    def int(self, name: str, default: int) -> int:
        return int(self.environ.get(name, default))

    def float(self, name: str, default: float) -> float:
        return float(self.environ.get(name, default))

    def bool(self, name: str, default: bool) -> bool:
        raw = self.environ.get(name)
        return default if raw is None or not str(raw).strip() else as_bool(raw, name)

    def list(self, name: str, default: tuple[str, ...]) -> list[str]:
        raw = self.environ.get(name)
        if raw is None:
            return list(default)
        # Comma-separated; an empty item ("a,,b" or a leading comma) is the empty-string token.
        return raw.split(",")


def from_env(environ: Mapping[str, str] | None = None) -> dict:
    """Every setting the app, the worker and the CLI read, with its default, from
    ``environ`` (the process environment when not given)."""
    env = _Env(os.environ if environ is None else environ)
    data_dir = Path(env.get("DATA_DIR", str(DEFAULT_DATA_DIR)))
    mcp_key = env.get("MCP_API_KEY", "")
    return {
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": env.get("DATABASE_URL", ""),
        "REDIS_URL": env.get("REDIS_URL", ""),
        "STORAGE_DIR": env.get("STORAGE_DIR", str(data_dir / "datasets")),
        "LAKEHOUSE_DIR": env.get("LAKEHOUSE_DIR", str(data_dir / "lakehouse")),
        # A local path or s3://bucket/prefix; empty means STORAGE_DIR / LAKEHOUSE_DIR.
        "STORAGE_URL": env.get("STORAGE_URL", ""),
        "LAKEHOUSE_URL": env.get("LAKEHOUSE_URL", ""),
        # The object store's endpoint and credentials, under the standard AWS names.
        **{name: env.get(name, "") for name in S3_SETTINGS},
        "MAX_UPLOAD_MB": env.int("MAX_UPLOAD_MB", 1024),
        "MAX_JSON_BODY_MB": env.int("MAX_JSON_BODY_MB", 64),
        "MAX_COLUMNS": env.int("MAX_COLUMNS", 4096),
        "PARQUET_DECODE_BUDGET_MB": env.int("PARQUET_DECODE_BUDGET_MB", 256),
        "MAX_UNCOMPRESSED_MB": env.int("MAX_UNCOMPRESSED_MB", 4096),
        "MAX_COMPRESSION_RATIO": env.int("MAX_COMPRESSION_RATIO", 100),
        "MAX_BAD_ROWS": env.int("MAX_BAD_ROWS", 10_000),
        "INTERNAL_API_KEY": env.get("INTERNAL_API_KEY", mcp_key),
        "INTERNAL_URL_SIGNING_KEY": env.get("INTERNAL_URL_SIGNING_KEY", ""),
        "INTERNAL_URL_TTL": env.int("INTERNAL_URL_TTL", 3600),
        "INTERNAL_ACCEPT_BEARER": env.bool("INTERNAL_ACCEPT_BEARER", True),
        "SYNC_TARGET": env.get("SYNC_TARGET", "delta"),
        # Whether datasets reach the lakehouse at all, and whether an upload starts its sync by itself.
        "SYNC_ENABLED": env.bool("SYNC_ENABLED", True),
        "AUTO_SYNC": env.bool("AUTO_SYNC", True),
        "SYNC_RETRY_ATTEMPTS": env.int("SYNC_RETRY_ATTEMPTS", 3),
        "SYNC_RETRY_INTERVAL": env.float("SYNC_RETRY_INTERVAL", 300.0),
        "BROKER_VISIBILITY_TIMEOUT": env.int("BROKER_VISIBILITY_TIMEOUT", 7200),
        "SYNC_MAX_DELIVERIES": env.int("SYNC_MAX_DELIVERIES", 5),
        "SYNC_STUCK_TIMEOUT": env.float("SYNC_STUCK_TIMEOUT", 600.0),
        "SYNC_SWEEP_INTERVAL": env.float("SYNC_SWEEP_INTERVAL", 30.0),
        "SYNC_RELAY_INTERVAL": env.float("SYNC_RELAY_INTERVAL", 10.0),
        "NULL_TOKENS": env.list("NULL_TOKENS", DEFAULT_NULL_TOKENS),
        "DUCKDB_MEMORY_LIMIT": env.get("DUCKDB_MEMORY_LIMIT", "512MB"),
        "DUCKDB_SYNC_MEMORY_LIMIT": env.get("DUCKDB_SYNC_MEMORY_LIMIT", DEFAULT_SYNC_MEMORY_LIMIT),
        "DUCKDB_THREADS": env.int("DUCKDB_THREADS", os.cpu_count() or 2),
        "LOG_LEVEL": env.get("LOG_LEVEL", "INFO"),
        "LOG_FORMAT": env.get("LOG_FORMAT", "text").strip().lower(),
        # The worker serves its metrics on this port when set (make run: 9808).
        "WORKER_METRICS_PORT": int(env.get("WORKER_METRICS_PORT") or 0),
        "WORKER_METRICS_ADDR": env.get("WORKER_METRICS_ADDR", "0.0.0.0"),
        # Signs the web console's session cookie and CSRF tokens; the console is off while unset.
        "SECRET_KEY": env.get("SECRET_KEY", ""),
        # Set when the console is served over HTTPS, so the cookie never travels in clear.
        "SESSION_COOKIE_SECURE": env.bool("SESSION_COOKIE_SECURE", False),
        "FLOWER_URL": env.get("FLOWER_URL", "http://127.0.0.1:5555"),
        # Databricks Unity Catalog (SYNC_TARGET=databricks)
        "DATABRICKS_HOST": env.get("DATABRICKS_HOST", ""),
        "DATABRICKS_TOKEN": env.get("DATABRICKS_TOKEN", ""),
        "DATABRICKS_CLIENT_ID": env.get("DATABRICKS_CLIENT_ID", ""),
        "DATABRICKS_CLIENT_SECRET": env.get("DATABRICKS_CLIENT_SECRET", ""),
        "DATABRICKS_WAREHOUSE_ID": env.get("DATABRICKS_WAREHOUSE_ID", ""),
        "DATABRICKS_STAGING_VOLUME": env.get("DATABRICKS_STAGING_VOLUME", "staging"),
        "DATABRICKS_STATEMENT_TIMEOUT": env.float("DATABRICKS_STATEMENT_TIMEOUT", 600.0),
        "HTTP_TIMEOUT": env.float("HTTP_TIMEOUT", 60.0),
        # MCP server (SYNC_TARGET=mcp)
        "MCP_SERVER_URL": env.get("MCP_SERVER_URL", ""),
        "MCP_API_KEY": mcp_key,
        "PUBLIC_INTERNAL_URL": env.get("PUBLIC_INTERNAL_URL", "http://127.0.0.1:8000"),
    }
