"""The silver plan: for each bronze column, its silver name and type."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Logical types a silver column can take; a schema hint may also name "decimal(p,s)".
SILVER_TYPES = ("string", "integer", "double", "boolean", "date", "timestamp")
MAX_DECIMAL_PRECISION = 38  # Delta's, Spark's and DuckDB's largest decimal
_DECIMAL = re.compile(r"decimal\(\s*([0-9]{1,2})\s*,\s*([0-9]{1,2})\s*\)")


def decimal_parts(type_name: str) -> tuple[int, int] | None:
    """(precision, scale) of a valid ``decimal(p,s)`` type name, else None."""
    m = _DECIMAL.fullmatch(type_name)
    if m is None:
        return None
    precision, scale = int(m.group(1)), int(m.group(2))
    if not 1 <= precision <= MAX_DECIMAL_PRECISION or scale > precision:
        return None
    return precision, scale


def unrounded_decimal(type_name: str) -> str | None:
    """For a decimal type, the widest decimal with the same integer digits: a value fits
    the type only when its cast to both is equal, so that no digit is rounded away (the
    value is rescued instead). None for other types."""
    parts = decimal_parts(type_name)
    if parts is None:
        return None
    precision, scale = parts
    return f"decimal({MAX_DECIMAL_PRECISION},{MAX_DECIMAL_PRECISION - (precision - scale)})"


def is_silver_type(type_name: str) -> bool:
    return type_name in SILVER_TYPES or decimal_parts(type_name) is not None


def normalized_type(text: str) -> str | None:
    """A hint's type as the plan spells it (lower case, ``decimal(p,s)`` without spaces), or None."""
    name = text.strip().lower()
    parts = decimal_parts(name)
    if parts is not None:
        return f"decimal({parts[0]},{parts[1]})"
    return name if name in SILVER_TYPES else None


@dataclass(frozen=True)
class SilverColumn:
    source_name: str  # column name in the local Parquet file / bronze table
    name: str  # snake_case silver name, unique within the table
    type: str  # one of SILVER_TYPES, decimal(p,s), or "source" to keep a non-string source type as it is
    source_type: str  # the source column's logical type (see service.ingest.SourceColumn.type)
    # The type comes from the uploader's schema hint: values that do not fit become NULL and
    # their raw text goes to the _rescued_data column, instead of the type being refused.
    hinted: bool = False


@dataclass(frozen=True)
class SilverPlan:
    columns: list[SilverColumn]
    null_tokens: list[str] = field(default_factory=list)
    # False when typed columns were decided from a sample of their values: a writer must
    # then check every value against its column's grammar and raise SampledPlanRejected
    # at the first one that does not fit, instead of casting leniently.
    verified: bool = True

    @property
    def rescues(self) -> bool:
        """Whether the silver table gets a _rescued_data column (a hinted typed column)."""
        return any(c.hinted and c.type != "string" for c in self.columns)


class SampledPlanRejected(Exception):
    """A value does not fit the type a sampled plan gave its column."""
