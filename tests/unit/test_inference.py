import datetime as dt

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from service.config import DEFAULT_NULL_TOKENS
from service.ingest.model import IngestSettings
from service.transform import infer_plan
from service.transform.inference import SAMPLE_ROWS

TOKENS = list(DEFAULT_NULL_TOKENS)


def write_strings(tmp_path, columns: dict[str, list], name="data.parquet"):
    path = tmp_path / name
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    pq.write_table(table, path)
    return path


def infer_one(tmp_path, values, tokens=TOKENS):
    path = write_strings(tmp_path, {"c": values})
    return infer_plan(path, null_tokens=tokens).columns[0].type


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["1", "-2", "0", "123456"], "integer"),
        (["9223372036854775807", "-9223372036854775808"], "integer"),
        (["-0", "5"], "integer"),
        # One more than int64 max still fits the double grammar.
        (["9223372036854775808"], "double"),
        (["02134", "12345"], "string"),
        (["007"], "string"),
        (["+5", "6"], "string"),
        (["1_000"], "string"),
        (["0x10"], "string"),
        (["1", "2.5"], "double"),
        (["-0.5", "3", "1e5", "2.5E-3", "7e+2"], "double"),
        (["01.5"], "string"),
        (["1."], "string"),
        ([".5"], "string"),
        (["nan", "1.0"], "string"),
        (["inf"], "string"),
        (["1e999"], "string"),
        (["true", "False", "TRUE", "false"], "boolean"),
        (["true", "1"], "string"),
        (["yes", "no"], "string"),
        (["t", "f"], "string"),
        (["2024-01-31", "2024-02-29", "0001-01-01"], "date"),
        (["2024-02-30"], "string"),
        (["2023-02-29"], "string"),
        (["2024-1-5"], "string"),
        (["0000-01-01"], "string"),
        (
            [
                "2024-01-01T10:00:00Z",
                "2024-01-01 10:00:00.123456+05:30",
                "2024-01-01 10:00:00",
                "2024-06-30T23:59:59-08:00",
            ],
            "timestamp",
        ),
        (["2024-01-01 25:00:00"], "string"),
        (["2024-01-01 24:00:00"], "string"),
        (["2024-01-01 10:00:60"], "string"),
        (["2024-01-01 10:00:00.1234567"], "string"),
        (["2024-01-01 10:00"], "string"),
        (["2024-02-30 10:00:00"], "string"),
        (["2024-01-01", "2024-01-01 10:00:00"], "string"),
        (["hello", "1"], "string"),
        ([None, None], "string"),
        (["", "NA", "  null ", None], "string"),
    ],
)
def test_grammars(tmp_path, values, expected):
    assert infer_one(tmp_path, values) == expected


def test_values_are_trimmed_and_null_tokens_apply_after_trim(tmp_path):
    assert infer_one(tmp_path, [" 1 ", "  NULL ", "", "2", "N/A", None, "   "]) == "integer"
    assert infer_one(tmp_path, ["  true", "false  ", " None "]) == "boolean"


def test_only_spaces_are_trimmed(tmp_path):
    # Tabs, line breaks and no-break spaces are data, as for Spark's trim().
    assert infer_one(tmp_path, ["\t1", "2"]) == "string"
    assert infer_one(tmp_path, ["1\u00a0", "2"]) == "string"
    assert infer_one(tmp_path, ["\u00a0NULL", "2"]) == "string"
    assert infer_one(tmp_path, ["2024-01-01\n", "2024-01-02"]) == "string"


def test_null_tokens_are_exact_and_case_sensitive(tmp_path):
    assert infer_one(tmp_path, ["Null", "1"]) == "string"
    assert infer_one(tmp_path, ["-", "1"]) == "string"
    assert infer_one(tmp_path, ["-", "1"], tokens=["-"]) == "integer"
    # Without "" as a token an empty field is a (non-numeric) string value.
    assert infer_one(tmp_path, ["", "1"], tokens=["NULL"]) == "string"


def test_a_token_that_fits_a_grammar_is_still_a_null(tmp_path):
    assert infer_one(tmp_path, ["true", "0", "false"], tokens=["0"]) == "boolean"
    assert infer_one(tmp_path, ["2024-01-01", "-1"], tokens=["-1"]) == "date"


def test_every_row_is_checked_not_a_sample(tmp_path):
    n = SAMPLE_ROWS * 3
    late_text = [str(i) for i in range(n)] + ["x"]
    late_decimal = [str(i) for i in range(n)] + ["1.5"]
    late_bad_date = ["2024-01-01"] * n + ["2024-02-30"]
    late_value = [None] * n + ["7"]
    path = write_strings(tmp_path, {"a": late_text, "b": late_decimal, "c": late_bad_date, "d": late_value})
    plan = infer_plan(path, null_tokens=TOKENS)
    assert [c.type for c in plan.columns] == ["string", "double", "string", "integer"]


@pytest.mark.parametrize("rows", [SAMPLE_ROWS, SAMPLE_ROWS + 1])
def test_the_last_row_counts_on_either_side_of_the_sample_size(tmp_path, rows):
    # Up to SAMPLE_ROWS rows the sample is the whole file; one more row takes the full pass.
    values = [str(i) for i in range(rows - 1)]
    path = write_strings(tmp_path, {"a": values + ["x"], "b": values + ["1.5"], "c": values + [None]})
    plan = infer_plan(path, null_tokens=TOKENS)
    assert [c.type for c in plan.columns] == ["string", "double", "integer"]


