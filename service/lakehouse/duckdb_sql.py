"""The silver plan applied in DuckDB SQL, for the Delta target (``spark_sql`` is the same
for Databricks): trim, null tokens, casts (checked per value for a sampled plan), names,
and the de-duplicated write."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from service.lakehouse.base import PermanentTargetError
from service.table_rules import BRONZE_META, RESCUED_DATA, SILVER_META, SOURCE_NAME_KEY
from service.transform import sql as q
from service.transform.naming import RESERVED_NAMES
from service.transform.plan import SilverColumn, SilverPlan, decimal_parts, is_silver_type, unrounded_decimal

# Silver Parquet options. Snappy is the fastest codec to write and read. Dictionary
# encoding is kept only for columns with few distinct values per row group: building a
# dictionary for a high-cardinality column only to abandon it is costly (bench/README.md).
# The writer buffers a whole row group, so wide tables get row groups capped in bytes.
SILVER_PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION snappy, DICTIONARY_SIZE_LIMIT 4096, ROW_GROUP_SIZE_BYTES '32MB'"


@dataclass
class BronzeScan:
    sql: str  # a relation over the bronze table's current version
    fields: dict[str, pa.Field]  # the table's fields by name
    # SQL literals of partition columns holding one value for the whole table (the
    # metadata columns of a bronze load): they are added after DISTINCT, not hashed.
    constants: dict[str, str] = dataclass_field(default_factory=dict)


def validate_plan(plan: SilverPlan) -> None:
    if not plan.columns:
        raise PermanentTargetError("the silver plan has no columns")
    seen: set[str] = set()
    for column in plan.columns:
        if not is_silver_type(column.type) and column.type != "source":
            raise PermanentTargetError(f"silver plan: column {column.source_name!r} has unknown type {column.type!r}")
        if not column.name or column.name in RESERVED_NAMES:
            raise PermanentTargetError(f"silver plan: invalid column name {column.name!r}")
        key = column.name.lower()
        if key in seen:
            raise PermanentTargetError(f"silver plan: duplicate column name {column.name!r}")
        seen.add(key)


def renamed_fields(fields: dict[str, pa.Field]) -> dict[bytes, pa.Field]:
    """The fields that record a source name of their own, by that name (the first of each)."""
    renamed: dict[bytes, pa.Field] = {}
    for field in fields.values():
        source = (field.metadata or {}).get(SOURCE_NAME_KEY.encode())
        if source is not None:
            renamed.setdefault(source, field)
    return renamed


def bronze_column(source_name: str, fields: dict[str, pa.Field], renamed: dict[bytes, pa.Field]) -> pa.Field:
    if source_name.encode() in renamed:
        return renamed[source_name.encode()]
    field = fields.get(source_name)
    if field is None or (source_name in BRONZE_META and not field.metadata):
        raise PermanentTargetError(f"silver plan: column {source_name!r} is not in the bronze table")
    return field


def is_string_type(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _tokens_castable(tokens: list[str]) -> set[str]:
    """Planned types to which some null token casts; values of those columns are compared
    with the tokens before casting."""
    checks = tuple(
        (name, f"TRY_CAST(t AS {q.DUCKDB_TYPES[name]}) IS NOT NULL") for name in q.DUCKDB_TYPES if name != "string"
    )
    return set(q.tokens_passing(tuple(tokens), checks))


# Plans of more columns than this apply the rules of string columns to lists of values
# (one lambda per rule) instead of one expression per column: each expression costs DuckDB
# planning time and intermediate vectors per thread, thousands of them seconds and gigabytes
# even for one row.
LISTED_COLUMNS = 512


@dataclass(frozen=True)
class ColumnRule:
    """How one column becomes silver: ``inner`` over the bronze value, then ``outer`` over
    its result and the column's name (both SQL)."""

    inner: Callable[[str], str]
    outer: Callable[[str, str | None], str]  # value, SQL of the column's name (None: a literal)
    per_value: bool  # string values trimmed, nulled or cast (not kept as they are)


def _keep(value: str) -> str:
    return value


