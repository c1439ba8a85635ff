"""The real stack for the benchmark: embedded PostgreSQL and Redis, the API under gunicorn
and the Celery worker, both started from the Procfile's own command lines.

PostgreSQL and Redis stay up for the whole benchmark; the API and the worker are started
fresh for every scenario (:meth:`BenchStack.start_app`), so the peak memory read from
``VmHWM`` belongs to that scenario alone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from devstack.net import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.redis import EmbeddedRedis
from devstack.s3 import EmbeddedS3
from devstack.stack import migrate_and_create_tenant

ROOT = Path(__file__).resolve().parent.parent

# Used only when the Procfile has no such line.
DEFAULT_WEB = "gunicorn wsgi:app --bind 127.0.0.1:8000 --workers 2 --threads 4"
DEFAULT_WORKER = "celery -A tasks.celery_app worker --loglevel=INFO --concurrency=${WORKER_CONCURRENCY:-2}"


def procfile_commands(path: Path = ROOT / "Procfile") -> dict[str, str]:
    commands = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#") and ":" in line:
            name, _, cmd = line.partition(":")
            commands[name.strip()] = cmd.strip()
    return commands


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) ``pid`` has used so far."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _status_kb(pid: int) -> dict[str, int]:
    """VmHWM / VmRSS of ``pid`` in kB ({} once the process is gone)."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (no psutil needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or parentheses.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


class MemoryWatch:
    """Peak memory per role (api, worker), over every process each tree ever held.

    ``VmHWM`` is the kernel's own peak of a process, so a sample every half second
    misses nothing for processes that live on; the sampling is there for processes that
    exit before the final read (a replaced pool child, a helper subprocess).
    """

    def __init__(self, roots: dict[str, int], interval: float = 0.5):
        self.roots, self.interval = roots, interval
        self.seen: dict[int, dict] = {}
        # The sampling thread and the caller's reads of the CPU figures share ``seen``.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memory-watch", daemon=True)

    def start(self) -> MemoryWatch:
        self._thread.start()
        return self

    def sample(self) -> None:
        with self._lock:
            self._sample()

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by each role's processes, those that already exited
        included (as of their last sample); the difference of two calls is what a role used
        in between."""
        self.sample()
        with self._lock:
            return {role: sum(e["cpu_s"] for e in self.seen.values() if e["role"] == role) for role in self.roots}

    def _sample(self) -> None:
        for role, root in self.roots.items():
            for pid in process_tree(root):
                kb = _status_kb(pid)
                if not kb:
                    continue
                entry = self.seen.setdefault(
                    pid,
                    {"role": role, "pid": pid, "cmd": _cmdline(pid)[:160], "hwm_kb": 0, "rss_max_kb": 0, "cpu_s": 0.0},
                )
                entry["cpu_s"] = max(entry["cpu_s"], _cpu_s(pid))
                entry["hwm_kb"] = max(entry["hwm_kb"], kb.get("VmHWM", 0))
                entry["rss_max_kb"] = max(entry["rss_max_kb"], kb.get("VmRSS", 0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def finish(self) -> dict:
        """Read every process once more (call just before stopping them) and summarise."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.sample()
        summary: dict = {"processes": sorted(self.seen.values(), key=lambda e: (e["role"], e["pid"]))}
        for role in self.roots:
            procs = [e for e in self.seen.values() if e["role"] == role]
            summary[f"{role}_peak_bytes"] = max((e["hwm_kb"] for e in procs), default=0) * 1024
            summary[f"{role}_processes"] = len(procs)
            summary[f"{role}_cpu_s"] = round(sum(e["cpu_s"] for e in procs), 2)
        return summary


class Proc:
    """One process of the stack in its own process group, output to a log file."""

    def __init__(self, name: str, command: str, env: dict, log_path: Path):
        self.name, self.command, self.env, self.log_path = name, command, env, log_path
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        with open(self.log_path, "ab") as log:
            # Through sh like honcho does, so ${VAR:-default} in the Procfile expands; exec env
            # takes a line's leading VAR=value words and keeps the pid that of gunicorn / celery.
            self.proc = subprocess.Popen(
                ["sh", "-c", f"exec env {self.command}"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 60) -> None:
        if not self.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])


