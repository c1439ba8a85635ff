"""One sync step at a time per dataset, through PostgreSQL advisory locks.

The lock lives on its own connection for the length of a step's work; if the worker
dies, PostgreSQL drops the connection and the lock with it, so a crash never leaves a
dataset locked.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError

from service.db import autocommit_connection, sessions_on

log = logging.getLogger(__name__)


class DatasetBusy(Exception):
    """Another step of the same dataset is running; try again shortly."""


def lock_key(dataset_id: uuid.UUID) -> int:
    # A signed 64-bit key from the id; collisions only serialise two datasets' steps.
    return int.from_bytes(dataset_id.bytes[:8], "big", signed=True)


@contextmanager
def dataset_lock(dataset_id: uuid.UUID, *, wait: float = 0.0) -> Iterator[None]:
    """Hold the dataset's lock; DatasetBusy when it cannot be had within ``wait`` seconds.

    The transactions of ``session_scope()`` inside run on the lock's connection: a step
    then checks out (and pings) one connection instead of three.
    """
    key = lock_key(dataset_id)
    # The lock belongs to the PostgreSQL session, not to a transaction; the lock and the
    # unlock are statements of their own (autocommit, a client-side switch in psycopg2).
    conn = autocommit_connection()
    try:
        deadline = time.monotonic() + wait
        while not conn.execute(select(func.pg_try_advisory_lock(key))).scalar():
            if time.monotonic() >= deadline:
                raise DatasetBusy(f"dataset {dataset_id} is being synced by another step")
            time.sleep(0.2)
        try:
            conn.commit()  # ends SQLAlchemy's autobegun transaction; nothing is sent in autocommit
            conn.execution_options(isolation_level=conn.default_isolation_level)
            with sessions_on(conn):
                yield
        finally:
            try:
                if conn.in_transaction():
                    conn.rollback()
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.execute(select(func.pg_advisory_unlock(key)))
            except DBAPIError as exc:
                # The connection died (PostgreSQL restarted): the lock died with it.
                log.warning("could not release the lock of dataset %s: %s", dataset_id, exc)
    finally:
        conn.close()


def is_locked(dataset_id: uuid.UUID) -> bool:
    """True when some step holds the dataset's lock right now."""
    key = lock_key(dataset_id)
    with autocommit_connection() as conn:
        got = conn.execute(select(func.pg_try_advisory_lock(key))).scalar()
        if got:
            conn.execute(select(func.pg_advisory_unlock(key)))
        return not got
