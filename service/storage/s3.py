"""S3-compatible object storage (AWS S3, MinIO, SeaweedFS, R2...) through ``obstore``.

Endpoint and credentials come from the standard AWS variables (read into the config);
unset ones are left to the libraries' own lookup (environment, instance profile). Clients
are built per process on first use: they hold a Rust runtime and connections, which must
not cross ``fork``.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import NotFoundError
from obstore.store import S3Store

from service.config import S3_SETTINGS, as_bool

# Multipart parts of an upload, several in flight: a big file streams at the network's pace.
PART_BYTES = 16 << 20
PART_CONCURRENCY = 4
CHUNK_BYTES = 1 << 20
# Ranged reads of a Parquet file (footer, row groups) go through a buffer of this size.
READ_BUFFER_BYTES = 1 << 20


def is_s3_url(value: str) -> bool:
    return value.startswith("s3://")


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        return cls(parts.netloc, parts.path.strip("/"))

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p.strip("/"))

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"


@dataclass(frozen=True)
class S3Settings:
    endpoint: str = ""
    access_key_id: str = ""
    secret_access_key: str = ""
    session_token: str = ""
    region: str = ""
    allow_http: bool = False
    conditional_put: str = ""  # e.g. "etag" for stores without If-None-Match; empty: the default

    @classmethod
    def from_config(cls, config: Mapping) -> S3Settings:
        get = {name: str(config.get(name) or "") for name in S3_SETTINGS}
        return cls(
            endpoint=get["AWS_ENDPOINT_URL"],
            access_key_id=get["AWS_ACCESS_KEY_ID"],
            secret_access_key=get["AWS_SECRET_ACCESS_KEY"],
            session_token=get["AWS_SESSION_TOKEN"],
            region=get["AWS_REGION"],
            allow_http=as_bool(get["AWS_ALLOW_HTTP"] or False, "AWS_ALLOW_HTTP"),
            conditional_put=get["AWS_CONDITIONAL_PUT"],
        )

    def delta_options(self) -> dict[str, str]:
        """``storage_options`` of deltalake (delta-rs's own object store)."""
        options = {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_SESSION_TOKEN": self.session_token,
            "AWS_REGION": self.region,
            "AWS_CONDITIONAL_PUT": self.conditional_put,
        }
        options = {k: v for k, v in options.items() if v}
        if self.allow_http:
            options["AWS_ALLOW_HTTP"] = "true"
        return options

    def _store_config(self) -> dict[str, Any]:
        config = {
            "endpoint": self.endpoint,
            "access_key_id": self.access_key_id,
            "secret_access_key": self.secret_access_key,
            "session_token": self.session_token,
            "region": self.region,
            "conditional_put": self.conditional_put,
        }
        return {k: v for k, v in config.items() if v}

    def client(self, bucket: str) -> S3Store:
        """This process's client of ``bucket``."""
        key = (os.getpid(), self, bucket)
        with _CLIENTS_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                for stale in [k for k in _CLIENTS if k[0] != os.getpid()]:
                    del _CLIENTS[stale]  # inherited across fork: never used here
                client = _CLIENTS[key] = S3Store(
                    bucket,
                    config=self._store_config(),  # type: ignore[arg-type]
                    client_options={"allow_http": self.allow_http},
                )
            return client


_CLIENTS: dict[tuple, S3Store] = {}
_CLIENTS_LOCK = threading.Lock()


def upload(client: S3Store, key: str, path: str | os.PathLike) -> None:
    """Stream a local file to ``key``, in parts for a big one; nothing is stored on failure."""
    with open(path, "rb") as handle:
        obstore.put(client, key, handle, chunk_size=PART_BYTES, max_concurrency=PART_CONCURRENCY)


def download(client: S3Store, key: str, dest: str | os.PathLike) -> None:
    """Stream ``key`` into a local file; NotFoundError when there is no such object."""
    response = obstore.get(client, key)
    with open(dest, "wb") as handle:
        for chunk in response.stream(min_chunk_size=CHUNK_BYTES):
            handle.write(chunk)


def stream(client: S3Store, key: str) -> tuple[int, Iterator[bytes]]:
    response = obstore.get(client, key)
    size = int(response.meta["size"])
    return size, (bytes(chunk) for chunk in response.stream(min_chunk_size=CHUNK_BYTES))


def exists(client: S3Store, key: str) -> bool:
    try:
        obstore.head(client, key)
    except NotFoundError:
        return False
    return True


def delete(client: S3Store, key: str) -> None:
    """Delete one object; S3 answers success for one that does not exist."""
    try:
        obstore.delete(client, key)
    except NotFoundError:
        pass


def _folder(prefix: str) -> str | None:
    return prefix.strip("/") + "/" if prefix.strip("/") else None


def has_objects(client: S3Store, prefix: str) -> bool:
    """Whether anything is stored under ``prefix/`` (the whole bucket for an empty prefix)."""
    for batch in obstore.list(client, prefix=_folder(prefix), chunk_size=1):
        if batch:
            return True
    return False


def delete_prefix(client: S3Store, prefix: str) -> int:
    """Delete every object under ``prefix/``; the number deleted."""
    folder = _folder(prefix)
    if folder is None:
        raise ValueError("refusing to delete a whole bucket")
    removed = 0
    for batch in obstore.list(client, prefix=folder, chunk_size=1000):
        paths = [meta["path"] for meta in batch]
        if paths:
            obstore.delete(client, paths)
            removed += len(paths)
    return removed


class ObjectReader(io.RawIOBase):
    """A seekable, read-only binary file over an object: each read is a ranged GET
    through a small buffer, so pyarrow reads the footer and the row groups it needs."""

    def __init__(self, client: S3Store, key: str):
        super().__init__()
        self._reader = obstore.open_reader(client, key, buffer_size=READ_BUFFER_BYTES)
        self.size = int(self._reader.size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._reader.seek(offset, whence)

    def tell(self) -> int:
        return self._reader.tell()

    def read(self, size: int | None = -1) -> bytes:
        data = self._reader.read(size) if size is not None and size >= 0 else self._reader.read()
        return bytes(data)

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._reader.close()
        super().close()


def local_path_of(url: str) -> Path:
    """A local location given as a path or a file:// URL."""
    return Path(url[len("file://") :]) if url.startswith("file://") else Path(url)