def _column_rule(
    column: SilverColumn, is_string: bool, tokens: list[str], token_first: bool, verified: bool
) -> ColumnRule:
    if column.type == "source" or (column.type == "string" and not is_string):
        # Kept as it is (JSON text and non-string sources): no trim, no null tokens.
        if column.type == "source":
            return ColumnRule(_keep, lambda value, _: value, False)
        return ColumnRule(_keep, lambda value, _: f"CAST({value} AS VARCHAR)", False)
    if column.type == "string":
        # Only padded values pay for trim(), which copies every string it touches.
        return ColumnRule(
            lambda src: f"CASE WHEN {src} LIKE ' %' OR {src} LIKE '% ' THEN {q.trim_spaces(src)} ELSE {src} END",
            lambda value, _: f"if({q.is_token(value, tokens)}, NULL, {value})" if tokens else value,
            True,
        )
    if not is_string:
        return ColumnRule(_keep, lambda value, _: f"CAST({value} AS {q.DUCKDB_TYPES[column.type]})", False)
    if verified:
        return ColumnRule(_keep, lambda value, _: _typed_from_string(value, column.type, tokens, token_first), True)
    # The type comes from a sample: every value is checked against the grammar, and the
    # first one that does not fit stops the write (SampledPlanRejected).
    return ColumnRule(
        _keep,
        lambda value, label: q.silver_typed_expr(value, column.type, tokens, token_first, column.name, label_sql=label),
        True,
    )


def _listed_select(
    plan: SilverPlan,
    lists: list[tuple[int, str, ColumnRule]],
    names: list[str],
    inner: list[str],
    outer: list[str],
    carried: list[str],
    source: str,
) -> str:
    """The silver select with the ``lists`` columns grouped by rule: each group's values go
    through two lambdas (inner, outer) as one list, whose elements become the group's
    columns again. ``names`` are the output columns in order."""
    groups: dict[tuple[str, str], list[tuple[int, str, ColumnRule]]] = {}
    for i, src, rule in lists:
        groups.setdefault((rule.inner("v"), rule.outer("v", "n")), []).append((i, src, rule))
    picked: dict[str, str] = {}
    for k, members in enumerate(groups.values()):
        rule = members[0][2]
        values = f"[{', '.join(src for _, src, _ in members)}]"
        inner_v = rule.inner("v")
        inner.append(
            f"list_transform({values}, lambda v: {inner_v}) AS g{k}" if inner_v != "v" else f"{values} AS g{k}"
        )
        labels = f"[{', '.join(q.quote_literal(plan.columns[i].name) for i, _, _ in members)}]"
        outer.append(f"list_transform(g{k}, lambda v, n: {rule.outer('v', f'{labels}[n]')}) AS g{k}")
        picked.update({q.quote_ident(plan.columns[i].name): f"g{k}[{j + 1}]" for j, (i, _, _) in enumerate(members)})
    final = [f"{picked[name]} AS {name}" if name in picked else name for name in names]
    return (
        f"SELECT {', '.join(final + carried)} FROM (SELECT {', '.join(outer + carried)} "
        f"FROM (SELECT {', '.join(inner + carried)} FROM {source}))"
    )


