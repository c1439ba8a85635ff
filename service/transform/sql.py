"""DuckDB building blocks shared by type inference and the silver writers.

The value grammars live here once: ``infer_plan`` types a column only when every value
fits one, so applying the plan casts without loss. ``silver_typed_expr`` is the strict
per-value conversion other targets are checked against.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence

import duckdb

from service import duckdb_shared

DEFAULT_MEMORY_LIMIT = "512MB"
DEFAULT_THREADS = 2

# Typed silver types in inference precedence order, with the code each value gets.
TYPE_CODES = {"integer": 1, "double": 2, "boolean": 3, "date": 4, "timestamp": 5}
NO_TYPE = 6  # a non-null value that fits none of the typed grammars

# The grammars as regular expressions (full match). DuckDB checks integer, boolean and
# date faster by round trip (see type_check); engines without that use these.
INTEGER_RE = r"-?(0|[1-9][0-9]*)"
DOUBLE_RE = r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
DATE_RE = r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
TIMESTAMP_RE = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,6})?(Z|[-+]([01][0-9]|2[0-3]):[0-5][0-9])?"
)

# DuckDB types the silver columns are cast to; all map to plain Delta types
# (long, double, boolean, date, timestamp) through Arrow.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "integer": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMPTZ",
}


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def settings_values(settings) -> tuple[str, int, str | None]:
    """(memory_limit, threads, temp_dir) from None, an IngestSettings-like object or a dict."""
    if settings is None:
        return DEFAULT_MEMORY_LIMIT, DEFAULT_THREADS, None
    if isinstance(settings, dict):
        get = settings.get
    else:

        def get(key, default=None):
            return getattr(settings, key, default)

    memory = get("duckdb_memory_limit") or DEFAULT_MEMORY_LIMIT
    threads = int(get("duckdb_threads") or DEFAULT_THREADS)
    temp_dir = get("temp_dir") or None
    return str(memory), max(1, threads), temp_dir


def connect(
    memory_limit: str = DEFAULT_MEMORY_LIMIT, threads: int = DEFAULT_THREADS, temp_dir: str | os.PathLike | None = None
) -> duckdb.DuckDBPyConnection:
    """A cursor on the process's transform database: bounded memory, spilling under temp_dir.

    Close it after use; the database itself stays open for the next step (see
    service.duckdb_shared).
    """
    config = {
        "memory_limit": str(memory_limit),
        "threads": int(threads),
        # Naive timestamps are read as UTC, and TIMESTAMPTZ comes out as tz="UTC" in Arrow.
        "TimeZone": "UTC",
        # Row order is not part of the contract; dropping it lets scans and DISTINCT run
        # in parallel with less buffering.
        "preserve_insertion_order": False,
    }
    return duckdb_shared.database(config, temp_dir).cursor()


def trim_spaces(value_sql: str) -> str:
    """SQL of the value without leading and trailing spaces (U+0020), the one character
    every engine's trim removes: DuckDB's one-argument trim() also removes other Unicode
    spaces (no-break space...), Spark's only this one."""
    return f"trim({value_sql}, ' ')"


def is_token(value_sql: str, tokens: Sequence[str]) -> str:
    if not tokens:
        return "false"
    # An OR of equalities: DuckDB evaluates a constant IN list much more slowly, even in
    # a CASE branch that no row reaches.
    return "(" + " OR ".join(f"{value_sql} = {quote_literal(t)}" for t in tokens) + ")"


def type_check(value_sql: str, type_name: str) -> str:
    """SQL true when the (already trimmed, non-null) value fits the type's strict grammar.

    Integer, boolean and date use a round trip: the value must equal the canonical text
    of what DuckDB's (lenient) cast makes of it. That is exactly the grammar, and casts
    run on Parquet dictionaries directly, several times faster than a regex.
    """
    v = value_sql
    if type_name == "integer":
        # Canonical int64 text is ^-?(0|[1-9][0-9]*)$ within range; "-0" also fits the grammar.
        return f"(CAST(TRY_CAST({v} AS BIGINT) AS VARCHAR) = {v} OR {v} = '-0')"
    if type_name == "double":
        # isfinite rejects values that only overflow to inf (1e999).
        return f"(regexp_full_match({v}, {quote_literal(DOUBLE_RE)}) AND isfinite(TRY_CAST({v} AS DOUBLE)))"
    if type_name == "boolean":
        return f"(CAST(TRY_CAST({v} AS BOOLEAN) AS VARCHAR) = lower({v}))"
    if type_name == "date":
        # Impossible dates (2024-02-30) do not cast; year 0 prints as "0001-01-01 (BC)".
        return f"(strlen({v}) = 10 AND CAST(TRY_CAST({v} AS DATE) AS VARCHAR) = {v})"
    if type_name == "timestamp":
        return (
            f"(strlen({v}) BETWEEN 19 AND 32 AND "
            f"regexp_full_match({v}, {quote_literal(TIMESTAMP_RE)}) AND "
            f"NOT starts_with({v}, '0000') AND TRY_CAST({v} AS TIMESTAMPTZ) IS NOT NULL)"
        )
    raise ValueError(f"no grammar for type {type_name!r}")


