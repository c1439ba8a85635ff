"""SQLAlchemy engine and session handling shared by the API, the worker and the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker


class Base(DeclarativeBase):
    pass


_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
# The connection that session_scope() uses instead of the pool's, while one is set.
_bound: ContextVar[Connection | None] = ContextVar("lakesync_bound_connection", default=None)


def init_engine(url: str, **kwargs) -> Engine:
    """Create (or replace) the process-wide engine."""
    global _engine, _session_factory
    if _engine is not None:
        _engine.dispose()
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 5)
    kwargs.setdefault("max_overflow", 10)
    # Fail fast when PostgreSQL is away instead of hanging a request or a task.
    kwargs.setdefault("connect_args", {"connect_timeout": 5})
    # Statement parameters hold tenant data: errors and logs show the SQL without them.
    kwargs.setdefault("hide_parameters", True)
    _engine = create_engine(url, **kwargs)
    _session_factory = sessionmaker(bind=_engine, expire_on_commit=False)
    return _engine


def get_engine() -> Engine:
    if _engine is None:
        raise RuntimeError("database engine is not initialised; call init_engine() first")
    return _engine


def autocommit_connection() -> Connection:
    """A pooled connection whose statements commit one by one: for a lone write, or for
    session-level state such as advisory locks, without the round trips of a transaction."""
    return get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")


def dispose_engine() -> None:
    """Drop pooled connections; called in each worker child after fork."""
    if _engine is not None:
        _engine.dispose(close=False)


@contextmanager
def sessions_on(conn: Connection) -> Iterator[None]:
    """Run the session_scope() transactions opened inside on ``conn`` (which must not be in a
    transaction), not on connections checked out of the pool one by one. A session opened
    while another one's transaction is open still gets a pooled connection."""
    token = _bound.set(conn)
    try:
        yield
    finally:
        _bound.reset(token)


@contextmanager
def transaction() -> Iterator[Connection]:
    """One transaction on a Core connection, for statements that need none of the ORM's
    object loading or unit of work; on the bound connection when one is set, as
    session_scope() does."""
    bound = _bound.get()
    if bound is not None and not bound.in_transaction():
        with bound.begin():
            yield bound
        return
    with get_engine().begin() as conn:
        yield conn


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any error."""
    if _session_factory is None:
        raise RuntimeError("database engine is not initialised; call init_engine() first")
    bound = _bound.get()
    if bound is not None and bound.in_transaction():
        bound = None  # nested in another session's transaction: a transaction of its own
    session = _session_factory() if bound is None else _session_factory(bind=bound)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
