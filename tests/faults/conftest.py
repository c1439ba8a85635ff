"""Fault-injection stack: its own embedded PostgreSQL and Redis, and the API (gunicorn),
a worker and beat as real processes that tests stop, kill and restart on purpose."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from devstack.net import free_port
from devstack.postgres import EmbeddedPostgres
from devstack.redis import EmbeddedRedis
from devstack.stack import migrate_and_create_tenant
from tests.conftest import scratch_dir

ROOT = Path(__file__).resolve().parents[2]
REPORT: list[dict] = []


class Proc:
    """A process of the stack, in its own process group so it dies whole."""

    def __init__(self, name: str, argv: list[str], env: dict, log_dir: Path):
        self.name, self.argv, self.env = name, argv, env
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group, as in a crash or an OOM kill."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 30) -> None:
        self.signal(signal.SIGTERM)
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class FaultStack:
    def __init__(self, root: Path):
        self.root = root
        self.pg = EmbeddedPostgres(root / "pg")
        self.redis = EmbeddedRedis(root / "redis", port=0)
        self.procs: dict[str, Proc] = {}
        self.key = ""

    def boot(self) -> None:
        database_url = self.pg.start()
        redis_url = self.redis.start()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "DATA_DIR": str(self.root / "data"),
            "INTERNAL_API_KEY": secrets.token_hex(16),
            "SYNC_TARGET": "tests.support.flaky_target:FlakyDeltaTarget",
            "FLAKY_STATE_DIR": str(self.root / "flaky"),
            "FLAKY_SLOW_SECONDS": "4",
            "SYNC_RETRY_INTERVAL": "0.5",
            "SYNC_STUCK_TIMEOUT": "8",
            "SYNC_SWEEP_INTERVAL": "2",
            "SYNC_RELAY_INTERVAL": "1",
            "SYNC_MAX_DELIVERIES": "4",
            "DUCKDB_THREADS": "1",
        }
        self.key = migrate_and_create_tenant(self.env, "faults")
        logs = self.root / "logs"
        logs.mkdir(exist_ok=True)
        celery = [sys.executable, "-m", "celery", "-A", "tasks.celery_app"]
        self.procs = {
            "api": Proc(
                "api",
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "wsgi:app",
                    "-b",
                    f"127.0.0.1:{port}",
                    "-w",
                    "2",
                    "--threads",
                    "8",
                    "--timeout",
                    "120",
                    "--no-control-socket",
                ],
                self.env,
                logs,
            ),
            "worker": Proc(
                "worker",
                [
                    *celery,
                    "worker",
                    "--loglevel=INFO",
                    "-c",
                    "2",
                    "-E",
                    "--without-mingle",
                    "--without-gossip",
                    "-n",
                    "faults@%h",
                ],
                self.env,
                logs,
            ),
            "beat": Proc(
                "beat", [*celery, "beat", "--loglevel=INFO", "-s", str(self.root / "beat-schedule")], self.env, logs
            ),
        }
        for proc in self.procs.values():
            proc.start()
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"API not ready:\n{self.procs['api'].tail()}")

    def keep_logs(self) -> None:
        """Copy the processes' logs out of the scratch dir, for a look after a failure."""
        out = Path(os.environ.get("FAULT_LOG_DIR", "/tmp/lakesync-fault-logs"))
        out.mkdir(parents=True, exist_ok=True)
        for proc in self.procs.values():
            if proc.log_path.exists():
                shutil.copy(proc.log_path, out / proc.log_path.name)

    def shutdown(self) -> None:
        self.keep_logs()
        for proc in self.procs.values():
            proc.stop()
        self.redis.stop()
        self.pg.stop()

    # -- HTTP helpers
    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def upload(self, name: str, content: bytes, timeout: float = 60) -> requests.Response:
        return requests.post(
            f"{self.base}/api/v1/datasets",
            headers=self.auth,
            files={"file": (f"{name}.csv", content, "text/csv")},
            timeout=timeout,
        )

    def status(self, dataset_id: str) -> dict:
        response = requests.get(f"{self.base}/api/v1/datasets/{dataset_id}/sync", headers=self.auth, timeout=30)
        response.raise_for_status()
        return response.json()

    def wait_until(self, dataset_id: str, predicate, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        body = None
        while time.monotonic() < deadline:
            try:
                body = self.status(dataset_id)
                if predicate(body):
                    return body
            except requests.RequestException:
                pass  # the API may be restarting or PostgreSQL may be down for a moment
            time.sleep(0.2)
        raise AssertionError(
            f"{what} not reached for {dataset_id} in {timeout}s; last: {body}\n"
            f"worker log:\n{self.procs['worker'].tail()}"
        )

    def wait_done(self, dataset_ids, timeout: float = 120) -> dict[str, dict]:
        return {
            i: self.wait_until(i, lambda b: b["status"] in ("synced", "failed"), timeout, "synced/failed")
            for i in dataset_ids
        }


def csv_with_duplicates(rows: int, dups: int, seed: str = "") -> bytes:
    """A CSV of `rows` distinct rows plus `dups` exact copies of the first rows."""
    lines = [f"{i},{seed}name{i},0{i % 90 + 10},{i * 0.5}" for i in range(rows)]
    lines += lines[:dups]
    return ("id,name,code,value\n" + "\n".join(lines) + "\n").encode()


def verify(
    stack: FaultStack, fault: str, expected: dict[str, tuple[int, int]], final: dict[str, dict], sent: int | None = None
) -> dict:
    """Check every accepted upload: synced, bronze == source rows, silver == source − duplicates,
    nothing twice in the tables; record a line of the report."""
    from deltalake import DeltaTable

    synced = failed = lost = duplicated = 0
    reasons: set[str] = set()
    for dataset_id, (source_rows, distinct_rows) in expected.items():
        body = final.get(dataset_id)
        if body is None:
            lost += 1
            continue
        if body["status"] != "synced":
            failed += 1
            reasons.add(body["last_error"])
            continue
        synced += 1
        bronze = DeltaTable(body["bronze_location"]).to_pyarrow_table()
        silver = DeltaTable(body["silver_location"]).to_pyarrow_table()
        if (
            bronze.num_rows != source_rows
            or silver.num_rows != distinct_rows
            or body["row_count_bronze"] != source_rows
            or body["row_count_silver"] != distinct_rows
        ):
            duplicated += 1
    line = {
        "fault": fault,
        "uploads_sent": sent if sent is not None else len(expected),
        "accepted": len(expected),
        "synced": synced,
        "failed": failed,
        "lost": lost,
        "duplicated": duplicated,
        "reasons": sorted(reasons)[:5],
    }
    REPORT.append(line)
    return line


@pytest.fixture(scope="session")
def stack():
    """The running fault-injection stack."""
    root = scratch_dir("lakesync-faults-")
    fault_stack = FaultStack(root)
    try:
        fault_stack.boot()
        yield fault_stack
    finally:
        fault_stack.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def healthy(stack):
    """Every test starts with every process and server up."""
    if not stack.redis.is_running():
        stack.redis.start()
    if not stack.pg.is_running():
        stack.pg.start()
    for proc in stack.procs.values():
        if proc.proc is None or proc.proc.poll() is not None:
            proc.start()
    stack.wait_ready()
    yield


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    cols = ["fault", "uploads_sent", "accepted", "synced", "failed", "lost", "duplicated"]
    terminalreporter.section("fault-injection results")
    terminalreporter.write_line("| " + " | ".join(cols) + " |")
    terminalreporter.write_line("|" + "---|" * len(cols))
    for line in REPORT:
        terminalreporter.write_line("| " + " | ".join(str(line[c]) for c in cols) + " |")
    out = os.environ.get("FAULT_REPORT")
    if out:
        Path(out).write_text(json.dumps(REPORT, indent=2))