def silver_sql(con: duckdb.DuckDBPyConnection, plan: SilverPlan, scan: BronzeScan) -> SilverSQL:
    """The plan applied to the bronze rows, in SQL."""
    tokens = list(plan.null_tokens)
    # Verified plans cast leniently first (TRY_CAST), so a token that casts must be
    # compared first; sampled plans check each value's grammar first, so only a token
    # that fits a grammar must (none of the default tokens does).
    token_first = _tokens_castable(tokens) if plan.verified else q.tokens_fitting(tokens, q.TYPE_CODES)
    inner, outer = [], []
    rescued: list[tuple[str, str]] = []  # (column name, SQL of its raw text when it did not fit)
    lists: list[tuple[int, str, ColumnRule]] = []  # (position, bronze name, rule) of listed columns
    renamed = renamed_fields(scan.fields)
    for i, column in enumerate(plan.columns):
        field = bronze_column(column.source_name, scan.fields, renamed)
        src = q.quote_ident(field.name)
        alias = f"s{i}"
        out = q.quote_ident(column.name)
        is_string = is_string_type(field.type) and column.source_type != "json"
        if column.hinted and column.type != "string":
            raw = src if is_string else f"CAST({src} AS VARCHAR)"
            inner.append(f"{raw} AS {alias}")
            expr, misfit = _hinted(alias, column.type, tokens)
            rescued.append((column.name, misfit))
            outer.append(f"{expr} AS {out}")
            continue
        rule = _column_rule(column, is_string, tokens, column.type in token_first, plan.verified)
        if rule.per_value and len(plan.columns) > LISTED_COLUMNS:
            lists.append((i, src, rule))
            continue
        inner.append(f"{rule.inner(src)} AS {alias}")
        outer.append(f"{rule.outer(alias, None)} AS {out}")

    names = [q.quote_ident(c.name) for c in plan.columns]
    if rescued:
        outer.append(f"{rescued_json(rescued)} AS {q.quote_ident(RESCUED_DATA)}")
        names.append(q.quote_ident(RESCUED_DATA))
    constant = {m: scan.constants[m] for m in SILVER_META if m in scan.constants}
    carried = [q.quote_ident(m) for m in SILVER_META if m not in constant]
    if lists:
        select = _listed_select(plan, lists, names, inner, outer, carried, scan.sql)
    else:
        select = f"SELECT {', '.join(outer + carried)} FROM (SELECT {', '.join(inner + carried)} FROM {scan.sql})"
    order = ", ".join(names)
    meta = ", ".join(f"{constant[m]} AS {q.quote_ident(m)}" if m in constant else q.quote_ident(m) for m in SILVER_META)
    return SilverSQL(select=select, columns=f"{order}, {meta}")


@dataclass
class SilverSQL:
    select: str  # the plan applied to every bronze row (constant metadata left out)
    columns: str  # the silver columns in order, constant metadata as literals

    def over(self, body: str) -> str:
        return f"SELECT {self.columns} FROM ({body})"


# Rows of more columns than this are deduplicated by row hash (see write_distinct).
WIDE_TABLE_COLUMNS = 64
# Bytes of one silver value in the hash table of a plain DISTINCT, by type: its fixed slot.
# A string's slot holds up to 12 bytes; longer strings add theirs, which is left out here,
# so the estimate errs toward the plain DISTINCT. Decimals and kept sources count as strings.
_SLOT_BYTES = {"integer": 8, "double": 8, "boolean": 1, "date": 4, "timestamp": 8}
_STRING_SLOT_BYTES = 16
# Per row: its hash, validity bits and the table's pointer to it.
_ROW_OVERHEAD_BYTES = 24
_BYTE_UNITS = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_ROW_HASH = "__lakesync_row_hash"
# Rows per row group of a table written through Arrow.
ARROW_BATCH_ROWS = 8192


# DuckDB's errors reach an Arrow stream's reader as OSError with DuckDB's text.
_STREAM_ERRORS = {
    "Invalid Input Error": duckdb.InvalidInputException,
    "Conversion Error": duckdb.ConversionException,
    "Out of Memory Error": duckdb.OutOfMemoryException,
    "IO Error": duckdb.IOException,
}


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    """The reader's batches, DuckDB's errors raised again as DuckDB's exceptions (the callers
    tell a plan that does not fit from a shortage by them)."""
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except OSError as exc:
            raise _STREAM_ERRORS.get(str(exc).split(":", 1)[0], duckdb.Error)(str(exc)) from exc
        yield batch


def _utc(field: pa.Field) -> pa.Field:
    # DuckDB names UTC "Etc/UTC" in Arrow; Delta takes only "UTC" (what its Parquet writer gives).
    if pa.types.is_timestamp(field.type) and field.type.tz is not None:
        return field.with_type(pa.timestamp(field.type.unit, "UTC"))
    return field


