"""Scale-out on the object store: an API and two workers, each with its own DATA_DIR (as on
three machines), sharing only PostgreSQL, Redis and the S3 server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import make_app
from tests.helpers import start_celery, start_worker, upload, wait_for_sync
from tests.s3.conftest import SCALE_OUT_DB, s3_settings
from tests.s3.test_s3_stack import keys, local_dataset_files
from tests.targets.conftest import redis_db


def _worker(env: dict, log_path: Path) -> subprocess.Popen:
    # A session of its own: the whole "machine" (parent and children) can be killed at once.
    return start_worker(env, log_path, "machine", new_session=True)


def _halt(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _wait_for_workers(app, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if len(app.extensions["celery"].control.ping(timeout=0.5)) >= count:
            return
    raise AssertionError(f"{count} workers did not answer")


@pytest.fixture
def machines(app_env, stack_dir, s3_server, s3_run):
    base = stack_dir / f"scale-out-{uuid.uuid4().hex[:6]}"
    shared = {
        **app_env,
        **s3_settings(s3_server, s3_run),
        "REDIS_URL": redis_db(app_env["REDIS_URL"], SCALE_OUT_DB),
        # A run whose worker vanished is re-sent within seconds, not minutes.
        "SYNC_STUCK_TIMEOUT": "3",
        "SYNC_SWEEP_INTERVAL": "1",
        "FLAKY_SLOW_SECONDS": "4",
    }
    dirs = {name: base / name for name in ("api", "a", "b")}
    envs = {name: {**shared, "DATA_DIR": str(path)} for name, path in dirs.items()}
    api = make_app(envs["api"])
    procs = {name: _worker(envs[name], base.parent / f"worker-{base.name}-{name}.log") for name in ("a", "b")}
    procs["beat"] = start_celery(
        ["beat", "--loglevel=INFO", "-s", str(base / "celerybeat-schedule")],
        envs["b"],
        base.parent / f"beat-{base.name}.log",
        new_session=True,
    )
    try:
        _wait_for_workers(api, 2)
        yield {"api": api, "dirs": dirs, "envs": envs, "procs": procs, "logs": base.parent}
    finally:
        for proc in procs.values():
            _halt(proc)


def test_a_worker_machine_killed_mid_sync_and_the_other_finishes(machines, auth):
    client = machines["api"].test_client()
    response = upload(client, auth, "k,v\n1,x\n2,y\n2,y\n", "slow_bronze.csv")
    assert response.status_code == 201, response.get_json()
    dataset_id, file_name = response.get_json()["id"], response.get_json()["file_name"]

    # The worker whose machine holds the step's scratch copy is the one running it.
    deadline, running = time.monotonic() + 60, None
    while running is None and time.monotonic() < deadline:
        running = next((name for name in ("a", "b") if local_dataset_files(machines["dirs"][name])), None)
        time.sleep(0.05)
    assert running is not None, "no worker started the bronze step"
    other = "b" if running == "a" else "a"
    os.killpg(machines["procs"][running].pid, signal.SIGKILL)
    machines["procs"][running].wait(timeout=10)
    assert local_dataset_files(machines["dirs"][running])  # its scratch copy, left as on a dead machine

    status = wait_for_sync(client, auth, dataset_id, timeout=120)
    assert status["status"] == "synced", status
    assert (status["row_count_bronze"], status["row_count_silver"]) == (3, 2)
    bronze = next(s for s in status["runs"][0]["steps"] if s["step"] == "bronze")
    assert bronze["attempts"] == 2  # the killed attempt and the other machine's
    assert machines["procs"][other].poll() is None

    # The killed machine comes back: its new worker clears what the killed one left.
    machines["procs"][running] = _worker(machines["envs"][running], machines["logs"] / f"worker-{running}-again.log")
    _wait_for_workers(machines["api"], 2)
    for name, path in machines["dirs"].items():
        assert local_dataset_files(path) == [], name

    assert client.delete(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 204
    env = machines["envs"]["api"]
    assert not [k for k in keys(env, env["STORAGE_URL"]) if file_name in k]
