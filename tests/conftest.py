"""Test stack: one PostgreSQL and one Redis per session (embedded unless TEST_DATABASE_URL /
TEST_REDIS_URL are set), migrated once with Alembic, and a real Celery worker process."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.helpers import ServerClient, start_worker

ROOT = Path(__file__).resolve().parent.parent
INTERNAL_KEY = "internal-test-key-" + secrets.token_hex(8)
# The embedded PostgreSQL's wrapper reports each handle it closes at exit, after pytest's summary.
logging.getLogger("pgserver").setLevel(logging.WARNING)


def _fresh_database(server_url: str) -> str:
    """Create an empty database on the server for this session and return its URL."""
    url = make_url(server_url)
    name = f"lakesync_test_{secrets.token_hex(4)}"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return url.set(database=name).render_as_string(hide_password=False)


def _drop_database(db_url: str) -> None:
    url = make_url(db_url)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))
    admin.dispose()


def scratch_dir(prefix: str):
    """A world-traversable temporary directory: the embedded PostgreSQL runs as its own
    user when tests run as root, and pytest's own temp root is private to the test user."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def stack_dir():
    """Scratch directory for this session's servers, files and lakehouse."""
    path = scratch_dir("lakesync-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server(stack_dir):
    """URL of a PostgreSQL server: TEST_DATABASE_URL, else an embedded one."""
    if os.environ.get("TEST_DATABASE_URL"):
        yield os.environ["TEST_DATABASE_URL"]
        return
    from devstack.postgres import EmbeddedPostgres

    server = EmbeddedPostgres(stack_dir / "pg")
    url = server.start()
    yield url
    server.stop()


@pytest.fixture(scope="session")
def redis_server(stack_dir):
    """The embedded Redis of this session (None when TEST_REDIS_URL is used)."""
    if os.environ.get("TEST_REDIS_URL"):
        yield None
        return
    from devstack.redis import EmbeddedRedis

    server = EmbeddedRedis(stack_dir / "redis", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server(stack_dir):
    """An embedded S3-compatible server (SeaweedFS) for the session."""
    from devstack.s3 import EmbeddedS3

    server = EmbeddedS3(stack_dir / "s3").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    """URL of the session's Redis."""
    return os.environ.get("TEST_REDIS_URL") or redis_server.url


@pytest.fixture(scope="session")
def database_url(postgres_server):
    """A fresh database for the session, migrated to head with Alembic."""
    from alembic import command
    from alembic.config import Config

    url = _fresh_database(postgres_server)
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = url
    cfg.attributes["skip_logging"] = True
    command.upgrade(cfg, "head")
    yield url
    from service.db import dispose_engine

    dispose_engine()
    _drop_database(url)


@pytest.fixture(scope="session")
def app_env(stack_dir, database_url, redis_url) -> dict:
    """Environment shared by the in-process app and the worker process."""
    from devstack.net import free_port

    return {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DATA_DIR": str(stack_dir / "data"),
        "STORAGE_DIR": str(stack_dir / "data" / "datasets"),
        "LAKEHOUSE_DIR": str(stack_dir / "data" / "lakehouse"),
        "INTERNAL_API_KEY": INTERNAL_KEY,
        "SECRET_KEY": "console-test-secret-" + secrets.token_hex(16),
        "SYNC_TARGET": "tests.support.flaky_target:FlakyDeltaTarget",
        "FLAKY_STATE_DIR": str(stack_dir / "flaky"),
        "SYNC_RETRY_ATTEMPTS": "3",
        "SYNC_RETRY_INTERVAL": "0.2",
        "MAX_UPLOAD_MB": "5",
        "MAX_JSON_BODY_MB": "2",
        "DUCKDB_THREADS": "2",
        # The worker's log (stack_dir/worker.log) is read by tests as JSON lines.
        "LOG_FORMAT": "json",
        "WORKER_METRICS_PORT": str(free_port()),
    }


def make_app(env: dict):
    """An app configured by ``env`` alone (as a process started with that environment
    would be), not by this process's environment."""
    from service import create_app
    from service.config import from_env

    flask_app = create_app({**from_env(env), "TESTING": True})
    flask_app.test_client_class = ServerClient
    return flask_app


@pytest.fixture(scope="session")
def app(app_env):
    """The Flask app, configured for the session's stack."""
    return make_app(app_env)


@pytest.fixture(scope="session")
def worker(app, app_env, stack_dir):
    """A real Celery worker process consuming from the session's Redis."""
    log_path = stack_dir / "worker.log"
    proc = start_worker(app_env, log_path, "test", "-E")
    celery = app.extensions["celery"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        if celery.control.ping(timeout=0.5):
            break
    else:
        proc.kill()
        raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-4000:]}")
    yield proc
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def client(app):
    """HTTP client for the app."""
    return app.test_client()


@pytest.fixture
def tenant(app):
    """A new tenant with an API key: (tenant name, catalog, key)."""
    from service.auth import issue_key
    from service.db import session_scope
    from service.models import Tenant
    from service.naming import tenant_slug

    name = f"t{uuid.uuid4().hex[:10]}"
    with app.app_context(), session_scope() as session:
        row = Tenant(name=name, slug=tenant_slug(name))
        session.add(row)
        session.flush()
        key = issue_key(session, row).key
        catalog = row.catalog
    return {"name": name, "catalog": catalog, "key": key}


@pytest.fixture
def auth(tenant) -> dict:
    """Authorization header of the test tenant."""
    return {"Authorization": f"Bearer {tenant['key']}"}


@pytest.fixture
def other_auth(app) -> dict:
    """Authorization header of a second, unrelated tenant."""
    from service.auth import issue_key
    from service.db import session_scope
    from service.models import Tenant

    name = f"o{uuid.uuid4().hex[:10]}"
    with app.app_context(), session_scope() as session:
        row = Tenant(name=name, slug=name)
        session.add(row)
        session.flush()
        key = issue_key(session, row).key
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="session")
def live_server(app):
    """The app served over real HTTP (werkzeug, threaded) on a free port; yields its base URL."""
    import threading

    from werkzeug.serving import make_server

    from devstack.net import free_port

    server = make_server("127.0.0.1", free_port(), app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
