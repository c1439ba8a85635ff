"""The interface every lakehouse target implements."""
from __future__ import annotations

import abc
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from service.transform.plan import SilverPlan


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


@dataclass(frozen=True)
class BronzeSource:
    dataset_id: str
    parquet_path: Path  # the local Parquet file, source values exactly as uploaded
    source_file: str  # the stored file name, written to _source_file
    ingested_at: datetime  # UTC, written to _ingested_at
    tenant_id: str = ""
    dataset_name: str = ""
    columns: tuple = ()  # the dataset's columns: dicts of name, source_name, type, source_type


@dataclass(frozen=True)
class TableResult:
    location: str  # where the table's data lives (a directory, a URL...)
    row_count: int
    duplicates_removed: int = 0


class LakehouseTarget(abc.ABC):
    name: str
    # True when write_silver checks every value of a sampled (unverified) plan and raises
    # SampledPlanRejected when one does not fit; such a target is given sampled plans.
    checks_sampled_plans: bool = False

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: dict) -> "LakehouseTarget":
        """Build the target from the app config."""

    @abc.abstractmethod
    def write_bronze(self, ref: TableRef, source: BronzeSource) -> TableResult:
        """Replace the bronze table with the source rows plus _dataset_id, _ingested_at,
        _source_file. Running it twice leaves the same table."""

    @abc.abstractmethod
    def write_silver(self, bronze: TableRef, silver: TableRef, plan: SilverPlan) -> TableResult:
        """Replace the silver table with the plan applied to the bronze table."""

    @abc.abstractmethod
    def count_rows(self, ref: TableRef) -> int:
        """Rows in a table, read back from the target."""

    @abc.abstractmethod
    def location(self, ref: TableRef) -> str:
        """Where the table lives, without touching it."""

    @abc.abstractmethod
    def drop_table(self, ref: TableRef) -> None:
        """Remove the table; no error when it does not exist."""

    def ping(self) -> None:
        """Raise when the target cannot be reached."""

    def initialize_catalog(self, catalog: str) -> dict:
        """Create the tenant's catalog and its bronze/silver schemas if missing; says what exists."""
        return {"catalog": catalog, "schemas": ["bronze", "silver"]}

    def describe(self) -> dict:
        """Non-secret facts about the target (host, directory...) for status pages."""
        return {"target": self.name}
