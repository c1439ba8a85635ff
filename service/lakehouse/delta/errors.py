"""Storage and engine failures of the Delta target, sorted into transient and permanent."""

from __future__ import annotations

import contextlib
import errno
import os
import re

import duckdb
import pyarrow as pa
from deltalake.exceptions import CommitFailedError, DeltaError
from obstore.exceptions import BaseError as ObjectStoreError
from obstore.exceptions import PermissionDeniedError, UnauthenticatedError

from service.lakehouse.base import PermanentTargetError, TransientTargetError
from service.transform.plan import SampledPlanRejected

# Failures that may pass on their own: full or read-only disk, permissions being fixed,
# flaky storage.
TRANSIENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EROFS", "EACCES", "EPERM", "EIO", "EAGAIN", "EDQUOT")
    if hasattr(errno, name)
)
_TRANSIENT_TEXTS = tuple(os.strerror(code) for code in TRANSIENT_ERRNOS)
# An object store that cannot be reached or is overloaded may answer later.
_TRANSIENT_STORE_TEXTS = (
    "error sending request",
    "connection refused",
    "connection reset",
    "timed out",
    "operation timed out",
    "SlowDown",
    "Service Unavailable",
    "Internal Server Error",
    "503",
    "500 ",
)
_OS_ERROR_CODE = re.compile(r"os error (\d+)|Os \{ code: (\d+)")


def _errno_of(exc: BaseException) -> int | None:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return code
    match = _OS_ERROR_CODE.search(str(exc))
    if match:
        return int(match.group(1) or match.group(2))
    return None


def _looks_transient(exc: BaseException) -> bool:
    code = _errno_of(exc)
    if code is not None:
        return code in TRANSIENT_ERRNOS
    text = str(exc)
    return any(t in text for t in _TRANSIENT_TEXTS + _TRANSIENT_STORE_TEXTS)


@contextlib.contextmanager
def target_errors(action: str):
    """Map storage and engine failures to the target's transient/permanent errors."""
    try:
        yield
    except (TransientTargetError, PermanentTargetError, SampledPlanRejected):
        raise
    except CommitFailedError as exc:
        raise TransientTargetError(f"{action}: the commit conflicted with another writer: {exc}") from exc
    except DeltaError as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except (PermissionDeniedError, UnauthenticatedError) as exc:
        raise PermanentTargetError(f"{action}: the object store refused the credentials: {exc}") from exc
    except ObjectStoreError as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except duckdb.OutOfMemoryException as exc:
        raise TransientTargetError(f"{action}: out of memory: {exc}") from exc
    except duckdb.IOException as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except duckdb.Error as exc:  # conversion, binder, invalid input: the plan does not fit
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except OSError as exc:
        if _looks_transient(exc):
            raise TransientTargetError(f"{action}: {exc}") from exc
        raise PermanentTargetError(f"{action}: {exc}") from exc
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise PermanentTargetError(f"{action}: {exc}") from exc
