"""lakesync's small-files scenario: 1,000-row CSVs offered at a fixed rate whatever the answers
(open loop, ``bench.openloop``), each followed until synced, with the worker's CPU per dataset."""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import data
from bench.client import Api, run_timings
from bench.log import log
from bench.openloop import Outcome, run_open_loop, summarize
from bench.profiling import small_summary, start_profilers, stop_profilers
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


def _warm_up(stack: BenchStack, contents: list[tuple[str, bytes]], connections: int) -> tuple[int, int]:
    """Uploads not measured, one per connection and sent together, so that every thread of the
    API has served one: first requests import lazily and open pools. The counts of synced and
    failed datasets after them."""
    count = min(max(WARMUP_UPLOADS, connections), len(contents))
    ids: list[str] = []
    errors: list[str] = []

    def uploader() -> Callable[[int], None]:
        api = Api(stack.base, stack.key)

        def upload(i: int) -> None:
            r = api.upload_bytes(f"warmup_{i}.csv", contents[i][1])
            if r.status_code == 201:
                ids.append(r.json()["id"])
            else:
                errors.append(r.text[:300])

        return upload

    _drain(_queued(list(range(count))), uploader, connections)
    if errors:
        raise RuntimeError(f"warm-up upload refused: {errors[0]}")
    warm = Api(stack.base, stack.key)
    for dataset_id in ids:
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


def _uploader(stack: BenchStack) -> Callable[[tuple[str, bytes]], Outcome]:
    """One connection of the open loop: its own session, one upload per call."""
    api = Api(stack.base, stack.key)

    def send(item: tuple[str, bytes]) -> Outcome:
        name, content = item
        r = api.upload_bytes(name, content)
        if r.status_code == 201:
            return 201, r.json().get("id"), None
        return r.status_code, None, r.text[:300]

    return send


def ours_small(
    stack: BenchStack,
    files: list[Path],
    rate: float,
    connections: int,
    *,
    label: str = "small",
    profile_dir: Path | None = None,
) -> dict:
    """Small uploads offered at ``rate`` per second over ``connections`` connections, whatever
    the answers (open loop); then the time until every one is synced, and the worker's CPU."""
    stack.start_app(label)
    spies: list = []
    profile_raw: dict = {}
    contents = [(f.name, f.read_bytes()) for f in files]
    try:
        baseline, baseline_failed = _warm_up(stack, contents, connections)
        if profile_dir:
            spies = start_profilers(stack, profile_dir)
        log(f"{label}: warm-up done; {len(contents)} uploads at {rate:g}/s over {connections} connections")
        poller = SyncedPoller(stack, baseline, baseline_failed)
        cpu_before = stack.cpu_s()
        poller.start()
        records, t0 = run_open_loop(contents, rate, connections, lambda: _uploader(stack))
        offered = summarize(records, rate)
        log(
            f"{label}: {offered['accepted']}/{offered['offered']} accepted, last answer after "
            f"{offered['last_answer_s'] or 0:.1f}s; waiting for syncs"
        )
        all_seen = poller.wait_for(offered["accepted"], timeout=max(600.0, offered["accepted"] * 1.0))
        cpu_after = stack.cpu_s()
        poller.stop()
        if all_seen is None:
            log(f"{label}: timed out waiting for every sync")
        if spies:
            profile_raw = stop_profilers(spies)
            spies = []
        memory = stack.memory()
        accepted = [r for r in records if r.status == 201]
        details = _fetch_syncs(stack, [r.ident for r in accepted if r.ident])
    finally:
        if spies:
            profile_raw = stop_profilers(spies)
        memory_final = stack.stop_app()

    per = [
        {
            "status": details.get(r.ident or "", {}).get("status"),
            **run_timings(details.get(r.ident or "", {}), t0 + r.due_s, t0 + r.answered_s),
        }
        for r in accepted
    ]
    result: dict = {
        "count": len(contents),
        "rate": rate,
        "connections": connections,
        "rows_per_file": data.meta(files[0].parent)["rows"] if files else None,
        **offered,
        "synced": sum(1 for p in per if p.get("status") == "synced"),
        "failed": sum(1 for p in per if p.get("status") == "failed"),
        "memory": memory or memory_final,
        "loadavg_after": os.getloadavg(),
        # Every upload: index, due, taken by a connection, answered (seconds after t0), status.
        "uploads": [[r.k, round(r.due_s, 3), round(r.sent_s, 3), round(r.answered_s, 3), r.status] for r in records],
    }
    result["not_synced"] = result["offered"] - result["synced"]
    result.update(cpu_per_dataset(cpu_before, cpu_after, result["accepted"]))
    if profile_raw:
        result["profile_raw"] = profile_raw
    last_answer = t0 + offered["last_answer_s"] if offered["last_answer_s"] is not None else None
    result.update(_completion_rates(per, t0, last_answer, all_seen))
    result.update(_step_spreads(per))
    result["synced_series"] = [(round(t - t0, 2), n, f) for t, n, f in poller.series]
    _log_small(label, result)
    return result


def cpu_per_dataset(before: dict[str, float], after: dict[str, float], datasets: int) -> dict:
    """CPU seconds each role used between the two readings, and per dataset."""
    out: dict = {}
    for role in ("api", "worker"):
        if role in before and role in after:
            used = after[role] - before[role]
            out[f"{role}_cpu_s"] = used
            out[f"{role}_cpu_per_dataset_s"] = used / datasets if datasets else None
    return out


def _completion_rates(per: list[dict], started: float, last_answer: float | None, all_seen: float | None) -> dict:
    """When the last dataset was synced (after the first upload was due, and after the last
    upload was answered), and how many were synced per second overall and sustained."""
    finished = sorted(p["run_finished_at"] for p in per if p.get("status") == "synced" and p.get("run_finished_at"))
    if not finished:
        return {}
    last = finished[-1]
    overall = len(finished) / (last - started)
    sustained = sustained_rate(finished)
    return {
        "all_synced_s": last - started,
        "all_synced_seen_s": (all_seen - started) if all_seen else None,
        "last_upload_to_synced_s": (last - last_answer) if last_answer is not None else None,
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
    log(
        f"{label}: {small_summary(result)}; {result['failed_uploads']} uploads failed, "
        f"{result['not_synced']} not synced"
    )