def _copy(con: duckdb.DuckDBPyConnection, query: str, out_file: str, column_count: int) -> None:
    if column_count > LISTED_COLUMNS:
        # DuckDB's Parquet writer reserves buffers per column and thread: a few thousand
        # columns exceed memory_limit even for one row. Arrow's writer holds what it is given.
        reader = con.sql(query).to_arrow_reader(ARROW_BATCH_ROWS)
        schema = pa.schema([_utc(field) for field in reader.schema])
        with pq.ParquetWriter(out_file, schema, compression="snappy") as writer:
            for batch in _batches(reader):
                writer.write_batch(batch.cast(schema))
        return
    # One output file: DuckDB still encodes row groups on all threads, and unlike
    # PER_THREAD_OUTPUT this mode fails cleanly when the disk fills up (the per-thread
    # writer was seen to crash or hang on ENOSPC).
    con.execute(f"COPY ({query}) TO {q.quote_literal(out_file)} ({SILVER_PARQUET_OPTIONS})").fetchall()


def hash_table_bytes(plan: SilverPlan, rows: int) -> int:
    """About the memory a plain DISTINCT's hash table of ``rows`` silver rows takes (a lower
    bound: long strings are left out)."""
    width = sum(_SLOT_BYTES.get(column.type, _STRING_SLOT_BYTES) for column in plan.columns)
    if plan.rescues:
        width += _STRING_SLOT_BYTES
    return rows * (width + _ROW_OVERHEAD_BYTES)


def memory_limit_bytes(con: duckdb.DuckDBPyConnection) -> int | None:
    """The connection's memory_limit in bytes; None when DuckDB shows it in a form not known here."""
    shown = str(con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0])  # e.g. "671.3 MiB"
    number, _, unit = shown.partition(" ")
    try:
        return int(float(number) * _BYTE_UNITS[unit])
    except (KeyError, ValueError):
        return None


def dedup_by_hash(con: duckdb.DuckDBPyConnection, plan: SilverPlan, rows: int) -> bool:
    """Whether write_distinct should de-duplicate by row hash: for wide rows, and for rows
    whose plain DISTINCT would outgrow memory_limit and spill."""
    if len(plan.columns) > WIDE_TABLE_COLUMNS:
        return True
    limit = memory_limit_bytes(con)
    return limit is not None and hash_table_bytes(plan, rows) > limit


def write_distinct(
    con: duckdb.DuckDBPyConnection, silver_sql: SilverSQL, plan: SilverPlan, rows: int, staging: str, out_file: str
) -> None:
    """Write the distinct silver rows of ``rows`` bronze rows to ``out_file``.

    A plain DISTINCT is one pass and the fastest while its hash table of whole rows fits in
    memory_limit; past that it spills, and its cost grows faster than the rows. With
    hundreds of columns it does not fit even when spilling. In those cases
    (``dedup_by_hash``) the rows are therefore written as they are, then hashed from that
    file: rows whose hash occurs once are certainly unique, and only when some hash is
    shared is the file rewritten, with an exact DISTINCT over the rows sharing one. The
    plan is applied once either way.
    """
    column_count = len(plan.columns)
    if not dedup_by_hash(con, plan, rows):
        _copy(con, silver_sql.over(f"SELECT DISTINCT * FROM ({silver_sql.select})"), out_file, column_count)
        return
    every_row = os.path.join(staging, "rows.parquet")
    _copy(con, silver_sql.over(silver_sql.select), every_row, column_count)
    written = f"read_parquet({q.quote_literal(every_row)})"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE shared_hashes AS SELECT h FROM "
        f"(SELECT hash(*COLUMNS(*)) AS h FROM {written}) GROUP BY h HAVING count(*) > 1"
    ).fetchall()
    if con.execute("SELECT count(*) FROM shared_hashes").fetchall()[0][0] == 0:
        os.rename(every_row, out_file)
        return
    hashed = f"SELECT *, hash(*COLUMNS(*)) AS {_ROW_HASH} FROM {written}"
    _copy(
        con,
        f"SELECT * EXCLUDE ({_ROW_HASH}) FROM ({hashed}) "
        f"WHERE {_ROW_HASH} NOT IN (SELECT h FROM shared_hashes) "
        f"UNION ALL "
        f"SELECT DISTINCT * EXCLUDE ({_ROW_HASH}) FROM ({hashed}) "
        f"WHERE {_ROW_HASH} IN (SELECT h FROM shared_hashes)",
        out_file,
        column_count,
    )


