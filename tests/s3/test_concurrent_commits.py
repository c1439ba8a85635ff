"""Several writers committing to one Delta table on the S3 server at once: each commit is a
conditional write of the next log entry, so none is lost or overwritten."""

from __future__ import annotations

import threading

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from tests.s3.conftest import s3_settings

WRITERS = 16
ROWS_EACH = 50


def test_sixteen_writers_append_to_one_table(s3_server, s3_run):
    settings = s3_settings(s3_server, s3_run)
    options = {
        k: settings[k]
        for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_ALLOW_HTTP")
    }
    uri = f"{settings['LAKEHOUSE_URL']}/concurrency/appends"
    schema = pa.schema([("writer", pa.int32()), ("n", pa.int32())])
    write_deltalake(uri, schema.empty_table(), mode="overwrite", storage_options=options)  # version 0

    start, errors = threading.Barrier(WRITERS), []

    def append(writer: int) -> None:
        rows = pa.table({"writer": [writer] * ROWS_EACH, "n": list(range(ROWS_EACH))}, schema=schema)
        start.wait()
        try:
            write_deltalake(uri, rows, mode="append", storage_options=options)
        except Exception as exc:  # reported below, with the writer
            errors.append((writer, exc))

    threads = [threading.Thread(target=append, args=(i,)) for i in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []

    table = DeltaTable(uri, storage_options=options)
    assert table.version() == WRITERS
    history = table.history()
    assert sorted(h["version"] for h in history) == list(range(WRITERS + 1))
    appends = [
        h for h in history if h["operation"] == "WRITE" and h.get("operationParameters", {}).get("mode") == "Append"
    ]
    assert len(appends) == WRITERS
    data = table.to_pyarrow_table()
    assert data.num_rows == WRITERS * ROWS_EACH
    counts = data.group_by("writer").aggregate([("n", "count")]).to_pydict()
    assert dict(zip(counts["writer"], counts["n_count"], strict=True)) == {w: ROWS_EACH for w in range(WRITERS)}
