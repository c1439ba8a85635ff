"""What tenants are told about a failed step: a stable code and a plain message.

Raw error texts (DuckDB's, a lakehouse server's, a driver's) name hosts, paths, settings
and sometimes values from the data; they go to the log, never into ``last_error``.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator

import requests
import sqlalchemy.exc

# code -> the message a tenant reads
MESSAGES = {
    "out_of_memory": "the dataset needed more memory than the sync may use; it stays available locally",
    "disk_full": "the lakehouse storage is full; the sync will work again once space is freed",
    "storage_not_writable": "the lakehouse storage refused the write (read-only or no permission); "
    "the sync will work again once it is writable",
    "target_unavailable": "the lakehouse target could not be reached",
    "target_rejected": "the lakehouse target refused the data",
    "database_unavailable": "the service database was unavailable",
    "broker_unavailable": "the task queue was unavailable",
    "local_file_missing": "the dataset's local file is missing",
    "row_count_mismatch": "the table written does not hold every row of the dataset",
    "worker_lost": "the step stopped its worker each time it ran",
    "invalid_data": "the data could not be converted for the lakehouse",
    "internal_error": "the sync failed for an internal reason; the operators have the details",
}


class PermanentSyncError(Exception):
    """A sync step cannot succeed by trying again."""


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and its causes, outermost first."""
    seen = set()
    item: BaseException | None = exc
    while item is not None and id(item) not in seen:
        seen.add(id(item))
        yield item
        item = item.__cause__ or item.__context__


def _rules():
    from service.lakehouse.base import PermanentTargetError, TransientTargetError

    def named(*names):
        return lambda e: type(e).__name__ in names

    # The first rule any error of the chain matches wins: the root causes (memory, disk)
    # before the wrappers a target puts around them.
    return (
        (
            "out_of_memory",
            lambda e: (
                isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryException" or "Out of Memory" in str(e)
            ),
        ),
        ("disk_full", lambda e: isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)),
        (
            "storage_not_writable",
            lambda e: isinstance(e, OSError) and e.errno in (errno.EROFS, errno.EACCES, errno.EPERM),
        ),
        ("database_unavailable", lambda e: isinstance(e, sqlalchemy.exc.OperationalError)),
        (
            "broker_unavailable",
            lambda e: (
                type(e).__module__.startswith(("redis", "kombu"))
                and type(e).__name__ in ("ConnectionError", "TimeoutError", "OperationalError")
            ),
        ),
        ("local_file_missing", lambda e: isinstance(e, PermanentSyncError) and "missing" in str(e)),
        ("row_count_mismatch", lambda e: isinstance(e, PermanentSyncError) and "rows" in str(e)),
        (
            "target_unavailable",
            lambda e: isinstance(e, (TransientTargetError, requests.ConnectionError, requests.Timeout)),
        ),
        ("target_rejected", lambda e: isinstance(e, PermanentTargetError)),
        ("invalid_data", named("ConversionException", "InvalidInputException", "ArrowInvalid", "ArrowTypeError")),
    )


def public_error(exc: BaseException) -> tuple[str, str]:
    """(code, message) for a step's error, from its type and its causes."""
    chain = list(_chain(exc))
    for code, matches in _rules():
        if any(matches(item) for item in chain):
            return _pick(code)
    return _pick("internal_error")


def _pick(code: str) -> tuple[str, str]:
    return code, MESSAGES[code]


def step_error_text(step: str, exc: BaseException) -> str:
    """The ``last_error`` of a failed step: ``<step>: <code>: <message>``."""
    code, message = public_error(exc)
    return f"{step}: {code}: {message}"


def log_detail(exc: BaseException) -> str:
    """The error for the operators' log: type and text, except for errors about the data,
    whose text quotes values from the tenant's rows (only the type is kept)."""
    code, _ = public_error(exc)
    if code == "invalid_data":
        return f"{type(exc).__name__} (text withheld: it quotes the data)"
    text = str(exc).strip() or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]
