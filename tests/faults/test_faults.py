"""Break the stack on purpose; every upload that got 201 must end synced, exactly once."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.faults.conftest import REPORT, csv_with_duplicates, verify


def _accepted(response: requests.Response) -> str:
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _running(step: str):
    return lambda body: (
        body["status"] == "syncing"
        and body["step"] == step
        and any(s["step"] == step and s["status"] == "running" for s in body["runs"][0]["steps"])
    )


def _kill_worker_during(stack, step: str, name: str) -> None:
    dataset_id = _accepted(stack.upload(name, csv_with_duplicates(500, 5)))
    stack.wait_until(dataset_id, _running(step), 60, f"{step} running")
    time.sleep(1)
    stack.procs["worker"].kill()
    stack.procs["worker"].start()
    final = stack.wait_done([dataset_id], timeout=120)
    line = verify(stack, f"SIGKILL worker during {step}", {dataset_id: (505, 500)}, final)
    assert line["synced"] == 1 and line["duplicated"] == 0, (line, final)
    steps = {s["step"]: s for s in final[dataset_id]["runs"][0]["steps"]}
    assert steps[step]["attempts"] >= 2  # it really was interrupted and run again


def test_worker_killed_during_bronze(stack):
    _kill_worker_during(stack, "bronze", "slow_bronze")


def test_worker_killed_during_silver(stack):
    _kill_worker_during(stack, "silver", "slow_silver")


def test_uploads_while_redis_is_down(stack):
    stack.redis.stop()
    expected = {}
    try:
        for i in range(5):
            started = time.monotonic()
            response = stack.upload(f"redis_down_{i}", csv_with_duplicates(100, 2, seed=str(i)), timeout=30)
            expected[_accepted(response)] = (102, 100)
            assert response.json()["sync_status"] == "pending"
            assert time.monotonic() - started < 30  # answered, not hung on the broker
        time.sleep(float(os.environ.get("FAULT_REDIS_DOWN_SECONDS", "60")))
    finally:
        stack.redis.start()
    final = stack.wait_done(expected, timeout=120)
    line = verify(stack, "Redis down at upload, back 60 s later", expected, final)
    assert line["synced"] == len(expected) and line["duplicated"] == 0, (line, final)


def test_redis_restarted_with_queued_and_unacked_messages(stack):
    expected = {}
    # Unacknowledged: one slow step in progress; queued: the rest wait behind the stopped worker.
    slow = _accepted(stack.upload("slow_bronze_restart", csv_with_duplicates(200, 3)))
    expected[slow] = (203, 200)
    stack.wait_until(slow, _running("bronze"), 60, "bronze running")
    stack.procs["worker"].kill()
    for i in range(6):
        expected[_accepted(stack.upload(f"queued_{i}", csv_with_duplicates(50, 1, seed=str(i))))] = (51, 50)
    # A hard restart that loses what Redis held: only the sweeper can bring these back.
    stack.redis.kill()
    for path in stack.redis.data_dir.glob("appendonly*"):
        if path.is_dir():
            for f in path.iterdir():
                f.unlink()
        else:
            path.unlink()
    stack.redis.start()
    stack.procs["worker"].start()
    final = stack.wait_done(expected, timeout=180)
    line = verify(stack, "Redis restarted, queued + unacked messages lost", expected, final)
    assert line["synced"] == len(expected) and line["duplicated"] == 0, (line, final)


def test_postgres_restarted_during_metadata(stack):
    dataset_id = _accepted(stack.upload("slow_meta_pg", csv_with_duplicates(300, 4)))
    stack.wait_until(dataset_id, _running("metadata"), 60, "metadata running")
    stack.pg.stop()
    time.sleep(3)
    stack.pg.start()
    final = stack.wait_done([dataset_id], timeout=120)
    line = verify(stack, "PostgreSQL restarted during metadata", {dataset_id: (304, 300)}, final)
    assert line["synced"] == 1 and line["duplicated"] == 0, (line, final)


def test_transient_error_in_step_two_runs_step_three_once(stack):
    dataset_id = _accepted(stack.upload("flaky_silver_fault", csv_with_duplicates(100, 1)))
    final = stack.wait_done([dataset_id])
    line = verify(stack, "transient error in silver (step 2 of 3)", {dataset_id: (101, 100)}, final)
    assert line["synced"] == 1, (line, final)
    steps = {s["step"]: s for s in final[dataset_id]["runs"][0]["steps"]}
    assert steps["silver"]["attempts"] == 2 and steps["metadata"]["attempts"] == 1


def test_poison_dataset_fails_after_bounded_deliveries(stack):
    dataset_id = _accepted(stack.upload("poison_pill", csv_with_duplicates(10, 0)))
    final = stack.wait_done([dataset_id], timeout=180)
    body = final[dataset_id]
    assert body["status"] == "failed", body
    assert "SYNC_MAX_DELIVERIES=4" in body["last_error"], body["last_error"]
    [marker] = (stack.root / "flaky").glob("poison_pill_*")
    assert int(marker.read_text()) == 4  # it killed its worker 4 times, then was stopped
    REPORT.append(
        {
            "fault": "poison dataset (kills its worker every time)",
            "uploads_sent": 1,
            "accepted": 1,
            "synced": 0,
            "failed": 1,
            "lost": 0,
            "duplicated": 0,
        }
    )


def test_concurrent_resyncs_one_wins(stack):
    dataset_id = _accepted(stack.upload("resync_race", csv_with_duplicates(200, 2)))
    stack.wait_done([dataset_id])
    barrier = threading.Barrier(2)

    def resync():
        barrier.wait()
        return requests.post(f"{stack.base}/api/v1/datasets/{dataset_id}/sync", headers=stack.auth, timeout=30)

    with ThreadPoolExecutor(2) as pool:
        codes = sorted(r.status_code for r in pool.map(lambda _: resync(), range(2)))
    assert codes == [202, 409]
    final = stack.wait_done([dataset_id])
    line = verify(stack, "two concurrent resyncs", {dataset_id: (202, 200)}, final)
    assert line["synced"] == 1 and line["duplicated"] == 0
    runs = final[dataset_id]["runs"]
    assert len(runs) == 2 and runs[0]["status"] == "synced"


def test_load_with_worker_killed_and_restarted(stack):
    uploads, clients = 200, 20
    accepted: dict[str, tuple[int, int]] = {}
    lock = threading.Lock()
    sent = 0

    def client(index: int) -> None:
        nonlocal sent
        for n in range(uploads // clients):
            content = csv_with_duplicates(20, 1, seed=f"{index}-{n}-{uuid.uuid4().hex[:4]}")
            response = stack.upload(f"load_{index}_{n}", content)
            with lock:
                sent += 1
                if response.status_code == 201:
                    accepted[response.json()["id"]] = (21, 20)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    time.sleep(2)
    stack.procs["worker"].kill()
    time.sleep(2)
    stack.procs["worker"].start()
    for t in threads:
        t.join()
    final = stack.wait_done(accepted, timeout=300)
    line = verify(stack, "200 uploads / 20 clients, worker killed and restarted", accepted, final, sent=sent)
    assert sent == uploads and len(accepted) == uploads, line
    assert line["synced"] == uploads and line["duplicated"] == 0, str(line)


def test_postgres_down_at_the_api(stack):
    store = stack.root / "data" / "datasets"
    files_before = sorted(store.glob("*.parquet"))
    stack.pg.stop()
    try:
        response = stack.upload("pg_down", csv_with_duplicates(10, 0), timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == "database_unavailable"
        listing = requests.get(f"{stack.base}/api/v1/datasets", headers=stack.auth, timeout=30)
        assert listing.status_code == 503 and "Traceback" not in listing.text
        ready = requests.get(f"{stack.base}/readyz", timeout=30)
        assert ready.status_code == 503 and ready.json()["checks"]["postgres"].startswith("unavailable")
        assert sorted(store.glob("*.parquet")) == files_before  # nothing half-stored
    finally:
        stack.pg.start()
    dataset_id = _accepted(stack.upload("pg_back", csv_with_duplicates(10, 1)))
    final = stack.wait_done([dataset_id])
    line = verify(stack, "PostgreSQL down at the API (503), then back", {dataset_id: (11, 10)}, final, sent=2)
    assert line["synced"] == 1


@pytest.mark.skipif(shutil.which("chattr") is None, reason="needs chattr to make a directory unwritable")
def test_unwritable_lakehouse_fails_then_resync_succeeds(stack):
    """An immutable directory refuses writes even to root, like a read-only volume."""
    bronze_dir = stack.root / "data" / "lakehouse" / "tenant_faults" / "bronze"
    bronze_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["chattr", "+i", str(bronze_dir)], check=True)
    try:
        dataset_id = _accepted(stack.upload("read_only_lake", csv_with_duplicates(50, 2)))
        body = stack.wait_done([dataset_id])[dataset_id]
        assert body["status"] == "failed", body
        assert body["last_error"].startswith("bronze: storage_not_writable: "), body["last_error"]
        assert {s["step"]: s["attempts"] for s in body["runs"][0]["steps"]} == {"bronze": 3}
        rows = requests.get(f"{stack.base}/api/v1/datasets/{dataset_id}/rows", headers=stack.auth, timeout=30).json()
        assert rows["total"] == 52  # the local copy is intact
    finally:
        subprocess.run(["chattr", "-i", str(bronze_dir)], check=True)
    response = requests.post(f"{stack.base}/api/v1/datasets/{dataset_id}/sync", headers=stack.auth, timeout=30)
    assert response.status_code == 202, response.text
    final = stack.wait_until(
        dataset_id, lambda b: b["status"] in ("synced", "failed") and len(b["runs"]) == 2, 120, "resync done"
    )
    line = verify(
        stack, "read-only lakehouse: failed with reason, then resynced", {dataset_id: (52, 50)}, {dataset_id: final}
    )
    assert line["synced"] == 1, final
