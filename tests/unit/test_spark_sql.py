"""Identifiers, literals and the silver SELECT of the Databricks target."""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from service.lakehouse import spark_sql as sql
from service.lakehouse.base import PermanentTargetError, TableRef
from service.transform import sql as rules
from service.transform.plan import SilverColumn, SilverPlan
from tests.emulators.databricks import Warehouse, spark_unescape, tokenize

BRONZE = TableRef("tenant_acme", "bronze", "sales_1a2b3c4d")
SILVER = TableRef("tenant_acme", "silver", "sales_1a2b3c4d")


@pytest.mark.parametrize("name", ["a", "tenant_acme", "_x", "revenue_q1_1a2b3c4d", "a" * 255, "x9_"])
def test_valid_identifiers_pass_and_are_backtick_quoted(name):
    assert sql.identifier(name) == name
    assert sql.quote_identifier(name) == f"`{name}`"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "A",
        "Tenant",
        "1abc",
        "a-b",
        "a b",
        "a`b",
        "a.b",
        "a;drop",
        "é",
        "a\x00",
        "a" * 256,
        "a'",
        'a"',
        None,
        3,
    ],
)
def test_invalid_identifiers_are_refused_as_permanent_errors(name):
    with pytest.raises(sql.InvalidIdentifier) as info:
        sql.identifier(name, "table name")
    assert isinstance(info.value, PermanentTargetError)
    assert "table name" in str(info.value)


def test_table_name_validates_every_part():
    assert sql.table_name(BRONZE) == "`tenant_acme`.`bronze`.`sales_1a2b3c4d`"
    for ref in (TableRef("Tenant", "bronze", "t"), TableRef("c", "bronze`", "t"), TableRef("c", "s", "t; DROP")):
        with pytest.raises(sql.InvalidIdentifier):
            sql.table_name(ref)


@pytest.mark.parametrize("name", ["Customer ID", "Amount (€)", "a`b", "``", "x.y", "tab\there", "sémantique"])
def test_source_columns_are_quoted_so_they_read_back_unchanged(name):
    quoted = sql.quote_column(name)
    [token] = tokenize(quoted)
    assert token.kind == "ident" and token.value == name


def test_empty_source_column_is_refused():
    with pytest.raises(sql.InvalidIdentifier):
        sql.quote_column("")


TRICKY = [
    "",
    "plain",
    "it's",
    "back\\slash",
    "\\'",
    "'; DROP TABLE x; --",
    "line\nbreak",
    "tab\tand\rcr",
    "nul\x00",
    "%_\\%",
    "\\u0041",
    "émoji 🎉",
    "''",
    "\\",
    "a'b'c\\",
]


@pytest.mark.parametrize("value", TRICKY)
def test_string_literals_escape_quotes_and_backslashes(value):
    literal = sql.string_literal(value)
    assert literal.startswith("'") and literal.endswith("'")
    [token] = tokenize(literal)  # one literal: nothing can break out of it
    assert token.kind == "str"
    assert spark_unescape(token.text[1:-1]) == value


def test_string_literal_refuses_non_strings():
    with pytest.raises(TypeError):
        sql.string_literal(3)


