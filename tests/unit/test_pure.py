"""Unit tests of small pure pieces: identifiers, stored file names, retry policy, key format."""

from __future__ import annotations

import uuid

import pytest
import requests
import sqlalchemy.exc

from service.lakehouse.base import PermanentTargetError, TransientTargetError
from service.naming import identifier, table_name, tenant_slug
from service.retry import StepRetryPolicy, is_transient
from service.storage import LocalStore


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Revenue Q1", "revenue_q1"),
        ("ACME, Inc.", "acme_inc"),
        ("2024 sales", "dataset_2024_sales"),
        ("%%%", "dataset"),
    ],
)
def test_identifier(text, expected):
    assert identifier(text, fallback="dataset") == expected


def test_table_name_carries_the_id_prefix():
    dataset_id = uuid.UUID("1a2b3c4d-0000-0000-0000-000000000000")
    assert table_name("Revenue Q1", dataset_id) == "revenue_q1_1a2b3c4d"
    assert tenant_slug("Acme Corp") == "acme_corp"


def test_store_accepts_only_plain_stored_names(tmp_path):
    store = LocalStore(tmp_path)
    name = f"{uuid.uuid4()}.parquet"
    assert store.path_for(name) == tmp_path.resolve() / name
    for bad in ("../x.parquet", "x.parquet", f"../{name}", f"{name}/..", "/etc/passwd", f"{name}\x00", name.upper()):
        with pytest.raises(ValueError):
            store.path_for(bad)


def test_retry_predicate_names_transient_errors_only():
    assert is_transient(TransientTargetError("disk full"))
    assert is_transient(sqlalchemy.exc.OperationalError("select 1", {}, Exception("server closed")))
    assert is_transient(requests.ConnectionError())
    assert not is_transient(PermanentTargetError("bad sql"))
    assert not is_transient(ValueError("bad data"))
    assert not is_transient(FileNotFoundError("gone"))


def test_step_retry_policy_backs_off_and_stops():
    policy = StepRetryPolicy(attempts=3, interval=300, max_wait=3600)
    assert policy.should_retry(TransientTargetError("x"), 1)
    assert policy.should_retry(TransientTargetError("x"), 2)
    assert not policy.should_retry(TransientTargetError("x"), 3)
    assert not policy.should_retry(ValueError("x"), 1)
    first, second, late = policy.countdown(1), policy.countdown(2), policy.countdown(10)
    assert 300 <= first <= 600
    assert 600 <= second <= 900
    assert late == 3600  # capped below the broker's visibility timeout
