"""A local Databricks workspace for tests: the documented subsets of the REST APIs the
Databricks target uses, answering over real HTTP, with Spark SQL really executed on DuckDB.

- Auth: ``Authorization: Bearer`` with the personal access token, or with a token from
  the OAuth machine-to-machine endpoint ``POST /oidc/v1/token`` (client credentials in
  HTTP Basic auth, ``grant_type=client_credentials``, ``scope=all-apis``). No credentials:
  401; an unknown or expired token: 403 ``Invalid access token.``
- Files API (``/api/2.0/fs/files/Volumes/...``, ``/api/2.0/fs/directories/Volumes/...``):
  PUT (streamed to disk, ``overwrite``), GET, HEAD, DELETE of files; PUT (mkdirs), GET
  (list), HEAD, DELETE (empty only) of directories. A volume exists once
  ``CREATE VOLUME`` ran.
- SQL warehouses: ``GET /api/2.0/sql/warehouses/<id>``.
- Statement Execution API: ``POST /api/2.0/sql/statements`` runs the statement in a
  thread (PENDING, then RUNNING, then SUCCEEDED / FAILED with ``status.error``), honours
  ``wait_timeout`` up to ``max_wait`` seconds (0 by default, so the first answer is
  PENDING), ``GET .../<id>`` polls, ``POST .../<id>/cancel`` cancels. Results come back
  as ``JSON_ARRAY`` / ``INLINE``.

Spark SQL is translated token by token: backtick identifiers become double-quoted ones,
Spark string literals (backslash escapes) become DuckDB literals, Spark types and the few
functions the target emits get their DuckDB names. Each catalog is one DuckDB file
ATTACHed under its name, so ``catalog.schema.table`` names work as they are. Statements
DuckDB cannot run as they are get their own handler: ``CREATE CATALOG/SCHEMA/VOLUME``,
schemaless placeholder tables, and ``COPY INTO ... FILEFORMAT = PARQUET`` with its
documented load-each-file-once bookkeeping (``force``, ``mergeSchema``) and Delta's rule
that column names with `` ,;{}()\\n\\t=`` need column mapping.

Faults are set from the test process: ``inject()`` queues canned HTTP responses (429 with
Retry-After, 503 TEMPORARILY_UNAVAILABLE, 401, 403...) for matching requests,
``fail_statements()`` ends matching statements FAILED, ``delay_statements()`` keeps them
RUNNING for a while.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import json
import re
import secrets
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
from flask import Flask, Response, jsonify, request

from tests.emulators.server import Emulator, FaultQueue, ServerThread


class SqlError(Exception):
    def __init__(self, message: str, error_code: str = "BAD_REQUEST"):
        super().__init__(message)
        self.message = message
        self.error_code = error_code


# --- Spark SQL tokens -------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<str>'(?:\\.|[^'\\])*')
  | (?P<dstr>"(?:\\.|[^"\\])*")
  | (?P<ident>`(?:``|[^`])*`)
  | (?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[dDlL]?)
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op><>|<=|>=|!=|\|\||[(),.;=<>+\-*/%\[\]:])
    """,
    re.X | re.S,
)

_SPARK_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a", "%": "\\%", "_": "\\_"}


def spark_unescape(body: str) -> str:
    """The value of a Spark string literal's body (between the quotes)."""
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\" or i + 1 == len(body):
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1]
        if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 2 : i + 6] or ""):
            out.append(chr(int(body[i + 2 : i + 6], 16)))
            i += 6
            continue
        out.append(_SPARK_ESCAPES.get(nxt, nxt))
        i += 2
    return "".join(out)


@dataclass
class Token:
    kind: str
    text: str

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def value(self) -> str:
        if self.kind == "ident":
            return self.text[1:-1].replace("``", "`")
        if self.kind in ("str", "dstr"):
            return spark_unescape(self.text[1:-1])
        return self.text


