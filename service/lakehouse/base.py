"""The interface every lakehouse target implements.

A target is handed one ``SyncContext`` per call: everything it needs to know about the
dataset, the run and the tables, so it never looks anything up behind the caller's back.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from service.transform.plan import SilverPlan

if TYPE_CHECKING:
    import pyarrow as pa


class TransientTargetError(Exception):
    """The target failed for a reason that may pass (full or read-only disk, 429, 503...)."""


class PermanentTargetError(Exception):
    """The target refused the work for good (bad data, bad credentials, SQL error...)."""


@dataclass(frozen=True)
class TableRef:
    catalog: str  # e.g. "tenant_acme"
    schema: str  # "bronze" or "silver"
    table: str  # e.g. "revenue_q1_1a2b3c4d"

    @property
    def full_name(self) -> str:
        return f"{self.catalog}.{self.schema}.{self.table}"

    @classmethod
    def parse(cls, full_name: str, *, default: TableRef) -> TableRef:
        """The ref of a three-part name; ``default`` with the name as its table otherwise."""
        parts = full_name.split(".")
        if len(parts) == 3 and all(parts):
            return cls(*parts)
        return cls(default.catalog, default.schema, full_name)


@dataclass(frozen=True)
class SyncContext:
    """One sync run of one dataset, as a target sees it."""

    dataset_id: str
    tenant_id: str
    run_id: str
    dataset_name: str
    bronze: TableRef  # the bronze table: as recorded by the bronze step, else as we name it
    silver: TableRef  # the silver table, likewise
    # A local path of the dataset's Parquet file (source values exactly as uploaded), for
    # the length of a write_bronze / write_silver call; None elsewhere.
    source_path: Path | None
    source_file: str  # the stored file name, written to _source_file
    ingested_at: datetime  # UTC, written to _ingested_at
    columns: tuple = ()  # the dataset's columns: dicts of name, source_name, type, source_type
    row_count: int = 0  # rows of the local file
    schema_hints: tuple = ()  # (source name, type) pairs the uploader set
    # The rows of source_path, when the dataset is small and the caller has read them whole
    # (``arrow_types.read_small_parquet``): a write_silver call need not read them again.
    source_rows: pa.Table | None = None

    @property
    def catalog(self) -> str:
        return self.bronze.catalog

    def ref(self, layer: str) -> TableRef:
        return self.bronze if layer == "bronze" else self.silver

    @property
    def quarantine(self) -> TableRef:
        """The table of the upload's bad rows, beside bronze."""
        return quarantine_ref(self.bronze)


def quarantine_ref(bronze: TableRef) -> TableRef:
    return TableRef(bronze.catalog, bronze.schema, f"{bronze.table}_quarantine")


@dataclass(frozen=True)
class TableResult:
    table: TableRef  # the table written, as the target names it
    location: str  # where the table's data lives (a directory, a URL...)
    row_count: int
    values_rescued: int | None = None  # silver: values of hinted columns that did not fit their type


@dataclass(frozen=True)
class TableState:
    """A table as read back from the target."""

    table: TableRef
    exists: bool
    location: str
    row_count: int | None = None  # None when the target does not report it


@dataclass(frozen=True)
class TableStates:
    bronze: TableState
    silver: TableState


class LakehouseTarget(abc.ABC):
    name: str
    # True when write_silver checks every value of a sampled (unverified) plan and raises
    # SampledPlanRejected when one does not fit; such a target is given sampled plans.
    checks_sampled_plans: bool = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: dict) -> LakehouseTarget:
        """Build the target from the app config."""

    @abc.abstractmethod
    def write_bronze(self, ctx: SyncContext) -> TableResult:
        """Replace the bronze table with the source rows plus the metadata columns
        (``service.lakehouse.columns``). Running it twice leaves the same table."""

    @abc.abstractmethod
    def write_silver(self, ctx: SyncContext, plan: SilverPlan) -> TableResult:
        """Replace the silver table with the plan applied to the bronze table."""

    def write_quarantine(self, ctx: SyncContext, table: TableRef, rows: list[dict]) -> TableResult | None:
        """Replace ``table`` (beside bronze) with the rows set aside at upload, dicts of
        ``line``, ``reason`` and ``raw``; None when the target has no way to hold one."""
        return None

    @abc.abstractmethod
    def read_back(self, ctx: SyncContext) -> TableStates:
        """Whether the run's tables exist, and their row counts where the target reports them."""

    @abc.abstractmethod
    def drop_tables(self, ctx: SyncContext, tables: list[TableRef]) -> None:
        """Remove the dataset's tables; no error for one that does not exist."""

    def ping(self) -> None:  # noqa: B027 - optional: a target with nothing to reach keeps this
        """Raise when the target cannot be reached."""

    def initialize_catalog(self, catalog: str) -> dict:
        """Create the tenant's catalog and its bronze/silver schemas if missing; says what exists."""
        return {"catalog": catalog, "schemas": ["bronze", "silver"]}

    def describe(self) -> dict:
        """Non-secret facts about the target (host, directory...) for status pages."""
        return {"target": self.name}
