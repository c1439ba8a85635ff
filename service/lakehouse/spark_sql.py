"""Spark SQL text for the Databricks target.

Every identifier that reaches a statement is validated and backtick-quoted, and every
piece of user text (null tokens, column labels in messages) is an escaped string literal.

The silver SELECT applies a ``SilverPlan`` with the same rules as the local target
(``service.transform.sql``): values are trimmed of spaces, null tokens become NULL, typed
columns are checked against the same strict grammars and cast, and exact duplicates are
removed. A value that fits neither the grammar nor a token fails the statement instead of
being lost, as it does locally.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime

from service.lakehouse.base import PermanentTargetError, TableRef
from service.table_rules import RESCUED_DATA
from service.transform import sql as rules
from service.transform.plan import SILVER_TYPES, SilverPlan, decimal_parts, unrounded_decimal

# Catalog, schema, table and silver column names: lowercase, no quoting tricks needed
# anywhere (Unity Catalog folds names to lowercase anyway).
IDENTIFIER_RE = re.compile(r"[a-z_][a-z0-9_]*")
MAX_IDENTIFIER_LENGTH = 255

# Metadata columns of bronze, and those carried into silver after the planned columns.
BRONZE_META_COLUMNS = ("_dataset_id", "_ingested_at", "_source_file")
CARRIED_COLUMNS = ("_dataset_id", "_ingested_at")

SPARK_TYPES = {
    "string": "STRING",
    "integer": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}

# Largest finite double: a value beyond it casts to Infinity in Spark (and is no double).
_MAX_DOUBLE = "1.7976931348623157E308"
# A timestamp text that already names its offset.
_ZONED_RE = r"(Z|[-+][0-9]{2}:[0-9]{2})\z"


class InvalidIdentifier(PermanentTargetError, ValueError):
    """A name that is not a safe SQL identifier."""


def identifier(name: str, what: str = "identifier") -> str:
    """``name`` itself when it is a safe identifier; InvalidIdentifier otherwise."""
    if not isinstance(name, str) or len(name) > MAX_IDENTIFIER_LENGTH or not IDENTIFIER_RE.fullmatch(name):
        raise InvalidIdentifier(
            f"invalid {what} {name!r}: expected lowercase letters, digits and underscores, "
            f"not starting with a digit, at most {MAX_IDENTIFIER_LENGTH} characters"
        )
    return name


def quote_identifier(name: str, what: str = "identifier") -> str:
    return f"`{identifier(name, what)}`"


def quote_column(name: str) -> str:
    """A source column name (any text, e.g. "Amount (€)") as a quoted identifier."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise InvalidIdentifier(f"invalid column name {name!r}")
    return "`" + name.replace("`", "``") + "`"


def table_name(ref: TableRef) -> str:
    """The three-part, quoted name of a table."""
    return ".".join(
        (
            quote_identifier(ref.catalog, "catalog name"),
            quote_identifier(ref.schema, "schema name"),
            quote_identifier(ref.table, "table name"),
        )
    )


def schema_name(catalog: str, schema: str) -> str:
    return f"{quote_identifier(catalog, 'catalog name')}.{quote_identifier(schema, 'schema name')}"


_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\0"}
_ESCAPE_RE = re.compile(r"[\\'\n\r\t\x00]")


def string_literal(value: str) -> str:
    """A Spark SQL string literal.

    Spark unescapes backslash sequences in literals and does not treat a doubled quote as
    an escape, so quotes and backslashes are escaped with backslashes.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    return "'" + _ESCAPE_RE.sub(lambda m: _ESCAPES[m.group(0)], value) + "'"


def timestamp_literal(value: datetime) -> str:
    """A TIMESTAMP value for an aware datetime, exact to the microsecond."""
    if value.tzinfo is None:
        raise ValueError("timestamp_literal needs an aware datetime")
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return f"CAST({string_literal(text)} AS TIMESTAMP)"


def _full_match(value_sql: str, pattern: str) -> str:
    # Java's "$" also matches before a final newline; "\z" is the true end of input.
    anchored = "^(?:" + pattern + r")\z"
    return f"regexp_like({value_sql}, {string_literal(anchored)})"


def _zoned(value_sql: str) -> str:
    """A timestamp text with an explicit offset: naive values are UTC, as locally, whatever
    the warehouse's session time zone."""
    return f"CASE WHEN regexp_like({value_sql}, {string_literal(_ZONED_RE)}) THEN {value_sql} ELSE concat({value_sql}, 'Z') END"


