"""One stack per lakehouse target: an app instance configured for it (its test client
publishes to the broker), and a Celery worker process of its own.

Each stack uses its own Redis database number, so no other worker (e.g. the default test
worker on database 0) takes its tasks. The Databricks target talks to a local Databricks
emulator and the MCP target to a local MCP emulator; the MCP emulator downloads Parquet
files from our API, which is therefore also served over real HTTP.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.conftest import INTERNAL_KEY, make_app
from tests.helpers import start_worker

ROOT = Path(__file__).resolve().parents[2]
MCP_KEY = "mcp-test-key-" + secrets.token_hex(8)
# Redis database of each target's broker; 0 belongs to the default test worker.
REDIS_DBS = {"delta": 1, "databricks": 2, "mcp": 3}


def redis_db(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


@dataclass
class Stack:
    name: str
    app: object
    env: dict
    worker: subprocess.Popen
    log_path: Path
    extras: dict = field(default_factory=dict)

    @property
    def celery(self):
        return self.app.extensions["celery"]

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def start_stack(
    name: str, app_env: dict, overrides: dict, stack_dir: Path, *, target: str | None = None, db: int | None = None
) -> Stack:
    """A stack named ``name`` syncing to ``target`` (default: the target of that name) on its
    own Redis database (default: the target's)."""
    env = {
        **app_env,
        "SYNC_TARGET": target or name,
        **overrides,
        "REDIS_URL": redis_db(app_env["REDIS_URL"], REDIS_DBS[name] if db is None else db),
    }
    app = make_app(env)
    log_path = stack_dir / f"worker-{name}.log"
    proc = start_worker(env, log_path, name)
    stack = Stack(name, app, env, proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} worker exited with {proc.returncode}:\n{stack.log_tail()}")
        if stack.celery.control.ping(timeout=0.5):
            return stack
    stop_worker(proc)
    raise RuntimeError(f"{name} worker did not start:\n{stack.log_tail()}")


def stop_worker(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def targets_dir(stack_dir) -> Path:
    path = stack_dir / "targets"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def databricks_emulator(targets_dir):
    from tests.emulators.databricks import DatabricksEmulator

    emulator = DatabricksEmulator(
        targets_dir / "databricks",
        token="dapi-" + secrets.token_hex(12),
        client_id="sp-" + secrets.token_hex(4),
        client_secret=secrets.token_hex(16),
    ).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def internal_api(app_env, targets_dir):
    """Our API served over HTTP, for the MCP emulator to download Parquet files from."""
    from tests.emulators.server import ServerThread

    server = ServerThread(make_app(dict(app_env))).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mcp_emulator(targets_dir):
    from tests.emulators.mcp import McpEmulator

    emulator = McpEmulator(targets_dir / "mcp", api_key=MCP_KEY, internal_api_key=INTERNAL_KEY).start()
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def delta_stack(app_env, targets_dir, stack_dir):
    stack = start_stack("delta", app_env, {"LAKEHOUSE_DIR": str(targets_dir / "delta-lakehouse")}, stack_dir)
    yield stack
    stop_worker(stack.worker)


def databricks_settings(emulator) -> dict:
    # OAuth machine-to-machine here; personal access tokens are covered by the unit tests.
    return {
        "DATABRICKS_HOST": emulator.url,
        "DATABRICKS_TOKEN": "",
        "DATABRICKS_CLIENT_ID": emulator.client_id,
        "DATABRICKS_CLIENT_SECRET": emulator.client_secret,
        "DATABRICKS_WAREHOUSE_ID": emulator.warehouse_id,
        "DATABRICKS_STAGING_VOLUME": "staging.uploads",
        "DATABRICKS_STATEMENT_TIMEOUT": "30",
        "HTTP_TIMEOUT": "10",
    }


@pytest.fixture(scope="session")
def databricks_stack(app_env, stack_dir, databricks_emulator):
    stack = start_stack("databricks", app_env, databricks_settings(databricks_emulator), stack_dir)
    stack.extras["emulator"] = databricks_emulator
    yield stack
    stop_worker(stack.worker)


@pytest.fixture(scope="session")
def mcp_stack(app_env, stack_dir, mcp_emulator, internal_api):
    settings = {
        "MCP_SERVER_URL": mcp_emulator.url,
        "MCP_API_KEY": MCP_KEY,
        "PUBLIC_INTERNAL_URL": internal_api.url,
        "HTTP_TIMEOUT": "10",
    }
    stack = start_stack("mcp", app_env, settings, stack_dir)
    stack.extras["emulator"] = mcp_emulator
    yield stack
    stop_worker(stack.worker)


@pytest.fixture
def delta(delta_stack):
    return delta_stack


@pytest.fixture
def databricks(databricks_stack):
    databricks_stack.extras["emulator"].clear_faults()
    yield databricks_stack
    databricks_stack.extras["emulator"].clear_faults()


@pytest.fixture
def mcp(mcp_stack):
    emulator = mcp_stack.extras["emulator"]
    emulator.clear_faults()
    emulator.start()
    yield mcp_stack
    emulator.start()  # a test that took it down leaves it up for the next
    emulator.clear_faults()
