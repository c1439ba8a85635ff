"""Request ids from the upload through every task's log lines, the API's and the worker's
Prometheus metrics, and the usage figures: against real processes (gunicorn with two
workers, the session's Celery worker, PostgreSQL, Redis)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.models import SYNC_STATUSES
from tests.helpers import upload, wait_for_sync

ROOT = Path(__file__).resolve().parents[2]
GENERATED_ID = re.compile(r"[0-9a-f]{32}")
CSV = "sku,qty\nA-1,3\nB-2,5\nC-3,7\n"


# --- helpers -------------------------------------------------------------------------------


def json_lines(path: Path) -> list[dict]:
    """The JSON objects of a log file (a line that is not one, e.g. a crash dump, is skipped)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                pass
    return found


def lines_with(path: Path, request_id: str, until, timeout: float = 30.0) -> list[dict]:
    """The log lines carrying ``request_id``, once ``until(lines)`` holds (a task logs its
    last line after it has recorded its result)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [entry for entry in json_lines(path) if entry.get("request_id") == request_id]
        if until(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def scrape(url: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus endpoint."""
    response = requests.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def labels_of(samples: dict, name: str) -> list[dict]:
    return [dict(labels) for (sample, labels) in samples if sample == name]


def poll_sync(base: str, headers: dict, dataset_id: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = requests.get(f"{base}/api/v1/datasets/{dataset_id}/sync", headers=headers, timeout=10).json()
        if body["status"] in ("synced", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(app_env, worker, stack_dir):
    """The API under gunicorn with two workers, as `make run` starts it; yields (base URL, log path)."""
    from devstack.net import free_port

    port = free_port()
    log_path = stack_dir / f"api-{port}.log"
    env = {**os.environ, **app_env, "PYTHONPATH": str(ROOT)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "python:service.observability.gunicorn",
                "wsgi:app",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "2",
                "--threads",
                "2",
                "--no-control-socket",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.2)
    yield base, log_path
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def worker_metrics_url(app_env, worker) -> str:
    return f"http://127.0.0.1:{app_env['WORKER_METRICS_PORT']}/metrics"


def post_file(base: str, headers: dict, content: str, file_name: str, **form) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/datasets",
        headers=headers,
        files={"file": (file_name, io.BytesIO(content.encode()))},
        data=form,
        timeout=60,
    )


# --- request ids ---------------------------------------------------------------------------


def test_request_id_is_echoed_generated_or_replaced(client, auth):
    given = "client-" + uuid.uuid4().hex
    assert client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"] == given
    longest = "a.b_c-" + "x" * 122
    assert client.get("/healthz", headers={"X-Request-ID": longest}).headers["X-Request-ID"] == longest

    generated = client.get("/healthz").headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(generated)
    assert client.get("/healthz").headers["X-Request-ID"] != generated

    for malformed in ("has space", "x" * 129, "a/b", "semi;colon", "é"):
        echoed = client.get("/healthz", headers={"X-Request-ID": malformed}).headers["X-Request-ID"]
        assert GENERATED_ID.fullmatch(echoed), (malformed, echoed)

    # Error answers carry it too, and so does the run of an upload whose id was replaced.
    assert GENERATED_ID.fullmatch(client.get("/api/v1/datasets").headers["X-Request-ID"])
    response = upload(client, {**auth, "X-Request-ID": "no spaces allowed"}, CSV, "replaced.csv")
    assert response.status_code == 201, response.get_json()
    replaced = response.headers["X-Request-ID"]
    assert GENERATED_ID.fullmatch(replaced)
    status = client.get(f"/api/v1/datasets/{response.get_json()['id']}/sync", headers=auth).get_json()
    assert [run["request_id"] for run in status["runs"]] == [replaced]


def test_upload_request_id_is_in_every_step_log_line(api_server, auth, stack_dir):
    base, api_log = api_server
    request_id = "trace-" + uuid.uuid4().hex
    response = post_file(base, {**auth, "X-Request-ID": request_id}, CSV, "traced.csv")
    assert response.status_code == 201, response.text
    assert response.headers["X-Request-ID"] == request_id
    dataset_id = response.json()["id"]

    status = poll_sync(base, auth, dataset_id)
    assert status["status"] == "synced", status
    (run,) = status["runs"]
    assert run["request_id"] == request_id

    def every_step_done(lines):
        return {e.get("step") for e in lines if e.get("logger") == "lakesync.tasks"} >= {"bronze", "silver", "metadata"}

    lines = lines_with(stack_dir / "worker.log", request_id, every_step_done)
    assert every_step_done(lines), lines
    for step in ("bronze", "silver", "metadata"):
        step_lines = [e for e in lines if e.get("step") == step]
        # Celery's own lines of the task (received/succeeded) and ours, all with the ids.
        assert {e["logger"] for e in step_lines} >= {"celery.app.trace", "lakesync.tasks"}, step_lines
        for entry in step_lines:
            assert entry["dataset_id"] == dataset_id and entry["run_id"] == run["id"], entry
            assert entry["task_id"] and entry["level"] and entry["ts"] and entry["message"]
        (done,) = [e for e in step_lines if e["logger"] == "lakesync.tasks"]
        assert done["duration_ms"] >= 0
        if step != "metadata":
            assert done["rows"] == 3
    assert len({e["task_id"] for e in lines}) == 3  # one task per step

    api_lines = lines_with(api_log, request_id, lambda found: any(e["logger"] == "lakesync.http" for e in found))
    (access,) = [e for e in api_lines if e["logger"] == "lakesync.http" and e["method"] == "POST"]
    assert access["status"] == 201 and access["route"] == "/api/v1/datasets" and access["duration_ms"] > 0
    assert access["tenant"]


def test_resync_and_cli_runs_carry_their_own_request_ids(app, client, auth, worker, stack_dir):
    response = upload(client, {**auth, "X-Request-ID": "first-upload"}, CSV, "resynced.csv")
    dataset_id = response.get_json()["id"]
    assert wait_for_sync(client, auth, dataset_id)["status"] == "synced"

    response = client.post(f"/api/v1/datasets/{dataset_id}/sync", headers={**auth, "X-Request-ID": "the-resync"})
    assert response.status_code == 202, response.get_json()
    assert wait_for_sync(client, auth, dataset_id)["status"] == "synced"

    # A run asked for from the command line has no request: it gets an id of its own.
    with app.app_context():  # as `flask --app wsgi` gives its commands
        result = app.test_cli_runner().invoke(args=["sync", "resync", dataset_id])
    assert result.exit_code == 0, result.output
    status = wait_for_sync(client, auth, dataset_id)
    assert status["status"] == "synced"
    ids = [run["request_id"] for run in status["runs"]]  # newest first
    assert ids[1:] == ["the-resync", "first-upload"]
    assert GENERATED_ID.fullmatch(ids[0])

    for run in status["runs"]:
        lines = lines_with(
            stack_dir / "worker.log",
            run["request_id"],
            lambda found: any(e.get("step") == "metadata" and e["logger"] == "lakesync.tasks" for e in found),
        )
        assert {e.get("step") for e in lines} >= {"bronze", "silver", "metadata"}
        assert {e.get("run_id") for e in lines if "step" in e} == {run["id"]}


# --- metrics -------------------------------------------------------------------------------


def test_api_and_worker_metrics_after_syncs(api_server, worker_metrics_url, auth):
    base, _ = api_server
    api_before = scrape(f"{base}/metrics")
    worker_before = scrape(worker_metrics_url)

    uploads = [
        post_file(base, auth, CSV, "metrics_ok.csv"),
        post_file(base, auth, "a\tb\n1\t2\n3\t4\n", "metrics_ok.tsv"),
        post_file(base, auth, CSV, "flaky_silver.csv"),
        post_file(base, auth, CSV, "bad_silver.csv"),
    ]
    assert [r.status_code for r in uploads] == [201] * 4, [r.text for r in uploads]
    rejected = post_file(base, auth, "", "empty.csv")
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "empty_file"
    finals = [poll_sync(base, auth, r.json()["id"])["status"] for r in uploads]
    assert finals == ["synced", "synced", "synced", "failed"]

    # Each gunicorn worker writes its own file; the scrape adds them up.
    api = scrape(f"{base}/metrics")
    csv_body = sum(int(r.request.headers["Content-Length"]) for r in uploads if r.json()["source_format"] == "csv")

    def grew(name, **labels):
        return value(api, name, **labels) - value(api_before, name, **labels)

    assert grew("lakesync_uploads_total", format="csv", outcome="created") == 3
    assert grew("lakesync_uploads_total", format="tsv", outcome="created") == 1
    assert grew("lakesync_uploads_total", format="unknown", outcome="empty_file") == 1
    assert grew("lakesync_upload_rows_total", format="csv") == 9
    assert grew("lakesync_upload_rows_total", format="tsv") == 2
    assert grew("lakesync_upload_bytes_total", format="csv") == csv_body
    created = dict(route="/api/v1/datasets", method="POST", status="201")
    assert grew("lakesync_http_request_duration_seconds_count", **created) == 4
    assert grew("lakesync_http_request_duration_seconds_bucket", le="+Inf", **created) == 4
    assert grew("lakesync_http_request_duration_seconds_sum", **created) > 0
    polls = dict(route="/api/v1/datasets/<uuid:dataset_id>/sync", method="GET", status="200")
    assert grew("lakesync_http_request_duration_seconds_count", **polls) >= 4

    work = scrape(worker_metrics_url)

    def done(name, **labels):
        return value(work, name, **labels) - value(worker_before, name, **labels)

    for step in ("bronze", "silver", "metadata"):
        assert done("lakesync_sync_step_duration_seconds_count", step=step, target="delta") >= 3, step
        assert done("lakesync_sync_step_duration_seconds_sum", step=step, target="delta") > 0, step
    assert done("lakesync_sync_step_duration_seconds_count", step="bronze", target="delta") >= 4
    assert done("lakesync_sync_rows_written_total", step="bronze", target="delta") >= 3 + 2 + 3 + 3
    assert done("lakesync_sync_rows_written_total", step="silver", target="delta") >= 3 + 2 + 3
    assert done("lakesync_sync_runs_total", status="synced") >= 3
    assert done("lakesync_sync_runs_total", status="failed") >= 1
    assert done("lakesync_sync_step_retries_total", step="silver", error="TransientTargetError") >= 1
    assert done("lakesync_sync_step_failures_total", step="silver", error="PermanentTargetError") >= 1

    assert {q["queue"] for q in labels_of(work, "lakesync_queue_length")} == {"celery", "sync.continue"}
    assert all(value(work, "lakesync_queue_length", **q) >= 0 for q in labels_of(work, "lakesync_queue_length"))
    assert {s["status"] for s in labels_of(work, "lakesync_datasets")} == set(SYNC_STATUSES)
    assert value(work, "lakesync_datasets", status="synced") >= 3
    assert value(work, "lakesync_datasets", status="failed") >= 1
    assert ("lakesync_sync_runs_stuck", ()) in work


def test_datasets_gauge_matches_the_database(app, worker_metrics_url):
    from sqlalchemy import func, select

    from service.db import session_scope
    from service.models import Dataset

    with session_scope() as session:
        counts = dict(session.execute(select(Dataset.sync_status, func.count()).group_by(Dataset.sync_status)).all())
    work = scrape(worker_metrics_url)
    # Nothing is being uploaded or synced between the two reads.
    for status in ("synced", "failed"):
        assert value(work, "lakesync_datasets", status=status) == counts.get(status, 0), status


# --- usage ---------------------------------------------------------------------------------


def _percentile_cont(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def test_usage_figures_of_the_tenant(client, auth, other_auth, worker):
    assert client.get("/api/v1/usage").status_code == 401
    empty = client.get("/api/v1/usage", headers=auth).get_json()
    assert empty["datasets"] == {"total": 0, "local_only": 0, "synced": 0, "failed": 0, "pending": 0, "syncing": 0}
    assert empty["sync_percentage"] == 0.0 and empty["rows"] == 0 and empty["bytes"] == 0
    assert empty["time_to_synced_seconds"] == {"mean": None, "p95": None, "runs": 0}

    created = [
        upload(client, auth, CSV, "usage_a.csv"),
        upload(client, auth, "x,y\n1,2\n", "usage_b.csv"),
        upload(client, auth, "k\nv1\nv2\n", "bad_silver_usage.csv"),
    ]
    assert [r.status_code for r in created] == [201, 201, 201]
    datasets = [r.get_json() for r in created]
    statuses = [wait_for_sync(client, auth, d["id"]) for d in datasets]
    assert [s["status"] for s in statuses] == ["synced", "synced", "failed"]
    kept_local = upload(client, auth, "k\nonly\n", "kept_local.csv", sync="false")
    assert kept_local.status_code == 201 and kept_local.get_json()["sync_status"] == "local_only", kept_local.get_json()
    datasets.append(kept_local.get_json())
    upload(client, other_auth, CSV, "someone_else.csv")

    usage = client.get("/api/v1/usage", headers=auth).get_json()
    assert usage["datasets"] == {"total": 4, "local_only": 1, "synced": 2, "failed": 1, "pending": 0, "syncing": 0}
    assert usage["sync_percentage"] == 66.7  # of the datasets asked to sync
    assert usage["rows"] == sum(d["row_count"] for d in datasets) == 3 + 1 + 2 + 1
    assert usage["bytes"] == sum(d["size_bytes"] for d in datasets)

    days = usage["uploads_by_day"]
    assert len(days) == 30
    today = datetime.now(UTC).date()
    assert days[-1] == {"day": today.isoformat(), "uploads": 4}
    assert all(day["uploads"] == 0 for day in days[:-1])
    parsed = [datetime.fromisoformat(day["day"]).date() for day in days]
    assert all((b - a).days == 1 for a, b in zip(parsed, parsed[1:], strict=False))

    seconds = [
        (datetime.fromisoformat(run["finished_at"]) - datetime.fromisoformat(run["created_at"])).total_seconds()
        for status in statuses
        for run in status["runs"]
        if run["status"] == "synced"
    ]
    assert len(seconds) == 2
    figures = usage["time_to_synced_seconds"]
    assert figures["runs"] == 2
    assert figures["mean"] == pytest.approx(sum(seconds) / 2, abs=1e-3)
    assert figures["p95"] == pytest.approx(_percentile_cont(seconds, 0.95), abs=1e-3)
    assert 0 < figures["mean"] <= figures["p95"]

    spec = client.get("/api/openapi.json").get_json()
    schema = spec["paths"]["/api/v1/usage"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema["$ref"] == "#/components/schemas/UsageResponse"
    assert set(spec["components"]["schemas"]["UsageResponse"]["properties"]) == {
        "datasets",
        "sync_percentage",
        "rows",
        "bytes",
        "uploads_by_day",
        "time_to_synced_seconds",
    }