def cast_value(value_sql: str, type_name: str) -> str:
    """SQL converting a value that passed ``type_check`` to the silver type.

    The very TRY_CAST the check made: DuckDB computes it once for both, which takes about
    a fifth off applying a plan that is checked value by value. (For such a value the
    lenient cast and the exact one agree.)
    """
    return f"TRY_CAST({value_sql} AS {DUCKDB_TYPES[type_name]})"


def tokens_fitting(tokens: Sequence[str], types: Iterable[str]) -> set[str]:
    """The types whose grammar accepts at least one null token.

    For those types a raw value must be compared with the tokens before its type is
    checked; for the others a value that fits the grammar cannot be a token, which
    lets the common case skip trimming and the token comparison.
    """
    return set(_tokens_fitting(tuple(tokens), tuple(types)))


def _tokens_fitting(tokens: tuple[str, ...], types: tuple[str, ...]) -> frozenset[str]:
    return tokens_passing(tokens, tuple((name, type_check("t", name)) for name in types))


@functools.lru_cache(maxsize=128)
def tokens_passing(tokens: tuple[str, ...], checks: tuple[tuple[str, str], ...]) -> frozenset[str]:
    """The names of the ``checks`` (SQL over a value ``t``) that hold for at least one token.

    Cached: the answer depends on the settings only, and every step asks.
    """
    if not tokens or not checks:
        return frozenset()
    values = ", ".join(f"({quote_literal(t)})" for t in tokens)
    select = ", ".join(f"bool_or({check})" for _, check in checks)
    with duckdb_shared.cursor({"threads": 1}) as con:
        row = con.execute(f"SELECT {select} FROM (VALUES {values}) AS v(t)").fetchall()[0]
    return frozenset(name for (name, _), hit in zip(checks, row) if hit)


def classify_expr(col_sql: str, candidates: Sequence[str], tokens: Sequence[str], token_first: bool) -> str:
    """SQL giving each value its type code: NULL for a null or a null token, the code
    of the first candidate type (in precedence order) whose grammar the trimmed value
    fits, else NO_TYPE."""
    ordered = [t for t in TYPE_CODES if t in candidates]
    trimmed = trim_spaces(col_sql)
    slow = [f"WHEN {is_token(trimmed, tokens)} THEN NULL"]
    slow += [f"WHEN {type_check(trimmed, t)} THEN {TYPE_CODES[t]}" for t in ordered]
    slow_case = "CASE " + " ".join(slow) + f" ELSE {NO_TYPE} END"
    if token_first:
        return f"CASE WHEN {col_sql} IS NULL THEN NULL ELSE ({slow_case}) END"
    # A value that fits a grammar as it is has no surrounding spaces and is not a token.
    fast = [f"WHEN {type_check(col_sql, t)} THEN {TYPE_CODES[t]}" for t in ordered]
    return f"CASE WHEN {col_sql} IS NULL THEN NULL " + " ".join(fast) + f" ELSE ({slow_case}) END"


def type_from_codes(min_code, max_code) -> str:
    """The silver type of a string column from the min and max value codes."""
    if min_code is None:
        return "string"  # no non-null value
    if max_code <= TYPE_CODES["integer"]:
        return "integer"
    if max_code <= TYPE_CODES["double"]:
        return "double"
    for name in ("boolean", "date", "timestamp"):
        if min_code == max_code == TYPE_CODES[name]:
            return name
    return "string"


def silver_string_expr(trimmed_sql: str, tokens: Sequence[str]) -> str:
    """A trimmed string value, NULL when it is a null token."""
    if not tokens:
        return trimmed_sql
    return f"CASE WHEN {is_token(trimmed_sql, tokens)} THEN NULL ELSE {trimmed_sql} END"


def silver_typed_expr(
    col_sql: str,
    type_name: str,
    tokens: Sequence[str],
    token_first: bool,
    column_label: str,
    *,
    label_sql: str | None = None,
) -> str:
    """A raw string value trimmed, nulled and cast to ``type_name``.

    A value that fits neither the grammar nor the null tokens raises an error rather
    than being lost. The error names the column: ``column_label``, or the value of
    ``label_sql`` when given.
    """
    trimmed = trim_spaces(col_sql)
    label = column_label.replace(chr(39), chr(39) * 2) if label_sql is None else f"' || {label_sql} || '"
    message = f"'column {label}: value ''' || {col_sql} || ''' is not a valid {type_name}'"
    slow = (
        f"CASE WHEN {is_token(trimmed, tokens)} THEN NULL "
        f"WHEN {type_check(trimmed, type_name)} THEN {cast_value(trimmed, type_name)} "
        f"ELSE error({message}) END"
    )
    if token_first:
        return f"CASE WHEN {col_sql} IS NULL THEN NULL ELSE ({slow}) END"
    return (
        f"CASE WHEN {type_check(col_sql, type_name)} THEN {cast_value(col_sql, type_name)} "
        f"WHEN {col_sql} IS NULL THEN NULL ELSE ({slow}) END"
    )
