"""Hostile inputs against a real stack: time to answer and peak RSS of API and worker per case.

Each case gets a fresh API (gunicorn, as in the Procfile) and worker, so a peak belongs to
its case; an accepted upload is followed until its sync ends. Writes a markdown table to
bench/results/hostile-<date>.md and prints it. ``python -m bench.hostile`` (make bench-hostile).
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench.stack import BenchStack
from tests.hostile.cases import CASES, Case

ROOT = Path(__file__).resolve().parent.parent
MiB = 2**20
# The limits the cases are written for (the test suite's).
LIMITS = {"MAX_UPLOAD_MB": "5", "MAX_JSON_BODY_MB": "2", "WORKER_CONCURRENCY": "2"}
GOALS = {"seconds": 2.0, "api_mib": 600, "worker_mib": 1024}


def send(stack: BenchStack, case: Case) -> requests.Response:
    headers = {"Authorization": f"Bearer {stack.key}", **case.headers}
    url = f"{stack.base}/api/v1/datasets"
    if case.json_body:
        return requests.post(
            url, data=case.build(), headers={**headers, "Content-Type": "application/json"}, timeout=120
        )
    return requests.post(url, files={"file": (case.file_name, case.build())}, headers=headers, timeout=120)


def wait_for_sync(stack: BenchStack, dataset_id: str, timeout: float = 120.0) -> str:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        body = requests.get(
            f"{stack.base}/api/v1/datasets/{dataset_id}/sync",
            headers={"Authorization": f"Bearer {stack.key}"},
            timeout=10,
        ).json()
        status = body["status"]
        if status in ("synced", "failed"):
            return status if status == "synced" else f"failed ({body['last_error']})"
        time.sleep(0.2)
    return f"{status} after {timeout:.0f} s"


def run_case(stack: BenchStack, case: Case) -> dict:
    stack.start_app(f"hostile-{CASES.index(case):02d}")
    try:
        started = time.perf_counter()
        response = send(stack, case)
        seconds = time.perf_counter() - started
        body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
        answer = body.get("error", {}).get("code", "") if response.status_code >= 400 else ""
        sync = wait_for_sync(stack, body["id"]) if response.status_code == 201 else ""
        ready = requests.get(f"{stack.base}/readyz", timeout=10).status_code
    finally:
        memory = stack.stop_app()
    return {
        "case": case.name,
        "status": response.status_code,
        "code": answer,
        "seconds": seconds,
        "sync": sync,
        "ready": ready,
        "api_mib": memory.get("api_peak_bytes", 0) / MiB,
        "worker_mib": memory.get("worker_peak_bytes", 0) / MiB,
        "expected": response.status_code in case.statuses,
    }


def table(results: list[dict]) -> str:
    lines = [
        "| case | answer | time to answer | sync | API peak | worker peak | within goals |",
        "| --- | --- | ---: | --- | ---: | ---: | --- |",
    ]
    for r in results:
        ok = (
            r["expected"]
            and r["seconds"] <= GOALS["seconds"]
            and r["api_mib"] < GOALS["api_mib"]
            and r["worker_mib"] < GOALS["worker_mib"]
            and r["ready"] == 200
        )
        answer = f"{r['status']} {r['code']}".strip()
        lines.append(
            f"| {r['case']} | {answer} | {r['seconds']:.2f} s | {r['sync'] or '—'} | "
            f"{r['api_mib']:.0f} MiB | {r['worker_mib']:.0f} MiB | {'yes' if ok else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    only = os.environ.get("HOSTILE_ONLY", "")
    cases = [c for c in CASES if only.lower() in c.name.lower()]
    with tempfile.TemporaryDirectory(prefix="lakesync-hostile-") as tmp:
        stack = BenchStack(Path(tmp) / "stack", LIMITS)
        try:
            stack.start_servers()
            results = []
            for case in cases:
                result = run_case(stack, case)
                print(
                    f"{case.name}: {result['status']} in {result['seconds']:.2f} s, API {result['api_mib']:.0f} MiB, "
                    f"worker {result['worker_mib']:.0f} MiB {result['sync']}",
                    flush=True,
                )
                results.append(result)
        finally:
            stack.shutdown()
    text = table(results)
    out = ROOT / "bench" / "results" / f"hostile-{dt.date.today().isoformat()}.md"
    out.write_text(
        f"# Hostile inputs ({len(results)} cases)\n\nGoals: every answer within {GOALS['seconds']} s, "
        f"API peak under {GOALS['api_mib']} MiB, worker peak under {GOALS['worker_mib']} MiB.\n\n{text}"
    )
    print(text)
    return 0 if all(r["expected"] and r["ready"] == 200 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