def test_a_sampled_plan_types_from_the_sample_and_says_so(tmp_path):
    n = SAMPLE_ROWS * 2
    path = write_strings(
        tmp_path,
        {
            "late_text": [str(i) for i in range(n)] + ["x"],  # the sample says integer
            "text": ["a"] * (n + 1),  # the sample already proves string
            "late_value": [None] * n + ["7"],  # the sample saw only nulls: every value is read
        },
    )
    sampled = infer_plan(path, null_tokens=TOKENS, sampled=True)
    assert [c.type for c in sampled.columns] == ["integer", "string", "integer"]
    assert sampled.verified is False
    exact = infer_plan(path, null_tokens=TOKENS)
    assert [c.type for c in exact.columns] == ["string", "string", "integer"]
    assert exact.verified is True


def test_a_sampled_plan_of_strings_only_or_a_small_file_is_verified(tmp_path):
    strings = write_strings(tmp_path, {"s": ["a"] * (SAMPLE_ROWS * 2)}, name="strings.parquet")
    small = write_strings(tmp_path, {"n": ["1", "2"]}, name="small.parquet")
    assert infer_plan(strings, null_tokens=TOKENS, sampled=True).verified is True
    plan = infer_plan(small, null_tokens=TOKENS, sampled=True)
    assert (plan.verified, plan.columns[0].type) == (True, "integer")


def test_plan_names_source_types_and_tokens(tmp_path):
    path = tmp_path / "typed.parquet"
    table = pa.table(
        {
            "Customer ID": pa.array(["1", "2"]),
            "customerId": pa.array(["a", "b"]),
            "n": pa.array([1, 2], pa.int64()),
            "x": pa.array([1.5, None], pa.float64()),
            "ok": pa.array([True, False]),
            "day": pa.array([dt.date(2024, 1, 1), None], pa.date32()),
            "at": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)] * 2, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)
    plan = infer_plan(path, null_tokens=["NULL"])
    assert plan.null_tokens == ["NULL"]
    got = [(c.source_name, c.name, c.type, c.source_type) for c in plan.columns]
    assert got == [
        ("Customer ID", "customer_id", "integer", "string"),
        ("customerId", "customer_id_2", "string", "string"),
        ("n", "n", "source", "integer"),
        ("x", "x", "source", "double"),
        ("ok", "ok", "source", "boolean"),
        ("day", "day", "source", "date"),
        ("at", "at", "source", "timestamp"),
    ]


def test_non_string_values_are_not_reinterpreted(tmp_path):
    # A numeric source column stays as it is even though its values look like booleans.
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"flag": pa.array([0, 1], pa.int64())}), path)
    assert infer_plan(path, null_tokens=TOKENS).columns[0].type == "source"


def test_json_text_columns_stay_strings(tmp_path):
    path = tmp_path / "json.parquet"
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT '{{"a": 1}}'::JSON AS nested, '12' AS n)
                    TO '{path}' (FORMAT parquet)""")
    con.close()
    plan = infer_plan(path, null_tokens=TOKENS)
    nested, n = plan.columns
    assert (nested.type, nested.source_type) == ("string", "json")
    assert (n.type, n.source_type) == ("integer", "string")


def test_default_tokens_and_settings_objects(tmp_path):
    path = write_strings(tmp_path, {"v": ["1", "NULL", " 2 "]})
    settings = IngestSettings(duckdb_memory_limit="128MB", duckdb_threads=1, temp_dir=str(tmp_path / "spill"))
    for s in (None, settings, {"duckdb_memory_limit": "64MB", "duckdb_threads": 1}):
        plan = infer_plan(path, null_tokens=None, settings=s)
        assert plan.columns[0].type == "integer"
        assert plan.null_tokens == TOKENS


def test_empty_file(tmp_path):
    path = write_strings(tmp_path, {"a": [], "b": []})
    plan = infer_plan(path, null_tokens=TOKENS)
    assert [c.type for c in plan.columns] == ["string", "string"]


def test_columns_differing_only_in_case_are_inferred_separately(tmp_path):
    path = write_strings(tmp_path, {"ID": ["1", "2"], "id": ["x", "y"], "Id": ["true", "false"]})
    plan = infer_plan(path, null_tokens=TOKENS)
    assert [(c.source_name, c.name, c.type) for c in plan.columns] == [
        ("ID", "id", "integer"),
        ("id", "id_2", "string"),
        ("Id", "id_3", "boolean"),
    ]


def test_dictionary_encoded_strings_are_inferred(tmp_path):
    path = tmp_path / "dict.parquet"
    pq.write_table(pa.table({"n": pa.array(["1", "2", "1"]).dictionary_encode()}), path)
    column = infer_plan(path, null_tokens=TOKENS).columns[0]
    assert (column.type, column.source_type) == ("integer", "string")


def test_wide_files_are_inferred_in_column_chunks(tmp_path):
    from service.transform.inference import COLUMNS_PER_QUERY

    kinds = {"i": ["1", "-2"], "d": ["1.5", "2"], "b": ["true", "FALSE"], "t": ["2024-01-01", ""], "s": ["x", "1"]}
    columns = {}
    for n in range(COLUMNS_PER_QUERY * 2 + 3):
        kind = "idbts"[n % 5]
        columns[f"{kind}{n}"] = kinds[kind]
    path = write_strings(tmp_path, columns)
    plan = infer_plan(path, null_tokens=TOKENS, settings={"duckdb_threads": 2})
    expected = {"i": "integer", "d": "double", "b": "boolean", "t": "date", "s": "string"}
    assert [c.type for c in plan.columns] == [expected[name[0]] for name in columns]
