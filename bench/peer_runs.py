"""The harness's side of the peers: their venv, and each peer run in a fresh process.

The peers themselves (``bench/peers.py``) run inside ``bench/.venv``, apart from the project's packages.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.log import log
from bench.machine import settle_disk
from bench.report import PEER_TITLES
from bench.settings import PEERS_REQUIREMENTS, PEERS_VENV, ROOT
from bench.stats import median_run

# Run in this order; the report names them.
PEERS = tuple(PEER_TITLES)


def peers_python() -> str:
    """bench/.venv's python, created or updated when requirements-peers.txt changed."""
    py = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".requirements.sha256"
    digest = hashlib.sha256(PEERS_REQUIREMENTS.read_bytes()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return str(py)
    base = os.environ.get("BENCH_PYTHON") or shutil.which("python3") or sys.executable
    if not py.exists():
        log(f"creating {PEERS_VENV.relative_to(ROOT)} with {base}")
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    log(f"installing {PEERS_REQUIREMENTS.relative_to(ROOT)} into {PEERS_VENV.relative_to(ROOT)}")
    subprocess.run(
        [
            str(py),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "-q",
            "-r",
            str(PEERS_REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(digest + "\n")
    return str(py)


def run_peer(peers_py: str, tool: str, csv: Path, work: Path, log_path: Path, timeout: float) -> dict:
    """One peer in a fresh process; its peak RSS from wait4() and from the process itself."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    started = time.monotonic()
    with open(log_path, "ab") as err:
        proc = subprocess.Popen(
            [peers_py, "-m", "bench.peers", tool, str(csv), str(work)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
        )
        timer = threading.Timer(timeout, proc.kill)
        timer.start()
        try:
            out = proc.stdout.read()
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        return {"tool": tool, "error": f"exit {proc.returncode}; see {log_path}", "wall_s": wall}
    result = json.loads(out.decode().strip().splitlines()[-1])
    result["wall_s"] = wall
    result["peak_rss_bytes"] = max(result.get("peak_rss_bytes", 0), usage.ru_maxrss * 1024)
    return result


def run_peers(peers_py: str, tmp: Path, label: str, csv: Path, runs: dict[str, list]) -> None:
    """Each peer once on ``csv``, appending to ``runs[tool]``."""
    for tool in PEERS:
        log(f"peers {label}: {tool} ...")
        settle_disk(csv)
        peer_log = tmp / f"peer-{label}-{tool}.log"
        res = run_peer(peers_py, tool, csv, tmp / "peers" / f"{label}-{tool}", peer_log, timeout=3600)
        runs.setdefault(tool, []).append(res)
        if "error" in res:
            log(f"peers {label}: {tool} failed: {res['error']}")
            log(peer_log.read_text(errors="replace")[-2000:])
        else:
            log(
                f"peers {label}: {tool} {res['seconds']:.1f}s, {res['rows']:,} rows, peak "
                f"{res['peak_rss_bytes'] / 2**20:.0f} MiB"
            )


def peer_medians(tools: dict[str, list]) -> dict[str, dict | None]:
    """Each peer's median run by its own timed seconds."""
    return {tool: median_run(runs, lambda r: r.get("seconds")) for tool, runs in tools.items()}
