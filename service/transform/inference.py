"""Silver type inference over every value of the local Parquet file.

A string column gets a typed silver type only when every non-null value (after trim and
null tokens) fits that type's strict grammar, so applying the plan never loses data.

Cost: a small first slice of rows is classified first. A value there that fits no
grammar already proves the column is a string, and a value that fits some grammars
rules out the others (an integer rules out boolean, date and timestamp; a decimal rules
out integer). One aggregate query then checks every row of the file, only for the
columns and types still possible; columns already known to be strings are not read.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from service.config import DEFAULT_NULL_TOKENS
from service.ingest.model import logical_type
from service.transform import arrow_types
from service.transform import sql as q
from service.transform.naming import snake_case_names
from service.transform.plan import SilverColumn, SilverPlan

log = logging.getLogger(__name__)

# Rows classified before the full pass; only used to rule types out, never to decide one.
SAMPLE_ROWS = 4096
COLUMNS_PER_QUERY = 64

ALL_CANDIDATES = frozenset(q.TYPE_CODES)


def read_source_schema(parquet_path: Path | str) -> list[tuple[str, str]]:
    """(column name, logical type) for each column of the Parquet file, in order.

    A column whose Parquet logical type is JSON holds JSON text of nested values and is
    reported as "json" even though Arrow reads it as a plain string."""
    pf = pq.ParquetFile(parquet_path)
    try:
        arrow_schema = pf.schema_arrow
        json_columns = set()
        parquet_schema = pf.schema
        for i in range(len(parquet_schema)):
            column = parquet_schema.column(i)
            logical = getattr(column.logical_type, "type", None)
            if logical == "JSON" and "." not in column.path:
                json_columns.add(column.path)
    finally:
        pf.close()
    result = []
    for field in arrow_schema:
        kind = "json" if field.name in json_columns else logical_type(field.type)
        result.append((field.name, kind))
    return result


def _candidates_from_codes(min_code, max_code) -> frozenset[str]:
    """The types still possible after seeing values with these codes."""
    if min_code is None:
        return ALL_CANDIDATES  # only nulls so far: nothing ruled out
    if max_code <= q.TYPE_CODES["integer"]:
        return frozenset({"integer", "double"})
    if max_code <= q.TYPE_CODES["double"]:
        return frozenset({"double"})
    for name in ("boolean", "date", "timestamp"):
        if min_code == max_code == q.TYPE_CODES[name]:
            return frozenset({name})
    return frozenset()


def _run_all(con, statements: list[str], workers: int) -> list[list[tuple]]:
    """The results of ``statements``, run on up to ``workers`` connections side by side.

    DuckDB gives each row group to one thread, so a file with a single huge row group
    (a wide file) keeps every core busy only when queries on different columns run at
    the same time."""
    if workers <= 1 or len(statements) <= 1:
        return [con.execute(sql).fetchall() for sql in statements]

    def run(sql: str) -> list[tuple]:
        with contextlib.closing(con.cursor()) as cursor:
            return cursor.execute(sql).fetchall()

    with ThreadPoolExecutor(max_workers=min(workers, len(statements))) as pool:
        return list(pool.map(run, statements))


def _chunks(items: list, size: int = 0) -> list[list]:
    size = size or COLUMNS_PER_QUERY
    return [items[start : start + size] for start in range(0, len(items), size)]


def _sample_codes(
    con, source_sql: str, positions: list[int], tokens: list[str], token_first: set[str], workers: int
) -> dict[int, tuple]:
    """(min code, max code) of each string column over its first SAMPLE_ROWS values.

    The sample is unpivoted into (column, value) rows and classified by a single
    expression: one classification expression per column would make planning, not
    data, the cost on files with hundreds of columns.
    """
    expr = q.classify_expr("v", sorted(ALL_CANDIDATES), tokens, bool(token_first))

    def unpivoted(chunk: list[int]) -> str:
        values = ", ".join(f"c{i}" for i in chunk)
        numbers = ", ".join(str(i) for i in chunk)
        return (
            f"SELECT unnest([{numbers}]) AS col, unnest([{values}]) AS v "
            f"FROM (SELECT {values} FROM {source_sql} LIMIT {SAMPLE_ROWS})"
        )

    def classified(relation: str) -> str:
        # Each distinct value is classified once: codes, flags, dates and labels repeat, and
        # the expression costs far more per value than the hashing that removes repeats.
        return (
            f"SELECT col, min(k), max(k) FROM (SELECT col, {expr} AS k FROM "
            f"(SELECT DISTINCT col, v FROM ({relation}))) GROUP BY col"
        )

    chunks = _chunks(positions)
    if len(chunks) == 1:
        rows = con.execute(classified(unpivoted(chunks[0]))).fetchall()
    else:
        # A plain (not TEMP) table, so that the other connections of _run_all see it; the
        # database is the process's, hence the unique name.
        table = f"sample_values_{uuid.uuid4().hex}"
        con.execute(f"CREATE TABLE {table} (col INTEGER, v VARCHAR)").fetchall()
        try:
            _run_all(con, [f"INSERT INTO {table} {unpivoted(chunk)}" for chunk in chunks], workers)
            rows = con.execute(classified(table)).fetchall()
        finally:
            con.execute(f"DROP TABLE IF EXISTS {table}").fetchall()
    codes = {col: (lo, hi) for col, lo, hi in rows}
    return {i: codes.get(i, (None, None)) for i in positions}


def _classify(
    con,
    source_sql: str,
    columns: list[tuple[str, frozenset[str]]],
    tokens: list[str],
    token_first: set[str],
    workers: int,
) -> list[tuple]:
    """(min code, max code) per column (an alias of ``source_sql``) over all its rows.

    Wide files are done COLUMNS_PER_QUERY columns at a time, each query reading only its
    own columns: every classified column costs DuckDB intermediate vectors per thread, and
    reading hundreds of columns at once of a large row group exceeds memory_limit.
    """
    statements = []
    for chunk in _chunks(columns):
        selected = f"SELECT {', '.join(alias for alias, _ in chunk)} FROM {source_sql}"
        inner = ", ".join(
            q.classify_expr(alias, sorted(cands), tokens, bool(cands & token_first)) + f" AS k{i}"
            for i, (alias, cands) in enumerate(chunk)
        )
        outer = ", ".join(f"min(k{i}), max(k{i})" for i in range(len(chunk)))
        statements.append(f"SELECT {outer} FROM (SELECT {inner} FROM ({selected}))")
    codes: list[tuple] = []
    for chunk, rows in zip(_chunks(columns), _run_all(con, statements, workers)):
        row = rows[0]
        codes += [(row[2 * i], row[2 * i + 1]) for i in range(len(chunk))]
    return codes


def infer_plan(
    parquet_path: Path | str,
    *,
    null_tokens: list[str] | None = None,
    settings=None,
    sampled: bool = False,
    hints: dict[str, str] | None = None,
    small_rows: pa.Table | None = None,
) -> SilverPlan:
    """The silver plan of the file; ``hints`` (source name -> type) set those columns' types.
    ``small_rows``: the file's rows, when the caller has read it whole
    (``arrow_types.read_small_parquet``); else a small file is read here."""
    hints = hints or {}
    path = Path(parquet_path)
    tokens = list(DEFAULT_NULL_TOKENS if null_tokens is None else null_tokens)
    schema = read_source_schema(path)
    names = snake_case_names([name for name, _ in schema])

    string_positions = [i for i, (_, kind) in enumerate(schema) if kind == "string"]
    types: dict[int, str] = {}
    verified = True
    if string_positions:
        types, verified = _infer_string_types(
            path, len(schema), string_positions, tokens, settings, sampled=sampled, small_rows=small_rows
        )

    columns = []
    for i, ((source_name, kind), name) in enumerate(zip(schema, names)):
        if kind == "string":
            silver_type = types[i]
        elif kind == "json":
            silver_type = "string"  # JSON text of nested values, kept as it is
        else:
            silver_type = "source"
        hinted = source_name in hints
        if hinted:
            silver_type = hints[source_name]
        columns.append(
            SilverColumn(source_name=source_name, name=name, type=silver_type, source_type=kind, hinted=hinted)
        )
    return SilverPlan(columns=columns, null_tokens=tokens, verified=verified)


def _infer_string_types(
    path: Path,
    column_count: int,
    positions: list[int],
    tokens: list[str],
    settings,
    *,
    sampled: bool,
    small_rows: pa.Table | None = None,
) -> tuple[dict[int, str], bool]:
    """Silver type of each string column, by position in the file, and whether every value
    was checked. With ``sampled``, a column the sample gives a typed type keeps it
    unchecked; the plan's writer checks it (a sample that saw only nulls decides nothing,
    so such a column is still classified over every value)."""
    types: dict[int, str] = {}
    table = small_rows if small_rows is not None else arrow_types.read_small_parquet(path)
    if table is not None:
        # A small file: Arrow's kernels on its values, DuckDB only for what they leave open.
        for i in positions:
            found = arrow_types.column_type(table.column(i), tokens)
            if found is not None:
                types[i] = found
        positions = [i for i in positions if i not in types]
        if not positions:
            return types, True
    memory_limit, threads, temp_dir = q.settings_values(settings)
    with contextlib.closing(q.connect(memory_limit, threads, temp_dir)) as con:
        token_first = q.tokens_fitting(tokens, q.TYPE_CODES)
        # Columns are addressed by position: DuckDB matches names case-insensitively, and
        # a file may hold both "ID" and "id".
        aliases = ", ".join(f"c{i}" for i in range(column_count))
        source = f"read_parquet({q.quote_literal(str(path))}) AS src({aliases})"

        sampled_codes = _sample_codes(con, source, positions, tokens, token_first, threads)
        if pq.read_metadata(path).num_rows <= SAMPLE_ROWS:
            # The sample held every row: its codes are the file's.
            return {**types, **{i: q.type_from_codes(lo, hi) for i, (lo, hi) in sampled_codes.items()}}, True

        result = {i: "string" for i in positions}
        candidates = {i: _candidates_from_codes(lo, hi) for i, (lo, hi) in sampled_codes.items()}
        if sampled:
            for i, (lo, hi) in sampled_codes.items():
                if lo is not None:
                    result[i] = q.type_from_codes(lo, hi)
            candidates = {i: c for i, c in candidates.items() if sampled_codes[i][0] is None}
        pending = [(i, cands) for i, cands in candidates.items() if cands]
        if pending:
            codes = _classify(con, source, [(f"c{i}", cands) for i, cands in pending], tokens, token_first, threads)
            for (i, _), (lo, hi) in zip(pending, codes):
                result[i] = q.type_from_codes(lo, hi)
        log.debug("inferred types for %s: %s", path.name, result)
        verified = not (sampled and any(result[i] != "string" and sampled_codes[i][0] is not None for i in positions))
        return result, verified
