"""lakesync's own scenarios: one big or wide file uploaded and followed until synced, and many
small files uploaded by concurrent clients."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from bench import data
from bench.client import Api, env_int, run_timings
from bench.log import log, seconds
from bench.machine import settle_disk
from bench.profiling import PROFILE_RATE, start_profilers, stop_profilers
from bench.stack import BenchStack
from bench.stats import dist, sustained_rate

# Per-dataset figures of the small uploads summarized as distributions.
SMALL_STEP_KEYS = (
    "queue_s",
    "queue_from_run_created_s",
    "gap_bronze_silver_s",
    "gap_silver_metadata_s",
    "bronze_s",
    "silver_s",
    "metadata_s",
    "upload_to_synced_s",
)
WARMUP_UPLOADS = 4
FETCHERS = 8


def synced_of(run: dict) -> float | None:
    """A file run's time from upload start to synced (as seen by polling when the run has no end)."""
    return run.get("upload_to_synced_s") or run.get("synced_seen_s")


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
        "ok": body.get("status") == "synced"
        and body.get("row_count_bronze") == rows
        and body.get("row_count_silver") == expected_silver,
    }


# --------------------------------------------------------------------------- one file


def ours_file(
    stack: BenchStack,
    label: str,
    path: Path,
    meta: dict,
    *,
    profile_dir: Path | None = None,
    profile_rate: int = PROFILE_RATE,
) -> dict:
    """Upload one file to a freshly started API + worker and follow it until synced."""
    stack.start_app(label)
    api = Api(stack.base, stack.key)
    spies = start_profilers(stack, profile_dir, profile_rate) if profile_dir else []
    result: dict = {"file": path.name, "rows": meta["rows"], "bytes": meta["bytes"], "commands": stack.commands}
    if spies:
        result["profiled_at_hz"] = profile_rate
    try:
        settle_disk(path)
        _upload_and_follow(api, label, path, meta, result)
        return result
    finally:
        if spies:
            result["profile_raw"] = stop_profilers(spies)
        _stop_app(stack, label, result)


def _upload_and_follow(api: Api, label: str, path: Path, meta: dict, result: dict) -> None:
    """Upload ``path``, wait for its sync, and add the figures to ``result`` (or an "error")."""
    log(f"{label}: uploading {path.name} ({meta['bytes'] / 1e6:.0f} MB, {meta['rows']:,} rows)")
    try:
        response, started, answered = api.upload_file(path, timeout=env_int("BENCH_UPLOAD_TIMEOUT", 1200))
    except requests.RequestException as exc:
        result["error"] = f"upload: {exc!r}"
        log(f"{label}: upload failed: {exc!r}")
        return
    result.update(upload_status=response.status_code, upload_s=answered - started)
    if response.status_code != 201:
        result["error"] = response.text[:2000]
        log(f"{label}: upload answered {response.status_code}: {response.text[:300]}")
        return
    dataset = response.json()
    log(f"{label}: 201 after {answered - started:.1f}s; waiting for the sync")
    timeout = env_int("BENCH_SYNC_TIMEOUT", 1200)
    try:
        body, seen = api.wait_done(dataset["id"], timeout=timeout)
    except TimeoutError as exc:
        result["error"] = str(exc)
        log(f"{label}: {exc}")
        return
    result.update(
        dataset_id=dataset["id"],
        status=body["status"],
        last_error=body.get("last_error"),
        synced_seen_s=seen - started,
        checks=check_counts(body, meta),
    )
    result.update(run_timings(body, started, answered))
    total = result.get("upload_to_synced_s") or result["synced_seen_s"]
    result["rows_per_s_upload"] = meta["rows"] / result["upload_s"]
    if body["status"] == "synced":
        result["rows_per_s_synced"] = meta["rows"] / total
    log(
        f"{label}: {body['status']} after {total:.1f}s (201 {result['upload_s']:.1f}s, queue "
        f"{seconds(result.get('queue_s'))}, bronze {seconds(result.get('bronze_s'))}, silver "
        f"{seconds(result.get('silver_s'))}, metadata {seconds(result.get('metadata_s'))}); counts ok: "
        f"{result['checks']['ok']}"
    )
    if body["status"] != "synced":
        log(f"{label}: last_error: {body.get('last_error')}")