def type_check(value_sql: str, type_name: str) -> str:
    """Spark SQL true when the trimmed, non-null value fits the type's strict grammar
    (the grammars of ``service.transform.sql.type_check``)."""
    v = value_sql
    if type_name == "integer":
        return f"({_full_match(v, rules.INTEGER_RE)} AND (length({v}) < 19 OR try_cast({v} AS BIGINT) IS NOT NULL))"
    if type_name == "double":
        return f"({_full_match(v, rules.DOUBLE_RE)} AND abs(try_cast({v} AS DOUBLE)) <= {_MAX_DOUBLE})"
    if type_name == "boolean":
        return f"(lower({v}) IN ('true', 'false'))"
    if type_name == "date":
        return (
            f"(length({v}) = 10 AND {_full_match(v, rules.DATE_RE)} AND "
            f"substr({v}, 1, 4) <> '0000' AND try_cast({v} AS DATE) IS NOT NULL)"
        )
    if type_name == "timestamp":
        return (
            f"(length({v}) BETWEEN 19 AND 32 AND {_full_match(v, rules.TIMESTAMP_RE)} AND "
            f"substr({v}, 1, 4) <> '0000' AND try_cast({_zoned(v)} AS TIMESTAMP) IS NOT NULL)"
        )
    raise ValueError(f"no grammar for type {type_name!r}")


def cast_value(value_sql: str, type_name: str) -> str:
    """Spark SQL converting a value that passed ``type_check`` to the silver type."""
    if type_name == "boolean":
        return f"(lower({value_sql}) = 'true')"
    if type_name == "timestamp":
        return f"CAST({_zoned(value_sql)} AS TIMESTAMP)"
    return f"CAST({value_sql} AS {SPARK_TYPES[type_name]})"


def _tokens(tokens: Sequence[str]) -> str:
    return "(" + ", ".join(string_literal(t) for t in tokens) + ")"


def string_expr(col_sql: str, tokens: Sequence[str]) -> str:
    """A string value trimmed of spaces, NULL when it is a null token."""
    trimmed = f"trim({col_sql})"
    if not tokens:
        return trimmed
    return f"CASE WHEN {trimmed} IN {_tokens(tokens)} THEN NULL ELSE {trimmed} END"


def typed_expr(col_sql: str, type_name: str, tokens: Sequence[str], label: str) -> str:
    """A string value trimmed, nulled and cast to ``type_name``; an error for a value that
    fits neither."""
    trimmed = f"trim({col_sql})"
    branches = [f"WHEN {col_sql} IS NULL THEN NULL"]
    if tokens:
        branches.append(f"WHEN {trimmed} IN {_tokens(tokens)} THEN NULL")
    branches.append(f"WHEN {type_check(trimmed, type_name)} THEN {cast_value(trimmed, type_name)}")
    message = (
        f"concat({string_literal(f'column {label}: value ' + chr(39))}, {col_sql}, "
        f"{string_literal(chr(39) + f' is not a valid {type_name}')})"
    )
    return "CASE " + " ".join(branches) + f" ELSE raise_error({message}) END"


def spark_type(type_name: str) -> str:
    parts = decimal_parts(type_name)
    return f"DECIMAL({parts[0]},{parts[1]})" if parts else SPARK_TYPES[type_name]


def hinted_exprs(column, tokens: Sequence[str], bronze_name: str | None = None) -> tuple[str, str]:
    """A hinted column's value cast with try_cast (NULL when it does not fit), and the raw
    text of a value that did not fit (NULL otherwise): the rules of ``duckdb_sql._hinted``."""
    source = quote_column(bronze_name or column.source_name)
    raw = source if column.source_type == "string" else f"CAST({source} AS STRING)"
    clean = string_expr(raw, tokens) if tokens else f"nullif(trim({raw}), '')"
    if column.type == "boolean":
        typed = f"CASE lower({clean}) WHEN 'true' THEN true WHEN 'false' THEN false END"
    elif column.type == "timestamp":
        typed = f"try_cast({_zoned(clean)} AS TIMESTAMP)"
    else:
        typed = f"try_cast({clean} AS {spark_type(column.type)})"
        wide = unrounded_decimal(column.type)
        if wide is not None:
            typed = f"CASE WHEN {typed} = try_cast({clean} AS {spark_type(wide)}) THEN {typed} END"
    return typed, f"CASE WHEN {typed} IS NULL AND {clean} IS NOT NULL THEN {raw} END"


