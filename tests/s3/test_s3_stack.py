"""The API and a worker with STORAGE_URL and LAKEHOUSE_URL on an S3 server: uploads, the
sync chain, previews, the internal endpoint and DELETE work from the object store, and
nothing of a dataset stays on local disk."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import obstore
import pyarrow.parquet as pq
from deltalake import DeltaTable
from obstore.store import S3Store

from tests.conftest import INTERNAL_KEY, ROOT
from tests.helpers import upload, wait_for_sync


def bucket(env: dict) -> S3Store:
    return S3Store(
        env["STORAGE_URL"].split("/")[2],
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_REGION"],
        client_options={"allow_http": True},
    )


def keys(env: dict, url: str) -> list[str]:
    """Every object under an s3:// URL of the bucket of a stack's settings."""
    prefix = url.split("/", 3)[3].rstrip("/") + "/"
    return sorted(meta["path"] for batch in obstore.list(bucket(env), prefix=prefix) for meta in batch)


def local_dataset_files(data_dir: str | Path) -> list[Path]:
    """Parquet files and scratch copies anywhere under a local DATA_DIR."""
    return sorted(
        p
        for p in Path(data_dir).rglob("*")
        if p.is_file() and (p.suffix in (".parquet", ".part") or p.name.startswith("copy-"))
    )


def delta_table(stack, url: str) -> DeltaTable:
    options = {
        k: stack.env[k]
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP")
    }
    return DeltaTable(url, storage_options=options)


def test_dataset_lifecycle_on_the_object_store(s3, auth):
    client = s3.app.test_client()
    storage_url = s3.env["STORAGE_URL"]
    response = upload(client, auth, "k,v\n1,x\n2,y\n2,y\n3,z\n", "pairs.csv")
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    dataset_id, file_name = created["id"], created["file_name"]
    # Stored before the 201, and nothing kept locally.
    assert keys(s3.env, storage_url) == [f"{storage_url.split('/', 3)[3]}/{file_name}"]

    status = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert status["status"] == "synced", status
    lakehouse = s3.env["LAKEHOUSE_URL"]
    assert status["bronze_location"].startswith(lakehouse + "/") and status["silver_location"].startswith(lakehouse)
    silver = delta_table(s3, status["silver_location"]).to_pyarrow_table()
    assert sorted(silver.column("k").to_pylist()) == [1, 2, 3]
    assert delta_table(s3, status["bronze_location"]).to_pyarrow_table().num_rows == 4
    assert (status["row_count_bronze"], status["row_count_silver"], status["duplicates_removed"]) == (4, 3, 1)
    assert local_dataset_files(s3.env["DATA_DIR"]) == []

    rows = client.get(f"/api/v1/datasets/{dataset_id}/rows?limit=2&offset=1", headers=auth)
    assert rows.status_code == 200, rows.get_json()
    assert rows.get_json()["rows"] == [{"k": "2", "v": "y"}, {"k": "2", "v": "y"}]
    assert rows.get_json()["total"] == 4

    internal = {"Authorization": f"Bearer {INTERNAL_KEY}"}
    streamed = client.get(f"/internal/storage/datasets/{file_name}", headers=internal)
    assert streamed.status_code == 200
    assert int(streamed.headers["Content-Length"]) == len(streamed.data)
    assert pq.read_table(io.BytesIO(streamed.data)).column("v").to_pylist() == ["x", "y", "y", "z"]

    # A second run replaces the tables: the replaced data files are deleted.
    before = keys(s3.env, status["bronze_location"])
    assert client.post(f"/api/v1/datasets/{dataset_id}/sync", headers=auth).status_code == 202
    again = wait_for_sync(client, auth, dataset_id, timeout=90)
    assert again["status"] == "synced", again
    after = keys(s3.env, again["bronze_location"])
    data = [k for k in after if k.endswith(".parquet")]
    assert len(data) == 1 and data[0] not in before

    assert client.delete(f"/api/v1/datasets/{dataset_id}", headers=auth).status_code == 204
    assert keys(s3.env, storage_url) == []
    assert keys(s3.env, again["bronze_location"]) == [] and keys(s3.env, again["silver_location"]) == []
    assert client.get(f"/internal/storage/datasets/{file_name}", headers=internal).status_code == 404


def test_rejected_upload_leaves_nothing_on_the_object_store(s3, auth):
    client = s3.app.test_client()
    before = keys(s3.env, s3.env["STORAGE_URL"])
    response = upload(client, auth, 'a,b\n1,"unclosed\n', "bad.csv")
    assert response.status_code == 400, response.get_json()
    assert keys(s3.env, s3.env["STORAGE_URL"]) == before
    assert local_dataset_files(s3.env["DATA_DIR"]) == []


def test_integration_status_reaches_the_object_store(s3, auth):
    status = s3.app.test_client().get("/api/v1/integration/status", headers=auth).get_json()
    assert status["reachable"] is True and status["error"] is None, status


def test_the_worker_parent_never_loads_deltalake(s3, auth):
    """deltalake's runtime does not survive fork: the prefork parent must not load it, while
    its children sync (the tests above) with it."""
    env = {**os.environ, **s3.env, "PYTHONPATH": str(ROOT)}
    code = "import sys, tasks.celery_app\nprint(sorted(m for m in sys.modules if m.split('.')[0] == 'deltalake'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
    # The running worker's parent, after its children have synced: no deltalake library mapped.
    client = s3.app.test_client()
    dataset_id = upload(client, auth, "a\n1\n").get_json()["id"]
    assert wait_for_sync(client, auth, dataset_id, timeout=90)["status"] == "synced"
    maps = Path(f"/proc/{s3.worker.pid}/maps").read_text()
    assert "/deltalake/" not in maps