def _stop_app(stack: BenchStack, label: str, result: dict) -> None:
    result["memory"] = stack.stop_app()
    result["loadavg_after"] = os.getloadavg()
    mem = result["memory"]
    log(
        f"{label}: peak RSS api {mem.get('api_peak_bytes', 0) / 2**20:.0f} MiB, worker "
        f"{mem.get('worker_peak_bytes', 0) / 2**20:.0f} MiB"
    )


# --------------------------------------------------------------------------- many small files


def _queued(items: list) -> queue.Queue:
    work: queue.Queue = queue.Queue()
    for item in items:
        work.put(item)
    return work


def _drain(work: queue.Queue, make_worker: Callable[[], Callable], threads: int) -> None:
    """Hand the queued items out to ``threads`` threads until none are left; each thread
    handles its items with its own ``make_worker()``."""

    def run() -> None:
        handle = make_worker()
        while True:
            try:
                item = work.get_nowait()
            except queue.Empty:
                return
            handle(item)

    pool = [threading.Thread(target=run) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def _warm_up(stack: BenchStack, contents: list[tuple[str, bytes]]) -> tuple[int, int]:
    """A few uploads, not measured: first requests import lazily and open pools in each process.
    The counts of synced and failed datasets after them."""
    warm = Api(stack.base, stack.key)
    warm_ids = []
    for i in range(min(WARMUP_UPLOADS, len(contents))):
        r = warm.upload_bytes(f"warmup_{i}.csv", contents[i][1])
        r.raise_for_status()
        warm_ids.append(r.json()["id"])
    for dataset_id in warm_ids:
        warm.wait_done(dataset_id, timeout=300, interval=0.2)
    return warm.count("synced"), warm.count("failed")


class SyncedPoller:
    """Samples, every half second, how many datasets were synced and failed since the baseline."""

    def __init__(self, stack: BenchStack, baseline: int, baseline_failed: int):
        self.api = Api(stack.base, stack.key)
        self.baseline, self.baseline_failed = baseline, baseline_failed
        self.series: list[tuple[float, int, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.series.append(
                    (
                        time.time(),
                        self.api.count("synced") - self.baseline,
                        self.api.count("failed") - self.baseline_failed,
                    )
                )
            except Exception:  # noqa: BLE001 - a missed sample is fine
                pass
            self._stop.wait(0.5)

    def start(self) -> None:
        self._thread.start()

    def wait_for(self, count: int, timeout: float) -> float | None:
        """Wall time of the first sample with ``count`` datasets done, or None after ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.series and self.series[-1][1] + self.series[-1][2] >= count:
                return self.series[-1][0]
            time.sleep(0.5)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _upload_all(stack: BenchStack, work: queue.Queue, clients: int) -> list[dict]:
    """Every queued (index, (name, content)) uploaded once, by ``clients`` concurrent clients;
    each upload's outcome and latency."""
    uploads: list[dict] = []
    lock = threading.Lock()

    def client() -> Callable[[tuple[int, tuple[str, bytes]]], None]:
        api = Api(stack.base, stack.key)

        def upload(item: tuple[int, tuple[str, bytes]]) -> None:
            i, (name, content) = item
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
                uploads.append(
                    {
                        "i": i,
                        "status": status,
                        "id": dataset_id,
                        "latency_s": latency,
                        "started": t_wall,
                        "answered": t_wall + latency,
                        "error": err,
                    }
                )

        return upload

    _drain(work, client, clients)
    return uploads


def _fetch_syncs(stack: BenchStack, ids: list[str]) -> dict[str, dict]:
    """The sync status (with the step timestamps) of every dataset, read after the measurement."""
    details: dict[str, dict] = {}

    def fetcher() -> Callable[[str], None]:
        api = Api(stack.base, stack.key)

        def fetch(dataset_id: str) -> None:
            try:
                details[dataset_id] = api.sync(dataset_id)
            except Exception as exc:  # noqa: BLE001
                details[dataset_id] = {"status": "unknown", "error": repr(exc)}

        return fetch

    _drain(_queued(ids), fetcher, FETCHERS)
    return details


def ours_small(
    stack: BenchStack, files: list[Path], clients: int, *, label: str = "small", profile_dir: Path | None = None
) -> dict:
    """Many small uploads from concurrent clients, then the time until every one is synced."""
    stack.start_app(label)
    spies: list = []
    profile_raw: dict = {}
    contents = [(f.name, f.read_bytes()) for f in files]
    try:
        baseline, baseline_failed = _warm_up(stack, contents)
        if profile_dir:
            spies = start_profilers(stack, profile_dir)
        log(f"{label}: warm-up done; {len(contents)} uploads from {clients} clients")

        work = _queued(list(enumerate(contents)))
        poller = SyncedPoller(stack, baseline, baseline_failed)
        started = time.time()
        poller.start()
        uploads = _upload_all(stack, work, clients)
        uploads_done = time.time()
        accepted = [u for u in uploads if u["status"] == 201]
        log(f"{label}: {len(accepted)}/{len(uploads)} accepted in {uploads_done - started:.1f}s; waiting for syncs")
        all_seen = poller.wait_for(len(accepted), timeout=max(600.0, len(accepted) * 1.0))
        poller.stop()
        if all_seen is None:
            log(f"{label}: timed out waiting for every sync")
        if spies:
            profile_raw = stop_profilers(spies)
            spies = []
        memory = stack.memory()
        details = _fetch_syncs(stack, [u["id"] for u in accepted])
    finally:
        if spies:
            profile_raw = stop_profilers(spies)
        memory_final = stack.stop_app()

    per = [
        {
            "status": details.get(u["id"], {}).get("status"),
            **run_timings(details.get(u["id"], {}), u["started"], u["answered"]),
        }
        for u in accepted
    ]
    result: dict = {
        "count": len(contents),
        "clients": clients,
        "rows_per_file": data.meta(files[0].parent)["rows"] if files else None,
        "accepted": len(accepted),
        "upload_errors": [u["error"] for u in uploads if u["status"] != 201][:20],
        "synced": sum(1 for p in per if p.get("status") == "synced"),
        "failed": sum(1 for p in per if p.get("status") == "failed"),
        "upload_latency_s": dist([u["latency_s"] for u in accepted]),
        "uploads_wall_s": uploads_done - started,
        "uploads_per_s": len(accepted) / (uploads_done - started),
        "memory": memory or memory_final,
        "loadavg_after": os.getloadavg(),
    }
    if profile_raw:
        result["profile_raw"] = profile_raw
    result.update(_completion_rates(per, started, all_seen))
    result.update(_step_spreads(per))
    result["synced_series"] = [(round(t - started, 2), n, f) for t, n, f in poller.series]
    _log_small(label, result)
    return result


def _completion_rates(per: list[dict], started: float, all_seen: float | None) -> dict:
    """When the last dataset was synced, and how many were synced per second overall and sustained."""
    finished = sorted(p["run_finished_at"] for p in per if p.get("status") == "synced" and p.get("run_finished_at"))
    if not finished:
        return {}
    last = finished[-1]
    overall = len(finished) / (last - started)
    sustained = sustained_rate(finished)
    return {
        "all_synced_s": last - started,
        "all_synced_seen_s": (all_seen - started) if all_seen else None,
        "synced_per_s_overall": overall,
        "synced_per_s_sustained": overall if sustained is None else sustained,
    }


def _step_spreads(per: list[dict]) -> dict:
    """Distributions of the synced datasets' step times, and of the time the chain itself adds
    (queue and the gaps between steps)."""
    synced = [p for p in per if p.get("status") == "synced"]
    out = {key: dist([p.get(key) for p in synced]) for key in SMALL_STEP_KEYS}
    overhead = [
        p["queue_from_run_created_s"] + p.get("gap_bronze_silver_s", 0) + p.get("gap_silver_metadata_s", 0)
        for p in synced
        if p.get("queue_from_run_created_s") is not None
    ]
    out["chain_overhead_s"] = dist(overhead)
    return out


def _log_small(label: str, result: dict) -> None:
    lat = result["upload_latency_s"]
    log(
        f"{label}: upload p50 {lat.get('p50', 0) * 1000:.0f} ms, p95 {lat.get('p95', 0) * 1000:.0f} ms, p99 "
        f"{lat.get('p99', 0) * 1000:.0f} ms; all synced after {result.get('all_synced_s', float('nan')):.1f}s; "
        f"{result.get('synced_per_s_sustained', 0):.1f} synced/s sustained; {result['failed']} failed"
    )
