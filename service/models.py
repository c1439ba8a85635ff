"""ORM models: tenants and their keys, datasets, sync runs and lakehouse tables."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from service.db import Base

# local_only: never asked to sync (no run yet); the others follow its current run.
LOCAL_ONLY = "local_only"
SYNC_STATUSES = (LOCAL_ONLY, "pending", "syncing", "synced", "failed")
SYNC_STEPS = ("bronze", "silver", "metadata")
LAYERS = ("bronze", "silver")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Identifier-safe form of the name; the tenant's catalog is "tenant_<slug>".
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    @property
    def catalog(self) -> str:
        return catalog_of(self.slug)


def catalog_of(slug: str) -> str:
    """The lakehouse catalog of the tenant whose slug is ``slug``."""
    return f"tenant_{slug}"


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    # The public prefix finds the row; only a SHA-256 of the whole key is stored.
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    tenant: Mapped[Tenant] = relationship()


class Dataset(Base):
    __tablename__ = "datasets"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    source_format: Mapped[str] = mapped_column(String(16))
    original_file_name: Mapped[str | None] = mapped_column(String(255))
    file_name: Mapped[str] = mapped_column(String(64), unique=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    row_count: Mapped[int] = mapped_column(BigInteger)
    # [{"name": silver name, "source_name": original name, "type": ..., "source_type": ...}]
    columns: Mapped[list] = mapped_column(JSONB)
    # What the upload's reader found: {"dialect", "records_path", "compression", "sheet"}
    # (each present only when it applies).
    ingest: Mapped[dict | None] = mapped_column(JSONB)
    # Rows set aside by bad_rows=quarantine (kept in bad_rows); 0 when none.
    bad_row_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The uploader's types by source column name ({"amount": "decimal(10,2)"}), for every sync.
    schema_hints: Mapped[dict | None] = mapped_column(JSONB)
    # Values of hinted columns that did not fit their type in the last silver table (None:
    # no hints, or a target that does not count them).
    values_rescued: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    sync_status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    sync_step: Mapped[str | None] = mapped_column(String(16))
    sync_attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_sync_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    row_count_bronze: Mapped[int | None] = mapped_column(BigInteger)
    row_count_silver: Mapped[int | None] = mapped_column(BigInteger)
    duplicates_removed: Mapped[int | None] = mapped_column(BigInteger)
    # The run whose results the dataset shows; an older run finishing late cannot overwrite it.
    current_run_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))

    tenant: Mapped[Tenant] = relationship()
    tables: Mapped[list[LakehouseTable]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="LakehouseTable.layer"
    )

    def _detected(self, key: str):
        return (self.ingest or {}).get(key)

    @property
    def dialect(self) -> dict | None:
        return self._detected("dialect")

    @property
    def records_path(self) -> str | None:
        return self._detected("records_path")

    @property
    def compression(self) -> str | None:
        return self._detected("compression")

    @property
    def sheet(self) -> str | None:
        return self._detected("sheet")


class SyncRun(Base):
    """One attempt to sync a dataset through the whole chain.

    A run row is written in the same transaction as the work that asks for it, so the
    intent to sync is never lost; ``published_at`` records when it reached the broker.
    """

    __tablename__ = "sync_runs"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True, default=uuid.uuid4)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(16), default="upload")
    # The id of the request (or the generated id) its tasks' log lines carry.
    request_id: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    step: Mapped[str | None] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Liveness of the step in progress; a stale heartbeat marks work a dead worker left.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Times the sweeper re-sent this run because it had stopped moving.
    deliveries: Mapped[int] = mapped_column(Integer, default=0)

    steps: Mapped[list[SyncStepRun]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="SyncStepRun.started_at"
    )


class SyncStepRun(Base):
    __tablename__ = "sync_step_runs"
    __table_args__ = (UniqueConstraint("run_id", "step"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("sync_runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rows: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)

    run: Mapped[SyncRun] = relationship(back_populates="steps")

    @property
    def duration_ms(self) -> int | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return int((self.finished_at - self.started_at).total_seconds() * 1000)


class BadRow(Base):
    """A row of an upload that could not be read, set aside with bad_rows=quarantine.

    Kept in PostgreSQL rather than beside the dataset's file: at most MAX_BAD_ROWS rows of
    at most 8 KiB each, written in the upload's own transaction (a rejected upload leaves
    none), paged by line for the API and read whole by the sync's quarantine table."""

    __tablename__ = "bad_rows"

    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[str] = mapped_column(Text)


class LakehouseTable(Base):
    """Where a dataset's layer lives: its three-part name and its storage location."""

    __tablename__ = "lakehouse_tables"
    __table_args__ = (UniqueConstraint("dataset_id", "layer"), UniqueConstraint("full_name"))

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    layer: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(16))
    catalog: Mapped[str] = mapped_column(String(128))
    schema: Mapped[str] = mapped_column(String(128))
    table: Mapped[str] = mapped_column(String(128))
    full_name: Mapped[str] = mapped_column(String(400))
    location: Mapped[str] = mapped_column(Text)
    row_count: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), onupdate=utcnow)

    dataset: Mapped[Dataset] = relationship(back_populates="tables")