class BenchStack:
    def __init__(self, root: Path, extra_env: dict[str, str] | None = None, *, storage: str = "local"):
        self.root = Path(root)
        # Files and tables on an embedded S3 server, for the ratio of S3 to local runs.
        self.s3 = EmbeddedS3(self.root / "s3") if storage == "s3" else None
        self.pg = EmbeddedPostgres(self.root / "pg")
        self.redis = EmbeddedRedis(self.root / "redis", port=0)
        self.extra_env = dict(extra_env or {})
        self.procs: dict[str, Proc] = {}
        self.watch: MemoryWatch | None = None
        self._memory: dict = {}
        self.key = ""
        self.base = ""
        self.logs = self.root / "logs"
        self.scenario = ""
        self.commands: dict[str, str] = {}

    # -- servers, schema and tenant: once per benchmark
    def start_servers(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        database_url = self.pg.start()
        redis_url = self.redis.start()
        storage_env = self.s3.start().env() if self.s3 is not None else {}
        bins = [str(Path(sys.executable).parent), str(ROOT / ".venv" / "bin")]
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and p not in bins]
        self.env = {
            **os.environ,
            "PATH": os.pathsep.join(dict.fromkeys(bins + path)),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DATA_DIR": str(self.root / "data"),
            **storage_env,
            **self.extra_env,
        }
        self.key = migrate_and_create_tenant(self.env, "bench")

    # -- API and worker: fresh per scenario
    def start_app(self, scenario: str, timeout: float = 90) -> None:
        self.scenario = scenario
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        commands = procfile_commands()
        web = commands.get("web", DEFAULT_WEB)
        web, n = re.subn(r"(--bind[= ]|-b ?)\S+", lambda m: f"{m.group(1)}127.0.0.1:{port}", web)
        if not n:
            web += f" --bind 127.0.0.1:{port}"
        worker = commands.get("worker", DEFAULT_WORKER)
        self.commands = {"api": web, "worker": worker}
        self.procs = {
            "api": Proc("api", web, self.env, self.logs / f"{scenario}-api.log").start(),
            "worker": Proc("worker", worker, self.env, self.logs / f"{scenario}-worker.log").start(),
        }
        self._wait_ready(timeout)
        self.watch = MemoryWatch({role: p.pid for role, p in self.procs.items()}).start()
        self._memory = {}

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        api_ok = worker_ok = False
        while time.monotonic() < deadline:
            for proc in self.procs.values():
                if not proc.alive():
                    raise RuntimeError(f"{proc.name} exited during start-up:\n{proc.tail()}")
            if not api_ok:
                try:
                    api_ok = requests.get(f"{self.base}/readyz", timeout=2).status_code == 200
                except requests.RequestException:
                    pass
            # Celery logs "<name> ready." once its pool is up and it consumes.
            worker_ok = worker_ok or re.search(r"\bready\.", self.procs["worker"].log_text()) is not None
            if api_ok and worker_ok:
                return
            time.sleep(0.3)
        raise RuntimeError(
            f"stack not ready in {timeout}s (api={api_ok}, worker={worker_ok})\n"
            f"api:\n{self.procs['api'].tail()}\nworker:\n{self.procs['worker'].tail()}"
        )

    def pids(self) -> dict[str, list[int]]:
        return {role: process_tree(p.pid) for role, p in self.procs.items() if p.alive()}

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds per role so far ({} once the watch has ended)."""
        return self.watch.cpu_s() if self.watch is not None else {}

    def memory(self) -> dict:
        """Peak memory of the running API and worker, read now; the watch ends here."""
        if self.watch is not None:
            self._memory = self.watch.finish()
            self.watch = None
        return self._memory

    def stop_app(self) -> dict:
        """Stop the API and the worker; return their peak memory (read just before)."""
        memory = self.memory()
        for proc in self.procs.values():
            proc.stop()
        self.procs = {}
        return memory

    def shutdown(self) -> None:
        for proc in self.procs.values():
            try:
                proc.stop(timeout=20)
            except Exception:
                pass
        self.procs = {}
        self.redis.stop()
        self.pg.stop()
        if self.s3 is not None:
            self.s3.stop()
