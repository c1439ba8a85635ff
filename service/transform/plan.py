"""The silver plan: for each bronze column, its silver name and type."""
from __future__ import annotations

from dataclasses import dataclass, field

# Logical types a silver column can take.
SILVER_TYPES = ("string", "integer", "double", "boolean", "date", "timestamp")


@dataclass(frozen=True)
class SilverColumn:
    source_name: str  # column name in the local Parquet file / bronze table
    name: str  # snake_case silver name, unique within the table
    type: str  # one of SILVER_TYPES, or "source" to keep a non-string source type as it is
    source_type: str  # the source column's logical type (see service.ingest.SourceColumn.type)


@dataclass(frozen=True)
class SilverPlan:
    columns: list[SilverColumn]
    null_tokens: list[str] = field(default_factory=list)
    # False when typed columns were decided from a sample of their values: a writer must
    # then check every value against its column's grammar and raise SampledPlanRejected
    # at the first one that does not fit, instead of casting leniently.
    verified: bool = True


class SampledPlanRejected(Exception):
    """A value does not fit the type a sampled plan gave its column."""
