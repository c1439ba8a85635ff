"""Helpers shared by end-to-end tests."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from flask.testing import FlaskClient

ROOT = Path(__file__).resolve().parent.parent


class ServerClient(FlaskClient):
    """A test client that reads each response whole and closes it, as a WSGI server does
    once it has sent it, so what the app does after sending has happened on return."""

    def open(self, *args, buffered: bool = True, **kwargs):
        return super().open(*args, buffered=buffered, **kwargs)


def upload(client, auth, content: bytes | str, file_name: str = "data.csv", **form):
    """POST a file as multipart; returns the response."""
    if isinstance(content, str):
        content = content.encode()
    data = {"file": (io.BytesIO(content), file_name), **form}
    return client.post("/api/v1/datasets", headers=auth, data=data, content_type="multipart/form-data")


def wait_for_sync(client, auth, dataset_id: str, timeout: float = 60.0, until=("synced", "failed")) -> dict:
    """Poll the sync status until it reaches one of `until`; returns the last status body."""
    deadline = time.monotonic() + timeout
    body = None
    while time.monotonic() < deadline:
        response = client.get(f"/api/v1/datasets/{dataset_id}/sync", headers=auth)
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        if body["status"] in until:
            return body
        time.sleep(0.1)
    raise AssertionError(f"dataset {dataset_id} did not reach {until} in {timeout}s; last status: {body}")


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


def start_celery(args: list[str], env: dict, log_path: Path, *, new_session: bool = False) -> subprocess.Popen:
    """A real Celery process (``celery -A tasks.celery_app <args>``) with ``env`` over this
    process's environment, appending to ``log_path``; with ``new_session`` in a process
    group of its own, so that it and its children can be killed at once."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks.celery_app", *args],
            cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=new_session,
        )


def start_worker(env: dict, log_path: Path, name: str, *options: str, new_session: bool = False) -> subprocess.Popen:
    """A real Celery worker process named after ``name`` (see ``start_celery``)."""
    args = ["worker", "--loglevel=INFO", "--concurrency=2", "--without-mingle", "--without-gossip"]
    return start_celery(
        [*args, "-n", f"{name}-{uuid.uuid4().hex[:6]}@%h", *options], env, log_path, new_session=new_session
    )
