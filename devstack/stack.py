"""The stack a launcher runs against: URLs from the environment, or embedded servers under DATA_DIR."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

from devstack.flower import flower_basic_auth
from devstack.log import log
from devstack.passwords import stored_password
from devstack.postgres import EmbeddedPostgres
from devstack.processes import signals_deferred
from devstack.redis import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def resolve_stack(
    data_dir: Path, *, keep_running: bool = False, environ: Mapping[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """Yield ``{"DATABASE_URL": ..., "REDIS_URL": ...}``.

    A URL set in the environment is used as is; otherwise an embedded server is started
    (or reused) under ``data_dir/pg`` / ``data_dir/redis``. On exit only the servers this
    call launched are stopped (none with ``keep_running``); reused ones stay up for
    whoever started them.
    """
    environ = os.environ if environ is None else environ
    data_dir = Path(data_dir).expanduser().resolve()
    launched: list[EmbeddedPostgres | EmbeddedRedis] = []
    urls: dict[str, str] = {}
    try:
        servers = {"DATABASE_URL": EmbeddedPostgres(data_dir / "pg"), "REDIS_URL": EmbeddedRedis(data_dir / "redis")}
        for name, server in servers.items():
            if environ.get(name):
                urls[name] = environ[name]
                continue
            # Listed before start(): a Ctrl-C halfway through must still stop it.
            if not server.is_running():
                launched.append(server)
            urls[name] = server.start()
            if not server.started and server in launched:
                launched.remove(server)  # someone else won the race to start it
        yield urls
    finally:
        if not keep_running:
            with signals_deferred():
                for server in reversed(launched):
                    try:
                        server.stop()
                    except Exception as exc:  # keep stopping the others
                        log(f"could not stop {type(server).__name__}: {exc}")


def data_dir_from_env() -> Path:
    return Path(os.environ.get("DATA_DIR") or ROOT / ".data").expanduser().resolve()


def child_env(urls: dict[str, str], data_dir: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of the processes the launcher starts: ``environ`` (this process's
    when not given) with the stack's URLs, DATA_DIR and Flower's credentials."""
    env = dict(os.environ if environ is None else environ)
    env.update(urls)
    env["DATA_DIR"] = str(data_dir)
    # Flower reads it itself: `make run` and `make flower` both get the same credentials.
    env["FLOWER_BASIC_AUTH"] = flower_basic_auth(data_dir, env)
    # Signs the web console's sessions; one key for every API worker, kept across restarts.
    if not env.get("SECRET_KEY", "").strip():
        env["SECRET_KEY"] = stored_password(data_dir / "secret_key")
    # Procfile and Makefile commands (gunicorn, celery, flask) must come from our venv.
    bins = [str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")]
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in bins]
    env["PATH"] = os.pathsep.join(dict.fromkeys(bins)) + os.pathsep + os.pathsep.join(path)
    return env


MIGRATE_COMMAND = [sys.executable, "-m", "alembic", "upgrade", "head"]


def tenant_command(name: str) -> list[str]:
    """The command that creates tenant ``name`` and prints its API key last."""
    return [sys.executable, "-m", "flask", "--app", "wsgi", "tenant", "create", name]


def migrate_and_create_tenant(env: dict[str, str], tenant: str) -> str:
    """Migrate the database of ``env`` to head and create ``tenant``; its new API key.
    Raises CalledProcessError when either step fails."""
    subprocess.run(MIGRATE_COMMAND, cwd=ROOT, env=env, check=True, capture_output=True)
    out = subprocess.run(
        tenant_command(tenant),
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]
