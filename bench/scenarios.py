"""lakesync's file scenario: one big or wide file uploaded and followed until synced (the many
small files are in ``bench.small``)."""

from __future__ import annotations

import os
from pathlib import Path

import requests

from bench.client import Api, env_int, run_timings
from bench.log import log, seconds
from bench.machine import settle_disk
from bench.profiling import PROFILE_RATE, start_profilers, stop_profilers
from bench.stack import BenchStack


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
