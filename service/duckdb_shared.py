"""Process-wide DuckDB databases: opened once per process and configuration, a cursor per use.

Opening an in-memory database costs far more than a cursor (bench/README.md); for a small
dataset the openings were most of a sync's work. A database is never shared across ``fork`` (it is
keyed by process id), and each one spills into a directory of its own: DuckDB names its
temporary files without regard to other processes using the same directory. The directory
goes when the process exits; one left by a killed process is removed by the next process
that opens a database there.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator

import duckdb

from service.processes import pid_alive

# Private work directories older than this are leftovers of a killed process.
STALE_SECONDS = 6 * 3600
SPILL_PREFIX = "duckdb-"
# Databases kept open per process; more configurations than this (tests) reopen them.
MAX_DATABASES = 4

_DATABASES: OrderedDict[tuple, duckdb.DuckDBPyConnection] = OrderedDict()
EXTENSION_OPTIONS = ("TimeZone", "Calendar")
# Directories DuckDB may read and write once the app has named them (restrict_to). They
# bind the databases that spill inside them (the app's and the worker's); others (unit
# tests, tools) keep file access, but extensions and settings are locked for every one.
_ALLOWED_DIRECTORIES: tuple[str, ...] = ()
_SPILL_DIRS: list[str] = []
_LOCK = threading.Lock()


def remove_stale(
    directory: str | os.PathLike, prefix: str, suffix: str = "", *, older_than: float = STALE_SECONDS
) -> int:
    """Delete ``prefix*suffix`` entries of ``directory`` not modified for ``older_than``
    seconds; the number deleted."""
    cutoff = time.time() - older_than
    try:
        entries = list(os.scandir(os.fspath(directory)))
    except FileNotFoundError:
        return 0
    removed = 0
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
            continue
        try:
            if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                _remove(entry)
                removed += 1
        except FileNotFoundError:
            pass  # removed meanwhile by its owner or another cleaner
    return removed


def _remove(entry: os.DirEntry) -> None:
    if entry.is_dir(follow_symlinks=False):
        shutil.rmtree(entry.path, ignore_errors=True)
    else:
        os.remove(entry.path)


def owned_prefix(prefix: str, pid: int | None = None) -> str:
    """The start of the name of a work file or directory owned by a process of this host."""
    return f"{prefix}{socket.gethostname()}-{os.getpid() if pid is None else pid}-"


def remove_orphans(base: str | os.PathLike, prefix: str) -> None:
    """Entries named by ``owned_prefix`` whose process on this host is dead, and any older
    than STALE_SECONDS: what a killed process left behind."""
    remove_stale(base, prefix)
    host_prefix = f"{prefix}{socket.gethostname()}-"
    try:
        entries = list(os.scandir(os.fspath(base)))
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(host_prefix):
            continue
        pid = entry.name[len(host_prefix) :].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                _remove(entry)


def _spill_directory(base: str) -> str:
    os.makedirs(base, exist_ok=True)
    remove_orphans(base, SPILL_PREFIX)
    path = tempfile.mkdtemp(prefix=owned_prefix(SPILL_PREFIX), dir=base)
    _SPILL_DIRS.append(path)
    return path


@atexit.register
def _remove_own_spill_directories() -> None:
    pid_prefix = owned_prefix(SPILL_PREFIX)
    for path in _SPILL_DIRS:
        if os.path.basename(path).startswith(pid_prefix):  # not a parent's, inherited by fork
            shutil.rmtree(path, ignore_errors=True)


def restrict_to(directories) -> None:
    """Let this process's databases touch files only under ``directories`` (the data
    directories: uploads, local Parquet files, lakehouse, scratch and spill space)."""
    global _ALLOWED_DIRECTORIES
    _ALLOWED_DIRECTORIES = tuple(sorted({os.path.join(os.path.abspath(os.fspath(d)), "") for d in directories if d}))


def _allowed_for(base: str | None) -> tuple[str, ...]:
    if base is None or not any(os.path.join(base, "").startswith(d) for d in _ALLOWED_DIRECTORIES):
        return ()
    return _ALLOWED_DIRECTORIES


def _lock_down(db: duckdb.DuckDBPyConnection, allowed: tuple[str, ...]) -> None:
    """No extension loaded or installed on demand, no file outside the allowed directories,
    and no setting changed afterwards: SQL built from tenant data cannot widen any of it."""
    if allowed:
        listed = ", ".join("'" + d.replace("'", "''") + "'" for d in allowed)
        # allowed_directories can only be set on a running database, before access is disabled.
        db.execute(f"SET allowed_directories = [{listed}]")
        db.execute("SET enable_external_access = false")
    db.execute("SET lock_configuration = true")


def database(config: dict, temp_base: str | os.PathLike | None = None) -> duckdb.DuckDBPyConnection:
    """This process's in-memory database with ``config``, spilling under ``temp_base``."""
    base = os.path.abspath(os.fspath(temp_base)) if temp_base is not None else None
    allowed = _allowed_for(base)
    key = (os.getpid(), base, tuple(sorted(config.items())), allowed)
    with _LOCK:
        db = _DATABASES.get(key)
        if db is not None:
            _DATABASES.move_to_end(key)
            return db
        for stale in [k for k in _DATABASES if k[0] != os.getpid()]:
            del _DATABASES[stale]  # inherited across fork: never used here
        # Everything needed is built in; never reach the network or the disk for an extension.
        full = {
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "allow_community_extensions": False,
            **config,
        }
        if base is not None:
            full["temp_directory"] = _spill_directory(base)
        # Options of built-in extensions (TimeZone: icu) are known only once the database runs.
        late = {k: full.pop(k) for k in EXTENSION_OPTIONS if k in full}
        db = duckdb.connect(":memory:", config=full)
        for option, value in late.items():
            db.execute(f"SET {option} = '" + str(value).replace("'", "''") + "'")
        _lock_down(db, allowed)
        _DATABASES[key] = db
        while len(_DATABASES) > MAX_DATABASES:
            # Dropped, not closed: a cursor still in use keeps its database alive.
            _DATABASES.popitem(last=False)
        return db


@contextlib.contextmanager
def cursor(config: dict, temp_base: str | os.PathLike | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor (an independent connection) on the process's database; closed afterwards."""
    con = database(config, temp_base).cursor()
    try:
        yield con
    finally:
        con.close()
