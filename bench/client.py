"""HTTP client side of the benchmark: a streaming multipart upload and the sync status."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import requests

# http.client asks the body for 8-16 KiB at a time; handing it 1 MiB blocks instead saves
# tens of thousands of Python-level reads and socket writes on a 1 GB body.
SEND_BLOCK = 1 << 20


class StreamedBody:
    """A request body made of byte strings and one file, read from disk as it is sent.

    It has a length, so requests sends a ``Content-Length`` (not chunked) and never holds
    more than one block of the file in memory.
    """

    def __init__(self, path: Path, head: bytes = b"", tail: bytes = b""):
        self.path = Path(path)
        self._parts = [head, None, tail]
        self._size = len(head) + self.path.stat().st_size + len(tail)
        self._index = 0 if head else 1
        self._fh = None

    def __len__(self) -> int:
        return self._size

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = SEND_BLOCK
        size = max(size, SEND_BLOCK)
        out = []
        want = size
        while want > 0 and self._index < len(self._parts):
            part = self._parts[self._index]
            if part is None:
                if self._fh is None:
                    self._fh = open(self.path, "rb")
                data = self._fh.read(want)
                if not data:
                    self._fh.close()
                    self._index += 1
                    continue
            else:
                data, self._parts[self._index] = part[:want], part[want:]
                if not self._parts[self._index]:
                    self._index += 1
            out.append(data)
            want -= len(data)
        return b"".join(out)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


class MultipartFile(StreamedBody):
    """A ``multipart/form-data`` body with one ``file`` part."""

    def __init__(self, path: Path, content_type: str = "text/csv", field: str = "file", prefix: bytes = b""):
        self.boundary = uuid.uuid4().hex
        head = (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{Path(path).name}"\r\nContent-Type: {content_type}\r\n\r\n'
        ).encode()
        super().__init__(path, head + prefix, f"\r\n--{self.boundary}--\r\n".encode())

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"


class Api:
    def __init__(self, base: str, key: str):
        self.base, self.key = base, key
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"

    def upload_file(
        self,
        path: Path,
        timeout: float = 3600,
        *,
        raw: str | None = None,
        params: dict | None = None,
        prefix: bytes = b"",
    ) -> tuple[requests.Response, float, float]:
        """Stream ``path`` (after ``prefix``) up, as multipart or (``raw``: its content type) as
        the body itself; return the response and the wall-clock times of start and answer."""
        body = StreamedBody(path, prefix) if raw else MultipartFile(path, prefix=prefix)
        content_type = raw or body.content_type  # type: ignore[attr-defined]
        started = time.time()
        try:
            response = self.session.post(
                f"{self.base}/api/v1/datasets",
                data=body,
                timeout=timeout,
                params=params,
                headers={"Content-Type": content_type},
            )
        finally:
            body.close()
        return response, started, time.time()

    def upload_bytes(self, name: str, content: bytes, timeout: float = 120) -> requests.Response:
        return self.session.post(
            f"{self.base}/api/v1/datasets", files={"file": (name, content, "text/csv")}, timeout=timeout
        )

    def sync(self, dataset_id: str) -> dict:
        response = self.session.get(f"{self.base}/api/v1/datasets/{dataset_id}/sync", timeout=60)
        response.raise_for_status()
        return response.json()

    def count(self, status: str) -> int:
        response = self.session.get(f"{self.base}/api/v1/datasets", params={"status": status, "limit": 1}, timeout=60)
        response.raise_for_status()
        return int(response.json()["total"])

    def wait_done(self, dataset_id: str, timeout: float, interval: float = 0.5) -> tuple[dict, float]:
        """Poll the sync status until synced or failed; the body and the wall time it was seen."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.sync(dataset_id)
            if body["status"] in ("synced", "failed"):
                return body, time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"dataset {dataset_id} not synced after {timeout}s: {body['status']}/{body['step']}")
            time.sleep(interval)


def ts(value: str | None) -> float | None:
    """An API timestamp as epoch seconds (naive ones are UTC)."""
    if not value:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def run_timings(body: dict, upload_started: float, upload_answered: float) -> dict:
    """Where the time of one dataset's first run went, from the run's step timestamps."""
    runs = body.get("runs") or []
    run = next((r for r in runs if r.get("trigger") == "upload"), None) or (runs[-1] if runs else None)
    if run is None:
        return {}
    steps = {s["step"]: s for s in run["steps"]}
    out: dict = {
        "run_created_at": ts(run.get("created_at")),
        "run_finished_at": ts(run.get("finished_at")),
        "attempts": {k: s.get("attempts") for k, s in steps.items()},
    }
    for name in ("bronze", "silver", "metadata"):
        s = steps.get(name) or {}
        start, end = ts(s.get("started_at")), ts(s.get("finished_at"))
        out[f"{name}_s"] = (end - start) if start and end else None
        out[f"{name}_started_at"], out[f"{name}_finished_at"] = start, end
    if out["bronze_started_at"]:
        out["queue_s"] = out["bronze_started_at"] - upload_answered
        out["queue_from_run_created_s"] = out["bronze_started_at"] - (out["run_created_at"] or upload_answered)
    if out["silver_started_at"] and out["bronze_finished_at"]:
        out["gap_bronze_silver_s"] = out["silver_started_at"] - out["bronze_finished_at"]
    if out["metadata_started_at"] and out["silver_finished_at"]:
        out["gap_silver_metadata_s"] = out["metadata_started_at"] - out["silver_finished_at"]
    finished = out["run_finished_at"] or out["metadata_finished_at"]
    if finished:
        out["upload_to_synced_s"] = finished - upload_started
        out["answer_to_synced_s"] = finished - upload_answered
    return out


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default
