"""An embedded PostgreSQL server (pgserver's binaries) for local runs and tests."""

from __future__ import annotations

import os
import signal
import subprocess
import warnings
from pathlib import Path
from urllib.parse import quote

from devstack.processes import process_name, wait_pid_exit
from service.processes import pid_alive

DATABASE_NAME = "lakesync"


def _pgserver():
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset; the /tmp fallback is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
        from pgserver import _commands, postgres_server, utils
    return pgserver, _commands, postgres_server, utils


class EmbeddedPostgres:
    """A PostgreSQL server (pgserver's binaries) whose cluster lives in ``data_dir``.

    It listens on a Unix socket only, so it never collides with another PostgreSQL on
    5432. pgserver puts the socket in ``data_dir`` or, when that path is too long for a
    Unix socket, in a short per-user runtime directory.
    """

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.url: str | None = None
        #: True when the last start() launched the server rather than reusing a running one.
        self.started = False

    def _system_user(self) -> str | None:
        # Postgres refuses to run as root; pgserver then runs it as a dedicated user.
        return "pgserver" if os.geteuid() == 0 else None

    def _postmaster(self):
        _, _, _, utils = _pgserver()
        try:
            info = utils.PostmasterInfo.read_from_pgdata(self.data_dir)
        except Exception:  # half-written postmaster.pid while the server starts or stops
            return None
        if info is None or not info.is_running():
            return None
        return info

    def _drop_stale_pidfile(self) -> None:
        # After a reboot the pid in postmaster.pid may belong to an unrelated process,
        # which would make pgserver "reuse" a server that does not exist.
        pidfile = self.data_dir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return
        if pid_alive(pid) and process_name(pid) not in (None, "postgres"):
            pidfile.unlink(missing_ok=True)

    def is_running(self) -> bool:
        info = self._postmaster()
        return info is not None and info.status == "ready"

    def start(self) -> str:
        """Start (or reuse) the server, make sure the database exists, return its URL."""
        _, _, postgres_server, _ = _pgserver()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._drop_stale_pidfile()
        before = self._postmaster()
        # Built directly rather than via pgserver.get_server(): that caches one handle per
        # directory for the life of the process, so a start() after stop() would not
        # restart. cleanup_mode=None: we decide when the server stops, not atexit.
        server = postgres_server.PostgresServer(self.data_dir, cleanup_mode=None)
        info = server.get_postmaster_info()
        self.started = before is None or before.pid != info.pid
        if info.socket_dir is None:
            raise RuntimeError(f"postgres in {self.data_dir} is not listening on a Unix socket")
        self._socket_dir, self._port = str(info.socket_dir), int(info.port or 5432)
        self._ensure_database()
        # Unencoded host path: alembic's ConfigParser would choke on %2F escapes.
        host = quote(self._socket_dir, safe="/._-~")
        self.url = f"postgresql+psycopg2://postgres@/{DATABASE_NAME}?host={host}&port={self._port}"
        return self.url

    def _ensure_database(self) -> None:
        import psycopg2
        from psycopg2 import errors

        conn = psycopg2.connect(host=self._socket_dir, port=self._port, user="postgres", dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,))
                if cur.fetchone() is None:
                    try:
                        cur.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
                    except (errors.DuplicateDatabase, errors.UniqueViolation):
                        pass  # created concurrently by another launcher
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server running on ``data_dir`` (whoever started it); no-op when down."""
        info = self._postmaster()
        if info is None:
            return
        _, commands, _, _ = _pgserver()
        try:
            # Fast mode: disconnect clients instead of waiting for them to leave.
            commands.pg_ctl(
                ["-w", "-m", "fast", "-t", str(int(timeout)), "stop"],
                pgdata=self.data_dir,
                user=self._system_user(),
                timeout=timeout + 10,
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            if pid_alive(info.pid):
                os.kill(info.pid, signal.SIGINT)  # the postmaster's own "fast shutdown"
                if not wait_pid_exit(info.pid, timeout):
                    os.kill(info.pid, signal.SIGKILL)
                    wait_pid_exit(info.pid, 5)
        self.started = False
