"""Dataset locks: held on one PostgreSQL connection, which the step's transactions share."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import ProgrammingError

from service.db import autocommit_connection, session_scope
from service.locks import DatasetBusy, dataset_lock, is_locked, lock_key


def _holder(dataset_id: uuid.UUID) -> int | None:
    """The backend pid that holds the dataset's advisory lock, if any."""
    key = lock_key(dataset_id) & 0xFFFFFFFFFFFFFFFF
    with autocommit_connection() as conn:
        return conn.scalar(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
            ),
            {"hi": key >> 32, "lo": key & 0xFFFFFFFF},
        )


def _backend_pid() -> int:
    with session_scope() as session:
        return session.scalar(select(func.pg_backend_pid()))


def test_transactions_inside_the_lock_run_on_its_connection(app):
    dataset_id = uuid.uuid4()
    with app.app_context():
        with dataset_lock(dataset_id):
            holder = _holder(dataset_id)
            assert holder is not None and is_locked(dataset_id)
            assert _backend_pid() == holder
            assert _backend_pid() == holder
        assert _holder(dataset_id) is None and not is_locked(dataset_id)


def test_a_failed_transaction_inside_the_lock_keeps_the_lock_and_the_connection(app):
    dataset_id = uuid.uuid4()
    with app.app_context():
        with dataset_lock(dataset_id):
            with pytest.raises(ProgrammingError):
                with session_scope() as session:
                    session.execute(text("SELECT * FROM no_such_table"))
            assert _backend_pid() == _holder(dataset_id)
        assert not is_locked(dataset_id)


def test_a_session_nested_in_another_keeps_a_transaction_of_its_own(app):
    dataset_id = uuid.uuid4()
    with app.app_context():
        with dataset_lock(dataset_id):
            with session_scope() as outer:
                outer_pid = outer.scalar(select(func.pg_backend_pid()))
                with session_scope() as inner:
                    inner_pid = inner.scalar(select(func.pg_backend_pid()))
            assert outer_pid == _holder(dataset_id)
            assert inner_pid != outer_pid


def test_an_error_in_the_step_releases_the_lock(app):
    dataset_id = uuid.uuid4()
    with app.app_context():
        with pytest.raises(RuntimeError):
            with dataset_lock(dataset_id):
                with session_scope() as session:
                    session.execute(select(1))
                    raise RuntimeError("the step failed")
        assert not is_locked(dataset_id)
        with dataset_lock(dataset_id):
            assert is_locked(dataset_id)


def test_a_held_lock_is_busy_for_others(app):
    dataset_id = uuid.uuid4()
    with app.app_context():
        with dataset_lock(dataset_id):
            with autocommit_connection() as other:
                assert other.scalar(select(func.pg_try_advisory_lock(lock_key(dataset_id)))) is False
        with pytest.raises(DatasetBusy):
            with autocommit_connection() as other:
                assert other.scalar(select(func.pg_try_advisory_lock(lock_key(dataset_id))))
                try:
                    with dataset_lock(dataset_id, wait=0.3):
                        pass
                finally:
                    other.execute(select(func.pg_advisory_unlock(lock_key(dataset_id))))
