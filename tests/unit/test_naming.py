import re

import pytest

from service.transform.naming import snake_case_names

VALID = re.compile(r"^[a-z_][a-z0-9_]*$")


def one(name: str) -> str:
    return snake_case_names([name])[0]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("Customer ID", "customer_id"),
        ("customerId", "customer_id"),
        ("customerID", "customer_id"),
        ("HTTPStatus", "http_status"),
        ("getHTTPResponseCode", "get_http_response_code"),
        ("Amount (€)", "amount"),
        ("Café", "cafe"),
        ("Straße Nr.", "strasse_nr"),
        ("  spaced   out  ", "spaced_out"),
        ("already_snake", "already_snake"),
        ("a--b__c", "a_b_c"),
        ("ＦＵＬＬ　ＷＩＤＴＨ", "full_width"),
    ],
)
def test_snake_case(source, expected):
    assert one(source) == expected


def test_leading_digit_gets_a_prefix():
    name = one("2024 sales")
    assert name == "col_2024_sales"
    assert VALID.match(name)


@pytest.mark.parametrize("source", ["", "%%%", "   ", "€", "日本語"])
def test_names_without_letters_use_their_position(source):
    assert snake_case_names(["first", source]) == ["first", "column_2"]


def test_collisions_get_suffixes_that_do_not_steal_other_names():
    assert snake_case_names(["a b", "a_b", "A B"]) == ["a_b", "a_b_2", "a_b_3"]
    # "a_b_2" is a real column: the suffix for the duplicate skips it.
    assert snake_case_names(["a b", "a_b", "a_b_2"]) == ["a_b", "a_b_3", "a_b_2"]


def test_positional_names_do_not_collide_with_real_ones():
    names = snake_case_names(["", "column_1"])
    assert len(set(names)) == 2
    assert names[0] == "column_1"


def test_metadata_column_names_are_never_produced():
    names = snake_case_names(["_dataset_id", "dataset_id", "_ingested_at", "_source_file"])
    assert not {"_dataset_id", "_ingested_at", "_source_file"} & set(names)
    assert names == ["dataset_id", "dataset_id_2", "ingested_at", "source_file"]


def test_long_names_are_truncated_and_stay_unique():
    long = "x" * 300
    names = snake_case_names([long, long + "y"])
    assert all(len(n) <= 128 for n in names)
    assert names[0] == "x" * 128
    assert names[1] == "x" * 126 + "_2"


def test_all_results_are_valid_identifiers_and_deterministic():
    sources = [
        "Customer ID",
        "customerId",
        "",
        "%%%",
        "2024",
        "Ça va?",
        "a__",
        "_x_",
        "ID",
        "id",
        "Id ",
        "naïve café",
        "X" * 200,
        "x" * 200,
    ]
    first = snake_case_names(sources)
    assert first == snake_case_names(list(sources))
    assert len(first) == len(set(first))
    for name in first:
        assert VALID.match(name), name
        assert not name[0].isdigit()
        assert "__" not in name
        assert not name.endswith("_")
        assert len(name) <= 128