def test_timestamp_literal_is_utc_with_microseconds():
    value = dt.datetime(2024, 3, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert sql.timestamp_literal(value) == "CAST('2024-03-01T00:03:04.000005Z' AS TIMESTAMP)"
    with pytest.raises(ValueError):
        sql.timestamp_literal(dt.datetime(2024, 1, 1))


def _plan(*columns, tokens=("", "NULL")):
    return SilverPlan(columns=[SilverColumn(*c) for c in columns], null_tokens=list(tokens))


def test_silver_statement_shape():
    plan = _plan(
        ("Customer ID", "customer_id", "integer", "string"),
        ("Note", "note", "string", "string"),
        ("score", "score", "source", "double"),
        tokens=["", "N'A\\"],
    )
    text = sql.create_silver(BRONZE, SILVER, plan)
    assert text.startswith("CREATE OR REPLACE TABLE `tenant_acme`.`silver`.`sales_1a2b3c4d` AS SELECT DISTINCT ")
    assert text.endswith(" FROM `tenant_acme`.`bronze`.`sales_1a2b3c4d`")
    assert "AS `customer_id`" in text and "AS `note`" in text and "`score` AS `score`" in text
    assert text.index("AS `score`") < text.index("`_dataset_id`") < text.index("`_ingested_at`")
    assert "`_source_file`" not in text
    assert "CAST(trim(`Customer ID`) AS BIGINT)" in text
    assert "'N\\'A\\\\'" in text  # the token, escaped
    assert "raise_error(" in text


@pytest.mark.parametrize(
    "plan, message",
    [
        (SilverPlan(columns=[]), "no columns"),
        (_plan(("a", "A", "string", "string")), "invalid silver column name"),
        (_plan(("a", "a b", "string", "string")), "invalid silver column name"),
        (_plan(("a", "x", "string", "string"), ("b", "x", "string", "string")), "two columns alike"),
        (_plan(("a", "_dataset_id", "string", "string")), "metadata column"),
        (_plan(("a", "a", "uuid", "string")), "unknown silver type"),
    ],
)
def test_bad_plans_are_refused(plan, message):
    with pytest.raises(PermanentTargetError, match=message):
        sql.silver_select(BRONZE, plan)


def test_bronze_names_follow_the_local_target(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from deltalake import DeltaTable

    from service.lakehouse.base import TableRef
    from service.lakehouse.delta import DeltaTarget
    from tests.support.contexts import sync_context

    names = ["a", "A", "_dataset_id", "_DATASET_ID", "b"]
    expected = ["a", "A_2", "_dataset_id_2", "_DATASET_ID_3", "b"]
    assert sql.bronze_column_names(names) == expected
    source = tmp_path / "source.parquet"
    pq.write_table(pa.table({f"c{i}": ["x"] for i in range(len(names))}).rename_columns(names), source)
    ref = TableRef("tenant_t", "bronze", "names")
    result = DeltaTarget(tmp_path / "lake").write_bronze(sync_context(source, bronze=ref, source_file="source.parquet"))
    written = DeltaTable(result.location).schema().to_arrow().names
    assert written[: len(names)] == expected


# --- the rules, executed: Spark SQL on the emulator's DuckDB vs the local DuckDB rules ---

VALUES = {
    "integer": ["1", " 12 ", "-3", "0", "9223372036854775807", "NULL", "", None, "007x"],
    "double": ["1.5", " -2 ", "1e3", "0.1", "1.7976931348623157e308", "N/A", None, "1e999"],
    "boolean": ["true", "FALSE", " True ", "NULL", None, "yes"],
    "date": ["2024-02-29", " 2023-12-31 ", "NULL", None, "2024-02-30"],
    "timestamp": [
        "2024-01-05T10:00:00Z",
        "2024-02-01 08:30:00",
        "2024-03-01T00:00:00+02:00",
        "2024-03-01 00:00:00.123456",
        "NULL",
        None,
        "2024-13-01 00:00:00",
    ],
    "string": [" hello ", "NULL", "N/A", "", "it's", None, "back\\slash"],
}
TOKENS = ["", "NULL", "N/A"]


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory):
    wh = Warehouse(tmp_path_factory.mktemp("warehouse"))
    wh.execute("CREATE CATALOG IF NOT EXISTS tenant_acme")
    wh.execute("CREATE SCHEMA IF NOT EXISTS tenant_acme.bronze")
    return wh


def _local(type_name: str, values: list) -> list:
    """The local rules (service.transform.sql) applied to each value on its own."""
    con = rules.connect()
    out = []
    for v in values:
        try:
            if type_name == "string":
                expr = rules.silver_string_expr("trim(v)", TOKENS)
            else:
                expr = rules.silver_typed_expr("v", type_name, TOKENS, True, "c")
            out.append(con.execute(f"SELECT {expr} FROM (SELECT ?::VARCHAR AS v)", [v]).fetchone()[0])
        except duckdb.Error:
            out.append("error")
    return out


def _spark(warehouse: Warehouse, type_name: str, values: list) -> list:
    column = SilverColumn("Raw Value", "v", type_name, "string")
    out = []
    for v in values:
        warehouse.con.execute(
            'CREATE OR REPLACE TABLE tenant_acme.bronze.t AS SELECT ?::VARCHAR AS "Raw Value", '
            "'d' AS _dataset_id, TIMESTAMPTZ '2024-01-01 00:00:00+00' AS _ingested_at",
            [v],
        ).fetchall()
        select = sql.silver_select(TableRef("tenant_acme", "bronze", "t"), SilverPlan([column], TOKENS))
        try:
            rows = warehouse.execute(select)[1]
            out.append(rows[0][0])
        except Exception as exc:
            assert "USER_RAISED_EXCEPTION" in str(exc) and "Raw Value" in str(exc)
            out.append("error")
    return out


@pytest.mark.parametrize("type_name", list(VALUES))
def test_spark_silver_rules_match_the_local_rules(warehouse, type_name):
    values = VALUES[type_name]
    assert _spark(warehouse, type_name, values) == _local(type_name, values)