def rescued_json(rescued: list[tuple[str, str]]) -> str:
    """The _rescued_data object: ``"name":"raw text"`` for each column whose raw text is not
    NULL (a string escaped by to_json of a one-element array, brackets cut), NULL when none is."""
    members = []
    for name, misfit in rescued:
        quoted = f"to_json(array({misfit}))"
        members.append(
            f"CASE WHEN ({misfit}) IS NOT NULL THEN concat({string_literal(json.dumps(name) + ':')}, "
            f"substr({quoted}, 2, length({quoted}) - 2)) END"
        )
    return f"nullif(concat('{{', concat_ws(',', {', '.join(members)}), '}}'), '{{}}')"


def rescued_count(silver: TableRef, plan: SilverPlan) -> str:
    """Values in the silver table's _rescued_data: one per hinted column present in a row."""
    terms = [
        f"CASE WHEN get_json_object({quote_identifier(RESCUED_DATA)}, {string_literal('$.' + c.name)}) "
        "IS NOT NULL THEN 1 ELSE 0 END"
        for c in plan.columns
        if c.hinted and c.type != "string"
    ]
    return f"SELECT coalesce(sum({' + '.join(terms)}), 0) FROM {table_name(silver)}"


def column_expr(column, tokens: Sequence[str], bronze_name: str | None = None) -> str:
    """The silver expression of one planned column (a ``SilverColumn``), read from the
    bronze column ``bronze_name`` (the source name unless it had to be renamed)."""
    source = quote_column(bronze_name or column.source_name)
    if column.type == "source":
        return source
    if column.hinted and column.type != "string":
        return hinted_exprs(column, tokens, bronze_name)[0]
    if column.type not in SILVER_TYPES:
        raise PermanentTargetError(f"column {column.source_name!r}: unknown silver type {column.type!r}")
    if column.source_type != "string":
        # JSON text and non-string sources are converted as they are: no trim, no tokens.
        return f"CAST({source} AS {SPARK_TYPES[column.type]})"
    if column.type == "string":
        return string_expr(source, tokens)
    return typed_expr(source, column.type, tokens, column.source_name)


def bronze_column_names(source_names: Sequence[str]) -> list[str]:
    """The bronze column name of each source column, as the local target names them.

    Delta treats names that differ only in case as the same column, and the metadata
    columns keep their names, so such a source column becomes ``<name>_<n>``.
    """
    used = {name.lower() for name in BRONZE_META_COLUMNS}
    lowered = {name.lower() for name in source_names}
    result = []
    for name in source_names:
        if name.lower() in used:
            n = 2
            while f"{name}_{n}".lower() in used or f"{name}_{n}".lower() in lowered:
                n += 1
            name = f"{name}_{n}"
        used.add(name.lower())
        result.append(name)
    return result


def silver_select(bronze: TableRef, plan: SilverPlan) -> str:
    """``SELECT DISTINCT`` of the silver columns from the bronze table."""
    if not plan.columns:
        raise PermanentTargetError("the silver plan has no columns")
    tokens = list(plan.null_tokens)
    names = [identifier(c.name, "silver column name") for c in plan.columns]
    if len(set(names)) != len(names):
        raise PermanentTargetError("the silver plan names two columns alike")
    clash = set(names) & set(BRONZE_META_COLUMNS)
    if clash:
        raise PermanentTargetError(f"the silver plan reuses metadata column names: {sorted(clash)}")
    bronze_names = bronze_column_names([c.source_name for c in plan.columns])
    items = [
        f"{column_expr(c, tokens, b)} AS {quote_identifier(n)}" for c, b, n in zip(plan.columns, bronze_names, names)
    ]
    rescued = [
        (n, hinted_exprs(c, tokens, b)[1])
        for c, b, n in zip(plan.columns, bronze_names, names)
        if c.hinted and c.type != "string"
    ]
    if rescued:
        items.append(f"{rescued_json(rescued)} AS {quote_identifier(RESCUED_DATA)}")
    items += [quote_identifier(c) for c in CARRIED_COLUMNS]
    return "SELECT DISTINCT " + ", ".join(items) + f" FROM {table_name(bronze)}"


def create_silver(bronze: TableRef, silver: TableRef, plan: SilverPlan) -> str:
    """The statement that replaces the silver table."""
    return f"CREATE OR REPLACE TABLE {table_name(silver)} AS {silver_select(bronze, plan)}"