def duckdb_type(type_name: str) -> str:
    parts = decimal_parts(type_name)
    return f"DECIMAL({parts[0]},{parts[1]})" if parts else q.DUCKDB_TYPES[type_name]


def _hinted(col: str, type_name: str, tokens: list[str]) -> tuple[str, str]:
    """A hinted column's value cast leniently (NULL when it does not fit), and the raw text
    of a value that did not fit (NULL otherwise)."""
    trimmed = q.trim_spaces(col)
    clean = (
        f"CASE WHEN {col} IS NULL OR {q.is_token(trimmed, tokens)} THEN NULL ELSE {trimmed} END"
        if tokens
        else f"NULLIF({trimmed}, '')"
    )
    if type_name == "boolean":  # the grammar of inferred booleans, not DuckDB's wider one (yes, t, 1)
        typed = f"CASE lower({clean}) WHEN 'true' THEN true WHEN 'false' THEN false END"
    else:
        typed = f"TRY_CAST({clean} AS {duckdb_type(type_name)})"
        wide = unrounded_decimal(type_name)
        if wide is not None:
            typed = f"CASE WHEN {typed} = TRY_CAST({clean} AS {duckdb_type(wide)}) THEN {typed} END"
    return typed, f"CASE WHEN {typed} IS NULL AND {clean} IS NOT NULL THEN {col} END"


def rescued_json(rescued: list[tuple[str, str]]) -> str:
    """A JSON object of the columns whose raw text is not NULL, or NULL when none is: the
    same text on every target (Spark's builds it alike, see spark_sql.rescued_json)."""
    members = [
        f"CASE WHEN ({misfit}) IS NOT NULL THEN concat({q.quote_literal(json.dumps(name))}, ':', to_json({misfit})) END"
        for name, misfit in rescued
    ]
    return f"NULLIF(concat('{{', concat_ws(',', {', '.join(members)}), '}}'), '{{}}')"


def count_rescued(con: duckdb.DuckDBPyConnection, parquet_file: str) -> int:
    """Values set aside in the written silver file's _rescued_data column."""
    row = con.execute(
        f"SELECT coalesce(sum(json_array_length(json_keys({q.quote_ident(RESCUED_DATA)}))), 0) "
        f"FROM read_parquet({q.quote_literal(parquet_file)})"
    ).fetchone()
    return int(row[0]) if row else 0


def _typed_from_string(col: str, type_name: str, tokens: list[str], token_first: bool) -> str:
    """Trim, null tokens and cast a string value. The plan's type comes from a strict
    grammar every value fits, so DuckDB's cast (which also trims) gives the same value;
    a value that still does not cast raises instead of becoming NULL."""
    duck = q.DUCKDB_TYPES[type_name]
    trimmed = q.trim_spaces(col)
    is_token = q.is_token(trimmed, tokens)
    if type_name == "boolean":
        exact = (
            f"CASE lower({trimmed}) WHEN 'true' THEN true WHEN 'false' THEN false ELSE CAST({trimmed} AS BOOLEAN) END"
        )
    else:
        exact = f"CAST({trimmed} AS {duck})"
    slow = f"CASE WHEN {col} IS NULL OR {is_token} THEN NULL ELSE {exact} END"
    fast = f"TRY_CAST({col} AS {duck})"
    if token_first:
        # Some token casts (nan to double): only an unpadded value that is not a token
        # may be cast as it is, rather than trimming and comparing every value first.
        plain = f"NOT ({col} LIKE ' %' OR {col} LIKE '% ' OR {q.is_token(col, tokens)})"
        fast = f"CASE WHEN {plain} THEN {fast} END"
    # TRY_CAST is vectorised (and dictionary-aware); only values it rejects, which
    # should be nulls and null tokens, take the slow path.
    return f"COALESCE({fast}, {slow})"