def tokenize(text: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise SqlError(f"[PARSE_SYNTAX_ERROR] Syntax error at or near '{text[pos : pos + 20]}'. SQLSTATE: 42601")
        tokens.append(Token(m.lastgroup, m.group()))
        pos = m.end()
    while tokens and (tokens[-1].kind == "ws" or tokens[-1].text == ";"):
        tokens.pop()
    return tokens


# Spark names that DuckDB spells differently; everything else passes as it is.
_TYPES = {
    "STRING": "VARCHAR",
    "TIMESTAMP": "TIMESTAMPTZ",
    "TIMESTAMP_NTZ": "TIMESTAMP",
    "BINARY": "BLOB",
    "LONG": "BIGINT",
    "SHORT": "SMALLINT",
    "BYTE": "TINYINT",
}
# Spark's trim() removes spaces (U+0020) only; DuckDB's one-argument trim() also other
# Unicode spaces, hence a macro.
_FUNCTIONS = {
    "REGEXP_LIKE": "regexp_matches",
    "RLIKE": "regexp_matches",
    "RAISE_ERROR": "error",
    "TRIM": "spark_trim",
    "ARRAY": "list_value",
    "GET_JSON_OBJECT": "json_extract_string",
}


def duck_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duck_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def translate(tokens: list[Token]) -> str:
    out = []
    for i, tok in enumerate(tokens):
        if tok.kind == "ident":
            out.append(duck_ident(tok.value))
        elif tok.kind in ("str", "dstr"):
            out.append(duck_literal(tok.value))
        elif tok.kind == "num":
            out.append(tok.text.rstrip("dDlL"))
        elif tok.kind == "word":
            up = tok.upper
            nxt = next((t for t in tokens[i + 1 :] if t.kind != "ws"), None)
            if up in _FUNCTIONS and nxt is not None and nxt.text == "(":
                out.append(_FUNCTIONS[up])
            elif up in _TYPES:
                out.append(_TYPES[up])
            else:
                out.append(tok.text)
        else:
            out.append(tok.text)
    return "".join(out)


class Cursor:
    """Walks the significant tokens of a statement."""

    def __init__(self, tokens: list[Token]):
        self.all = tokens
        self.idx = [i for i, t in enumerate(tokens) if t.kind != "ws"]
        self.pos = 0

    def peek(self, ahead: int = 0) -> Token | None:
        p = self.pos + ahead
        return self.all[self.idx[p]] if p < len(self.idx) else None

    def done(self) -> bool:
        return self.pos >= len(self.idx)

    def take(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise SqlError("[PARSE_SYNTAX_ERROR] Syntax error at end of input. SQLSTATE: 42601")
        self.pos += 1
        return tok

    def accept(self, *words: str) -> bool:
        for k, w in enumerate(words):
            tok = self.peek(k)
            if tok is None or (tok.upper != w and tok.text != w):
                return False
        self.pos += len(words)
        return True

    def expect(self, *words: str) -> None:
        if not self.accept(*words):
            got = self.peek().text if self.peek() else "end of input"
            raise SqlError(
                f"[PARSE_SYNTAX_ERROR] Syntax error at or near '{got}': expected {' '.join(words)}. SQLSTATE: 42601"
            )

    def name(self) -> list[str]:
        parts = []
        while True:
            tok = self.take()
            if tok.kind not in ("ident", "word"):
                raise SqlError(f"[PARSE_SYNTAX_ERROR] Syntax error at or near '{tok.text}'. SQLSTATE: 42601")
            # Unity Catalog stores names in lowercase.
            parts.append(tok.value.lower())
            if not self.accept("."):
                return parts

    def rest(self) -> list[Token]:
        if self.done():
            return []
        return self.all[self.idx[self.pos] :]

    def options(self) -> dict[str, str]:
        """``( 'key' = 'value', ... )``"""
        self.expect("(")
        result = {}
        while not self.accept(")"):
            key = self.take()
            self.expect("=")
            value = self.take()
            result[key.value.lower()] = value.value
            self.accept(",")
        return result

    def skip_parens(self) -> None:
        depth = 0
        while True:
            tok = self.take()
            depth += tok.text == "("
            depth -= tok.text == ")"
            if depth == 0:
                return


_INVALID_DELTA_NAME = re.compile(r"[ ,;{}()\n\t=]")


# --- the SQL warehouse ------------------------------------------------------------------


class Warehouse:
    """Spark SQL over DuckDB: one main database file plus one file per catalog."""

    def __init__(self, root: Path):
        self.root = root
        self.volumes_root = root / "volumes"
        self.catalog_dir = root / "catalogs"
        self.catalog_dir.mkdir(parents=True, exist_ok=True)
        self.volumes_root.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(root / "warehouse.duckdb"))
        self._exec("SET TimeZone = 'UTC'")
        self._exec("CREATE OR REPLACE TEMP MACRO spark_trim(s) AS trim(s, ' ')")
        self.lock = threading.RLock()
        self.catalogs: set[str] = set()
        self.placeholders: set[str] = set()  # schemaless tables waiting for COPY INTO
        self.properties: dict[str, dict[str, str]] = {}
        self.loaded: dict[str, set[str]] = {}  # table -> files COPY INTO has loaded

    def _exec(self, statement: str) -> list[tuple]:
        # DuckDB wants every result consumed before the connection runs anything else.
        return self.con.execute(statement).fetchall()

    # names
    def _table(self, parts: list[str]) -> str:
        if len(parts) != 3:
            raise SqlError(
                f"[REQUIRES_SINGLE_PART_NAMESPACE] emulator needs catalog.schema.table, got {'.'.join(parts)}"
            )
        self._need_catalog(parts[0])
        return ".".join(parts)

    @staticmethod
    def _duck(full: str) -> str:
        return ".".join(duck_ident(p) for p in full.split("."))

    def _need_catalog(self, catalog: str) -> None:
        if catalog not in self.catalogs:
            raise SqlError(
                f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{catalog}' was not found. "
                "Please verify the catalog name and then retry the query or command again. SQLSTATE: 42704"
            )

    def _schema_exists(self, catalog: str, schema: str) -> bool:
        with self.lock:
            return self._schema_row(catalog, schema)

    def _schema_row(self, catalog: str, schema: str) -> bool:
        row = self.con.execute(
            "SELECT count(*) FROM duckdb_schemas() WHERE database_name = ? AND schema_name = ?", [catalog, schema]
        ).fetchall()[0]
        return bool(row[0])

    def _need_schema(self, catalog: str, schema: str) -> None:
        self._need_catalog(catalog)
        if not self._schema_exists(catalog, schema):
            raise SqlError(f"[SCHEMA_NOT_FOUND] The schema `{catalog}`.`{schema}` cannot be found. SQLSTATE: 42704")

    def table_exists(self, full: str) -> bool:
        c, s, t = full.split(".")
        with self.lock:
            if c not in self.catalogs:
                return False
            row = self.con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?",
                [c, s, t],
            ).fetchall()[0]
        return bool(row[0])

    def volume_dir(self, catalog: str, schema: str, volume: str) -> Path:
        return self.volumes_root / catalog / schema / volume

    # execution
    def execute(self, text: str, cancelled: threading.Event | None = None) -> tuple[list[tuple[str, str]], list[tuple]]:
        """(columns as (name, type name), rows) of one Spark SQL statement."""
        tokens = tokenize(text)
        cur = Cursor(tokens)
        with self.lock:
            if cancelled is not None and cancelled.is_set():
                raise SqlError("statement cancelled", "CANCELLED")
            try:
                return self._dispatch(cur, tokens)
            except SqlError:
                raise
            except duckdb.Error as exc:
                raise _spark_error(exc) from exc

    def _dispatch(self, cur: Cursor, tokens: list[Token]):
        if cur.accept("CREATE"):
            replace = cur.accept("OR", "REPLACE")
            if cur.accept("CATALOG"):
                return self._create_catalog(cur)
            if cur.accept("SCHEMA") or cur.accept("DATABASE"):
                return self._create_schema(cur)
            if cur.accept("VOLUME"):
                return self._create_volume(cur)
            if cur.accept("TABLE"):
                return self._create_table(cur, replace)
            raise SqlError(f"[PARSE_SYNTAX_ERROR] emulator: unsupported CREATE in {_preview(tokens)}")
        if cur.accept("COPY", "INTO"):
            return self._copy_into(cur)
        if cur.accept("DROP"):
            if cur.accept("TABLE"):
                return self._drop_table(cur)
            if cur.accept("SCHEMA") or cur.accept("DATABASE"):
                return self._drop_schema(cur)
            if cur.accept("CATALOG"):
                return self._drop_catalog(cur)
            raise SqlError(f"[PARSE_SYNTAX_ERROR] emulator: unsupported DROP in {_preview(tokens)}")
        if cur.accept("DESCRIBE"):
            cur.accept("TABLE")
            full = self._table(cur.name())
            self._need_table(full)
            rows = [(name, _DESCRIBE_TYPES.get(t, t.lower()), None) for name, t in self._columns(full)]
            return [("col_name", "VARCHAR"), ("data_type", "VARCHAR"), ("comment", "VARCHAR")], rows
        if cur.accept("TRUNCATE", "TABLE"):
            full = self._table(cur.name())
            self._need_table(full)
            self._exec(f"DELETE FROM {self._duck(full)}")
            return [], []
        first = cur.peek()
        if first is not None and first.upper in ("SELECT", "WITH", "DELETE", "INSERT", "UPDATE", "VALUES"):
            self._check_names(tokens)
            rel = self.con.execute(translate(tokens))
            return self._result(rel)
        raise SqlError(f"[PARSE_SYNTAX_ERROR] emulator: unsupported statement {_preview(tokens)}")

    def _check_names(self, tokens: list[Token]) -> None:
        """Databricks' errors for three-part names whose catalog, schema or table is missing."""
        cur = Cursor(tokens)
        while not cur.done():
            tok = cur.take()
            if tok.kind not in ("ident", "word") or cur.peek() is None or cur.peek().text != ".":
                continue
            parts = [tok.value.lower()]
            while (
                cur.peek() is not None
                and cur.peek().text == "."
                and cur.peek(1) is not None
                and cur.peek(1).kind in ("ident", "word")
            ):
                cur.take()
                parts.append(cur.take().value.lower())
            if len(parts) == 3:
                self._need_table(".".join(parts))

    def _need_table(self, full: str) -> None:
        c, s, _ = full.split(".")
        self._need_catalog(c)
        if not self.table_exists(full):
            if full in self.placeholders:
                raise SqlError(
                    f"[DELTA_SCHEMA_NOT_SET] Table schema is not set for `{full}`. "
                    "Write data into it or use CREATE TABLE to set the schema. SQLSTATE: KD008"
                )
            raise SqlError(
                f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{full.replace('.', '`.`')}` cannot be found. "
                "Verify the spelling and correctness of the schema and catalog. SQLSTATE: 42P01"
            )

    def _result(self, rel) -> tuple[list[tuple[str, str]], list[tuple]]:
        description = rel.description
        rows = rel.fetchall()
        if description is None:
            return [], []
        return [(d[0], str(d[1])) for d in description], rows

    def _create_catalog(self, cur: Cursor):
        if_not = cur.accept("IF", "NOT", "EXISTS")
        [name] = cur.name()
        if name in self.catalogs:
            if if_not:
                return [], []
            raise SqlError(f"[CATALOG_ALREADY_EXISTS] Catalog '{name}' already exists. SQLSTATE: 42P04")
        self._exec(f"ATTACH {duck_literal(str(self.catalog_dir / (name + '.duckdb')))} AS {duck_ident(name)}")
        self.catalogs.add(name)
        return [], []

    def _create_schema(self, cur: Cursor):
        if_not = cur.accept("IF", "NOT", "EXISTS")
        parts = cur.name()
        if len(parts) != 2:
            raise SqlError("emulator needs catalog.schema in CREATE SCHEMA")
        catalog, schema = parts
        self._need_catalog(catalog)
        if self._schema_exists(catalog, schema):
            if if_not:
                return [], []
            raise SqlError(
                f"[SCHEMA_ALREADY_EXISTS] Cannot create schema `{schema}` because it already exists. SQLSTATE: 42P06"
            )
        self._exec(f"CREATE SCHEMA {duck_ident(catalog)}.{duck_ident(schema)}")
        return [], []

    def _create_volume(self, cur: Cursor):
        if_not = cur.accept("IF", "NOT", "EXISTS")
        parts = cur.name()
        if len(parts) != 3:
            raise SqlError("emulator needs catalog.schema.volume in CREATE VOLUME")
        self._need_schema(parts[0], parts[1])
        path = self.volume_dir(*parts)
        if path.is_dir():
            if if_not:
                return [], []
            raise SqlError(f"[VOLUME_ALREADY_EXISTS] Volume `{'.'.join(parts)}` already exists. SQLSTATE: 42000")
        path.mkdir(parents=True)
        return [], []

    def _create_table(self, cur: Cursor, replace: bool):
        if_not = cur.accept("IF", "NOT", "EXISTS")
        full = self._table(cur.name())
        c, s, _ = full.split(".")
        self._need_schema(c, s)
        properties: dict[str, str] = {}
        columns_sql = None
        while not cur.done():
            if cur.accept("USING"):
                cur.take()
            elif cur.accept("TBLPROPERTIES"):
                properties.update(cur.options())
            elif cur.accept("COMMENT"):
                cur.take()
            elif cur.peek().text == "(" and columns_sql is None:
                start = cur.pos
                cur.skip_parens()
                columns_sql = translate(cur.all[cur.idx[start] : cur.idx[cur.pos - 1] + 1])
            elif cur.accept("AS"):
                break
            else:
                raise SqlError(f"[PARSE_SYNTAX_ERROR] Syntax error at or near '{cur.peek().text}'. SQLSTATE: 42601")
        query = cur.rest()
        exists = self.table_exists(full) or full in self.placeholders
        if exists and if_not:
            return [], []
        if exists and not replace:
            raise SqlError(
                f"[TABLE_OR_VIEW_ALREADY_EXISTS] Cannot create table or view `{full}` because it already "
                "exists. SQLSTATE: 42P07"
            )
        if query:
            self._check_names(query)
            # Replaced in one statement: a failing query leaves the old table, as in Delta.
            self._exec(f"CREATE OR REPLACE TABLE {self._duck(full)} AS {translate(query)}")
            self.placeholders.discard(full)
            self.loaded.pop(full, None)
        else:
            self._forget_table(full)
            if columns_sql is not None:
                self._exec(f"CREATE TABLE {self._duck(full)} {columns_sql}")
            else:
                self.placeholders.add(full)
        self.properties[full] = properties
        if query or columns_sql is not None:
            self._check_column_names(full, self._columns(full))
        return [], []

    def _forget_table(self, full: str) -> None:
        if self.table_exists(full):
            self._exec(f"DROP TABLE {self._duck(full)}")
        self.placeholders.discard(full)
        self.properties.pop(full, None)
        self.loaded.pop(full, None)

    def _columns(self, full: str) -> list[tuple[str, str]]:
        rows = self.con.execute(f"DESCRIBE {self._duck(full)}").fetchall()
        return [(r[0], r[1]) for r in rows]

    def _check_column_names(self, full: str, columns) -> None:
        if self.properties.get(full, {}).get("delta.columnmapping.mode", "none").lower() in ("name", "id"):
            return
        bad = [name for name, _ in columns if _INVALID_DELTA_NAME.search(name)]
        if bad:
            self._forget_table(full)
            raise SqlError(
                "[DELTA_INVALID_CHARACTERS_IN_COLUMN_NAMES] Found invalid character(s) among ' ,;{}()\\n\\t=' in the "
                f"column names of your schema: {', '.join(bad)}. Please enable Column Mapping to keep using these "
                "characters. SQLSTATE: 42K05"
            )

    def _drop_table(self, cur: Cursor):
        if_exists = cur.accept("IF", "EXISTS")
        full = self._table(cur.name())
        if not (self.table_exists(full) or full in self.placeholders):
            if if_exists:
                return [], []
            self._need_table(full)
        self._forget_table(full)
        return [], []

    def _drop_schema(self, cur: Cursor):
        if_exists = cur.accept("IF", "EXISTS")
        catalog, schema = cur.name()
        cascade = cur.accept("CASCADE")
        if catalog not in self.catalogs or not self._schema_exists(catalog, schema):
            if if_exists:
                return [], []
            self._need_schema(catalog, schema)
        for full in [
            t for t in list(self.properties) + list(self.placeholders) if t.startswith(f"{catalog}.{schema}.")
        ]:
            self._forget_table(full)
        self._exec(f"DROP SCHEMA {duck_ident(catalog)}.{duck_ident(schema)}{' CASCADE' if cascade else ''}")
        shutil.rmtree(self.volumes_root / catalog / schema, ignore_errors=True)
        return [], []

    def _drop_catalog(self, cur: Cursor):
        if_exists = cur.accept("IF", "EXISTS")
        [catalog] = cur.name()
        cur.accept("CASCADE")
        if catalog not in self.catalogs:
            if if_exists:
                return [], []
            self._need_catalog(catalog)
        self._exec(f"DETACH {duck_ident(catalog)}")
        self.catalogs.discard(catalog)
        for full in [t for t in list(self.properties) + list(self.placeholders) if t.startswith(f"{catalog}.")]:
            self.placeholders.discard(full)
            self.properties.pop(full, None)
            self.loaded.pop(full, None)
        (self.catalog_dir / f"{catalog}.duckdb").unlink(missing_ok=True)
        shutil.rmtree(self.volumes_root / catalog, ignore_errors=True)
        return [], []

    def local_path(self, path: str) -> Path:
        """The file behind a ``/Volumes/<catalog>/<schema>/<volume>/...`` path."""
        path = path.removeprefix("dbfs:")
        parts = path.strip("/").split("/")
        if len(parts) < 4 or parts[0] != "Volumes" or any(p in ("", ".", "..") for p in parts):
            raise SqlError(
                f"[INVALID_PARAMETER_VALUE] emulator only reads /Volumes/<catalog>/<schema>/<volume>/... "
                f"paths, got {path}"
            )
        catalog, schema, volume = parts[1:4]
        base = self.volume_dir(catalog, schema, volume)
        if not base.is_dir():
            raise SqlError(
                f"[UC_VOLUME_NOT_FOUND] Volume `{catalog}`.`{schema}`.`{volume}` does not exist. SQLSTATE: 42704"
            )
        return base.joinpath(*parts[4:])

    def _copy_into(self, cur: Cursor):
        full = self._table(cur.name())
        cur.expect("FROM")
        source = cur.take()
        if source.kind != "str":
            raise SqlError("emulator: COPY INTO supports FROM '<path>' only")
        cur.expect("FILEFORMAT")
        cur.expect("=")
        file_format = cur.take().text.upper()
        copy_options = {}
        while not cur.done():
            if cur.accept("FORMAT_OPTIONS"):
                cur.options()  # Parquet's schema comes from the file; its format options change nothing here
            elif cur.accept("COPY_OPTIONS"):
                copy_options = cur.options()
            else:
                raise SqlError(f"emulator: unsupported COPY INTO clause near '{cur.peek().text}'")
        if file_format != "PARQUET":
            raise SqlError(f"emulator: COPY INTO supports FILEFORMAT = PARQUET only, got {file_format}")
        if not (self.table_exists(full) or full in self.placeholders):
            self._need_table(full)
        local = self.local_path(source.value)
        if local.is_file():
            files = [(source.value, local)]
        elif local.is_dir():
            files = [
                (source.value.rstrip("/") + "/" + str(p.relative_to(local)), p)
                for p in sorted(local.rglob("*"))
                if p.is_file() and not p.name.startswith((".", "_"))
            ]
        else:
            raise SqlError(f"[PATH_NOT_FOUND] Path does not exist: {source.value}. SQLSTATE: 42K03")
        force = copy_options.get("force", "false").lower() == "true"
        merge = copy_options.get("mergeschema", "false").lower() == "true"
        loaded = self.loaded.setdefault(full, set())
        inserted = 0
        for remote, path in files:
            if remote in loaded and not force:
                continue  # loaded before: COPY INTO is idempotent per file
            inserted += self._load_file(full, path, merge)
            loaded.add(remote)
        return (
            [("num_affected_rows", "BIGINT"), ("num_inserted_rows", "BIGINT"), ("num_skipped_corrupt_files", "BIGINT")],
            [(inserted, inserted, 0)],
        )

    def _load_file(self, full: str, path: Path, merge: bool) -> int:
        source = f"read_parquet({duck_literal(str(path))})"
        file_columns = [(r[0], r[1]) for r in self.con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()]
        if full in self.placeholders:
            if not merge:
                raise SqlError(
                    f"[DELTA_SCHEMA_NOT_SET] Table schema is not set for `{full}`: use "
                    "COPY_OPTIONS ('mergeSchema' = 'true') to set it from the files. SQLSTATE: KD008"
                )
            self._check_column_names(full, file_columns)
            self._exec(f"CREATE TABLE {self._duck(full)} AS SELECT * FROM {source} LIMIT 0")
            self.placeholders.discard(full)
        table_columns = {name.lower() for name, _ in self._columns(full)}
        new = [(n, t) for n, t in file_columns if n.lower() not in table_columns]
        if new:
            if not merge:
                raise SqlError(
                    f"[DELTA_SCHEMA_MISMATCH] A schema mismatch detected when writing to `{full}`: new "
                    f"columns {[n for n, _ in new]}. Use COPY_OPTIONS ('mergeSchema' = 'true'). SQLSTATE: KD005"
                )
            self._check_column_names(full, new)
            for name, type_name in new:
                self._exec(f"ALTER TABLE {self._duck(full)} ADD COLUMN {duck_ident(name)} {type_name}")
        before = self.con.execute(f"SELECT count(*) FROM {self._duck(full)}").fetchall()[0][0]
        self._exec(f"INSERT INTO {self._duck(full)} BY NAME SELECT * FROM {source}")
        after = self.con.execute(f"SELECT count(*) FROM {self._duck(full)}").fetchall()[0][0]
        return after - before

    def read_arrow(self, full: str) -> pa.Table:
        with self.lock:
            return self.con.sql(f"SELECT * FROM {self._duck(full.lower())}").to_arrow_table()


def _preview(tokens: list[Token]) -> str:
    return "".join(t.text for t in tokens)[:80]


def _spark_error(exc: duckdb.Error) -> SqlError:
    """A DuckDB error in the words Databricks uses for it."""
    text = str(exc)
    m = re.search(r'Catalog (?:with name )?"?([^"!\s]+)"? does not exist', text)
    if m:
        return SqlError(f"[NO_SUCH_CATALOG_EXCEPTION] Catalog '{m.group(1)}' was not found. SQLSTATE: 42704")
    m = re.search(r'Schema with name "?([^"!\s]+)"? does not exist', text)
    if m:
        return SqlError(f"[SCHEMA_NOT_FOUND] The schema `{m.group(1)}` cannot be found. SQLSTATE: 42704")
    m = re.search(r'Table with name "?([^"!\s]+)"? does not exist', text)
    if m:
        return SqlError(f"[TABLE_OR_VIEW_NOT_FOUND] The table or view `{m.group(1)}` cannot be found. SQLSTATE: 42P01")
    m = re.search(r'Referenced column "?([^"]+)"? not found', text)
    if m:
        return SqlError(
            f"[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name "
            f"`{m.group(1)}` cannot be resolved. SQLSTATE: 42703"
        )
    if isinstance(exc, duckdb.InvalidInputException) and "Invalid Input Error: " in text:
        # error() raised by raise_error().
        return SqlError(f"[USER_RAISED_EXCEPTION] {text.split('Invalid Input Error: ', 1)[1]} SQLSTATE: P0001")
    if isinstance(exc, duckdb.ConversionException):
        return SqlError(f"[CAST_INVALID_INPUT] {text} SQLSTATE: 22018")
    return SqlError(f"[INTERNAL_ERROR] {text}")


# --- statements -------------------------------------------------------------------------

_SPARK_TYPE_NAMES = {
    "BIGINT": "LONG",
    "INTEGER": "INT",
    "VARCHAR": "STRING",
    "DOUBLE": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "TIMESTAMP": "TIMESTAMP_NTZ",
    "FLOAT": "FLOAT",
    "SMALLINT": "SHORT",
    "TINYINT": "BYTE",
    "BLOB": "BINARY",
}


# DuckDB types by the names DESCRIBE TABLE gives them in Databricks.
_DESCRIBE_TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "int",
    "SMALLINT": "smallint",
    "TINYINT": "tinyint",
    "VARCHAR": "string",
    "DOUBLE": "double",
    "FLOAT": "float",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP WITH TIME ZONE": "timestamp",
    "TIMESTAMP": "timestamp_ntz",
    "BLOB": "binary",
}


def _json_value(value):
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
            return value.isoformat(timespec="milliseconds") + "Z"
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    if isinstance(value, (decimal.Decimal, int, float)):
        return str(value)
    return str(value)


@dataclass
class Statement:
    id: str
    text: str
    state: str = "PENDING"
    error: dict | None = None
    columns: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def body(self) -> dict:
        body = {"statement_id": self.id, "status": {"state": self.state}}
        if self.error:
            body["status"]["error"] = self.error
        if self.state == "SUCCEEDED":
            body["manifest"] = {
                "format": "JSON_ARRAY",
                "schema": {
                    "column_count": len(self.columns),
                    "columns": [
                        {"name": name, "position": i, "type_name": _SPARK_TYPE_NAMES.get(t, "STRING"), "type_text": t}
                        for i, (name, t) in enumerate(self.columns)
                    ],
                },
                "total_row_count": len(self.rows),
                "truncated": False,
            }
            body["result"] = {"chunk_index": 0, "row_offset": 0, "row_count": len(self.rows)}
            if self.rows:
                body["result"]["data_array"] = [[_json_value(v) for v in row] for row in self.rows]
        return body


@dataclass
class StatementRule:
    pattern: str
    times: int
    error_code: str | None = None
    message: str | None = None
    delay: float = 0.0


def _error(status: int, code: str, message: str) -> Response:
    response = jsonify({"error_code": code, "message": message})
    response.status_code = status
    return response


class DatabricksEmulator(Emulator):
    def __init__(
        self,
        root: Path,
        *,
        token: str = "dapi-emulator-token",
        client_id: str = "emulator-client",
        client_secret: str = "emulator-secret",
        warehouse_id: str = "emulatorwh01",
        oauth_ttl: float = 3600.0,
        pending_seconds: float = 0.05,
        max_wait: float = 0.0,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.token = token
        self.client_id = client_id
        self.client_secret = client_secret
        self.warehouse_id = warehouse_id
        self.oauth_ttl = oauth_ttl
        self.pending_seconds = pending_seconds
        self.max_wait = max_wait
        self.warehouse = Warehouse(self.root)
        self.faults = FaultQueue()
        self.statements: dict[str, Statement] = {}
        self.statement_log: list[str] = []  # every statement text, in submission order
        self.request_log: list[tuple[float, str, str, int]] = []  # (time, method, path, status)
        self.oauth_tokens: dict[str, float] = {}  # token -> expiry (monotonic)
        self.token_requests = 0
        self.cancelled: list[str] = []
        self._rules: list[StatementRule] = []
        self._lock = threading.Lock()
        self.app = self._make_app()
        self.server = ServerThread(self.app)

    @property
    def host(self) -> str:
        return self.url

    # faults and inspection, used by tests (inject: see Emulator)
    def fail_statements(self, pattern: str, *, error_code: str = "BAD_REQUEST", message: str, times: int = 1) -> None:
        """End the next ``times`` statements matching the regex FAILED with this error."""
        with self._lock:
            self._rules.append(StatementRule(pattern, times, error_code=error_code, message=message))

    def delay_statements(self, pattern: str, seconds: float, *, times: int = 1) -> None:
        """Keep the next ``times`` statements matching the regex RUNNING for ``seconds``."""
        with self._lock:
            self._rules.append(StatementRule(pattern, times, delay=seconds))

    def clear_faults(self) -> None:
        super().clear_faults()
        with self._lock:
            self._rules.clear()

    def sql(self, statement: str) -> list[tuple]:
        """Run Spark SQL directly (no HTTP), e.g. to prepare or inspect state."""
        return self.warehouse.execute(statement)[1]

    def read_table(self, full_name: str) -> pa.Table:
        return self.warehouse.read_arrow(full_name)

    def table_exists(self, full_name: str) -> bool:
        return self.warehouse.table_exists(full_name.lower())

    def has_catalog(self, name: str) -> bool:
        return name in self.warehouse.catalogs

    def has_schema(self, catalog: str, schema: str) -> bool:
        return catalog in self.warehouse.catalogs and self.warehouse._schema_exists(catalog, schema)

    def volume_files(self, catalog: str, schema: str, volume: str) -> list[str]:
        base = self.warehouse.volume_dir(catalog, schema, volume)
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())

    def has_volume(self, catalog: str, schema: str, volume: str) -> bool:
        return self.warehouse.volume_dir(catalog, schema, volume).is_dir()

    def loaded_files(self, full_name: str) -> set[str]:
        return set(self.warehouse.loaded.get(full_name, set()))

    # statements
    def _rule_for(self, text: str) -> list[StatementRule]:
        hits = []
        with self._lock:
            for rule in list(self._rules):
                if re.search(rule.pattern, text, re.S):
                    hits.append(rule)
                    rule.times -= 1
                    if rule.times <= 0:
                        self._rules.remove(rule)
        return hits

    def _run(self, st: Statement) -> None:
        try:
            if st.cancelled.wait(self.pending_seconds):
                return
            st.state = "RUNNING"
            rules = self._rule_for(st.text)
            for rule in rules:
                if rule.delay and st.cancelled.wait(rule.delay):
                    return
            if st.cancelled.is_set():
                return
            failing = next((r for r in rules if r.message), None)
            if failing:
                st.error = {"error_code": failing.error_code, "message": failing.message}
                st.state = "FAILED"
                return
            try:
                st.columns, st.rows = self.warehouse.execute(st.text, st.cancelled)
                st.state = "SUCCEEDED"
            except SqlError as exc:
                if exc.error_code == "CANCELLED":
                    return
                st.error = {"error_code": exc.error_code, "message": exc.message}
                st.state = "FAILED"
        finally:
            st.done.set()

    def _submit(self) -> Response:
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            return _error(400, "MALFORMED_REQUEST", "Request body must be a JSON object.")
        if not body.get("warehouse_id"):
            return _error(400, "INVALID_PARAMETER_VALUE", "warehouse_id is required.")
        if body["warehouse_id"] != self.warehouse_id:
            return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Warehouse {body['warehouse_id']} does not exist.")
        if not isinstance(body.get("statement"), str) or not body["statement"].strip():
            return _error(400, "INVALID_PARAMETER_VALUE", "statement is required.")
        wait = body.get("wait_timeout", "10s")
        m = re.fullmatch(r"(\d+)s", str(wait))
        if not m or not (int(m.group(1)) == 0 or 5 <= int(m.group(1)) <= 50):
            return _error(400, "INVALID_PARAMETER_VALUE", "wait_timeout must be 0s or between 5s and 50s.")
        if body.get("format", "JSON_ARRAY") != "JSON_ARRAY" or body.get("disposition", "INLINE") != "INLINE":
            return _error(400, "INVALID_PARAMETER_VALUE", "emulator supports format JSON_ARRAY, disposition INLINE.")
        st = Statement(id=str(uuid.uuid4()), text=body["statement"])
        with self._lock:
            self.statements[st.id] = st
            self.statement_log.append(st.text)
        threading.Thread(target=self._run, args=(st,), daemon=True).start()
        wait_for = min(int(m.group(1)), self.max_wait)
        if wait_for > 0 and not st.done.wait(wait_for) and body.get("on_wait_timeout") == "CANCEL":
            st.cancelled.set()
            st.state = "CANCELED"
        return jsonify(st.body())

    def _statement(self, statement_id: str) -> Statement | None:
        with self._lock:
            return self.statements.get(statement_id)

    # HTTP
    def _authorized(self) -> Response | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return _error(401, "UNAUTHENTICATED", "Credential was not sent or was of an unsupported type for this API.")
        if token == self.token:
            return None
        expiry = self.oauth_tokens.get(token)
        if expiry is not None and time.monotonic() < expiry:
            return None
        return _error(403, "PERMISSION_DENIED", "Invalid access token.")

    def _make_app(self) -> Flask:
        app = Flask(f"databricks-emulator-{id(self)}")
        emulator = self

        @app.before_request
        def _faults_and_auth():
            canned = emulator.faults.take(request)
            if canned is not None:
                return canned
            if request.path == "/oidc/v1/token":
                return None
            return emulator._authorized()

        @app.after_request
        def _log(response):
            emulator.request_log.append((time.monotonic(), request.method, request.path, response.status_code))
            return response

        @app.post("/oidc/v1/token")
        def oauth_token():
            emulator.token_requests += 1
            auth = request.authorization
            client_id = auth.username if auth else request.form.get("client_id")
            secret = auth.password if auth else request.form.get("client_secret")
            if client_id != emulator.client_id or secret != emulator.client_secret:
                response = jsonify({"error": "invalid_client", "error_description": "Client authentication failed"})
                response.status_code = 401
                return response
            if request.form.get("grant_type") != "client_credentials":
                response = jsonify(
                    {"error": "unsupported_grant_type", "error_description": "grant_type must be client_credentials"}
                )
                response.status_code = 400
                return response
            if "all-apis" not in (request.form.get("scope") or "").split():
                response = jsonify({"error": "invalid_scope", "error_description": "scope must include all-apis"})
                response.status_code = 400
                return response
            token = "dose" + secrets.token_hex(16)
            emulator.oauth_tokens[token] = time.monotonic() + emulator.oauth_ttl
            return jsonify(
                {
                    "access_token": token,
                    "token_type": "Bearer",
                    "expires_in": int(emulator.oauth_ttl),
                    "scope": "all-apis",
                }
            )

        @app.get("/api/2.0/sql/warehouses/<warehouse_id>")
        def warehouse(warehouse_id):
            if warehouse_id != emulator.warehouse_id:
                return _error(404, "RESOURCE_DOES_NOT_EXIST", f"Warehouse {warehouse_id} does not exist.")
            return jsonify({"id": warehouse_id, "name": "emulator", "state": "RUNNING", "cluster_size": "2X-Small"})

        @app.post("/api/2.0/sql/statements")
        @app.post("/api/2.0/sql/statements/")
        def submit():
            return emulator._submit()

        @app.get("/api/2.0/sql/statements/<statement_id>")
        def get_statement(statement_id):
            st = emulator._statement(statement_id)
            if st is None:
                return _error(404, "NOT_FOUND", f"Statement {statement_id} not found.")
            return jsonify(st.body())

        @app.post("/api/2.0/sql/statements/<statement_id>/cancel")
        def cancel(statement_id):
            st = emulator._statement(statement_id)
            if st is None:
                return _error(404, "NOT_FOUND", f"Statement {statement_id} not found.")
            emulator.cancelled.append(statement_id)
            if st.state in ("PENDING", "RUNNING"):
                st.cancelled.set()
                st.state = "CANCELED"
            return jsonify({})

        @app.route("/api/2.0/fs/files/<path:path>", methods=["PUT", "GET", "HEAD", "DELETE"])
        def files(path):
            return emulator._files(path)

        @app.route("/api/2.0/fs/directories/<path:path>", methods=["PUT", "GET", "HEAD", "DELETE"])
        def directories(path):
            return emulator._directories(path)

        @app.errorhandler(404)
        def _not_found(_exc):
            return _error(404, "ENDPOINT_NOT_FOUND", f"No API found for '{request.method} {request.path}'")

        return app

    # Files API
    def _volume_file(self, path: str) -> tuple[Path | None, Response | None]:
        try:
            local = self.warehouse.local_path("/" + path)
        except SqlError as exc:
            status = 404 if "VOLUME_NOT_FOUND" in exc.message else 400
            return None, _error(status, "NOT_FOUND" if status == 404 else "INVALID_PARAMETER_VALUE", exc.message)
        return local, None

    def _files(self, path: str) -> Response:
        local, error = self._volume_file(path)
        if error is not None:
            return error
        remote = "/" + path
        if request.method == "PUT":
            overwrite = request.args.get("overwrite", "false").lower() == "true"
            if local.is_dir():
                return _error(409, "ALREADY_EXISTS", f"A directory exists at {remote}.")
            if local.exists() and not overwrite:
                return _error(409, "ALREADY_EXISTS", f"The file being created already exists: {remote}.")
            local.parent.mkdir(parents=True, exist_ok=True)
            partial = local.with_name(f".{local.name}.{uuid.uuid4().hex}.part")
            with open(partial, "wb") as out:
                while True:
                    chunk = request.stream.read(1024 * 1024)
                    if not chunk:
                        break
                    out.write(chunk)
            partial.replace(local)
            return Response(status=204)
        if not local.is_file():
            return _error(404, "NOT_FOUND", f"The file does not exist: {remote}.")
        if request.method == "DELETE":
            local.unlink()
            return Response(status=204)
        headers = {
            "Content-Length": str(local.stat().st_size),
            "Content-Type": "application/octet-stream",
            "Last-Modified": _http_date(local.stat().st_mtime),
        }
        if request.method == "HEAD":
            return Response(status=200, headers=headers)

        def stream():
            with open(local, "rb") as f:
                while chunk := f.read(1024 * 1024):
                    yield chunk

        return Response(stream(), status=200, headers=headers)

    def _directories(self, path: str) -> Response:
        local, error = self._volume_file(path.rstrip("/"))
        if error is not None:
            return error
        remote = "/" + path.rstrip("/")
        if request.method == "PUT":
            if local.is_file():
                return _error(409, "ALREADY_EXISTS", f"A file exists at {remote}.")
            local.mkdir(parents=True, exist_ok=True)
            return Response(status=204)
        if not local.is_dir():
            return _error(404, "NOT_FOUND", f"The directory does not exist: {remote}.")
        if request.method == "HEAD":
            return Response(status=200)
        if request.method == "DELETE":
            if any(local.iterdir()):
                return _error(409, "DIRECTORY_NOT_EMPTY", f"The directory is not empty: {remote}.")
            local.rmdir()
            return Response(status=204)
        contents = []
        for child in sorted(local.iterdir()):
            if child.name.startswith("."):
                continue
            entry = {"path": f"{remote}/{child.name}", "name": child.name, "is_directory": child.is_dir()}
            if child.is_file():
                entry["file_size"] = child.stat().st_size
                entry["last_modified"] = int(child.stat().st_mtime * 1000)
            contents.append(entry)
        return jsonify({"contents": contents})


def _http_date(ts: float) -> str:
    from email.utils import formatdate

    return formatdate(ts, usegmt=True)
