"""Signed storage URLs, and the codes and messages tenants see for failed steps."""

from __future__ import annotations

import errno
from urllib.parse import parse_qs, urlsplit

import duckdb
import pytest

from service import signing
from service.failures import log_detail, public_error, step_error_text
from service.lakehouse.base import PermanentTargetError, TransientTargetError
from service.sync import PermanentSyncError

NAME = "0b9a3f52-6d2e-4a57-9b1e-2f0e8c1d7a10.parquet"
OTHER = "1c8b4e63-7e3f-4b68-8c2f-3a1f9d2e8b21.parquet"


def test_a_signature_opens_one_file_until_it_expires():
    config = {"INTERNAL_URL_SIGNING_KEY": "k" * 32, "INTERNAL_URL_TTL": 60}
    query = signing.sign(config, NAME, now=1_000)
    assert query["expires"] == "1060"
    assert signing.verify(config, NAME, query["expires"], query["signature"], now=1_059)
    assert not signing.verify(config, NAME, query["expires"], query["signature"], now=1_061)
    assert not signing.verify(config, OTHER, query["expires"], query["signature"], now=1_000)
    assert not signing.verify(config, NAME, "1061", query["signature"], now=1_000)  # a later expiry
    assert not signing.verify(
        {"INTERNAL_URL_SIGNING_KEY": "other"}, NAME, query["expires"], query["signature"], now=1_000
    )
    assert not signing.verify(config, NAME, "-1", query["signature"], now=0)
    assert not signing.verify(config, NAME, None, None)


@pytest.mark.parametrize(("expires", "given"), [("1060", "é" * 64), ("1060", "\udcff"), ("²", "x"), ("١٠٦٠", "x")])
def test_any_query_text_is_refused_not_an_error(expires, given):
    config = {"INTERNAL_URL_SIGNING_KEY": "k" * 32, "INTERNAL_URL_TTL": 60}
    assert not signing.verify(config, NAME, expires, given, now=1_000)


def test_the_key_falls_back_to_one_derived_from_the_internal_key():
    derived = signing.signing_key({"INTERNAL_API_KEY": "secret"})
    assert derived and derived != b"secret"
    assert signing.signing_key({}) is None and signing.sign({}, NAME) == {}


def test_storage_urls_are_signed():
    url = signing.storage_url("http://files.example/", NAME, {"INTERNAL_URL_SIGNING_KEY": "x"})
    parts = urlsplit(url)
    assert parts.path == f"/internal/storage/datasets/{NAME}"
    assert set(parse_qs(parts.query)) == {"expires", "signature"}
    assert (
        signing.storage_url("http://files.example", NAME, {})
        == f"http://files.example/internal/storage/datasets/{NAME}"
    )


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as exc:
            raise outer from exc
    except Exception as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (
            duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block of size 256.0 KiB; SET memory_limit"),
            "out_of_memory",
        ),
        (MemoryError(), "out_of_memory"),
        (OSError(errno.ENOSPC, "No space left on device", "/srv/lakehouse/t"), "disk_full"),
        (
            _raised_from(
                TransientTargetError("writing bronze"),
                PermissionError(errno.EPERM, "Operation not permitted", "/srv/lakehouse/t"),
            ),
            "storage_not_writable",
        ),
        (TransientTargetError("cannot reach https://adb-123.azuredatabricks.net"), "target_unavailable"),
        (PermanentTargetError("warehouse 8f2e... refused: PERMISSION_DENIED"), "target_rejected"),
        (PermanentSyncError("the local file x.parquet of dataset y is missing"), "local_file_missing"),
        (PermanentSyncError("bronze table has 3 rows, the dataset has 4"), "row_count_mismatch"),
        (duckdb.ConversionException("Could not convert string 'secret value' to INT32"), "invalid_data"),
        (
            _raised_from(TransientTargetError("write failed"), duckdb.OutOfMemoryException("Out of Memory Error")),
            "out_of_memory",
        ),
        (RuntimeError("something else at /srv/data"), "internal_error"),
    ],
)
def test_public_errors_carry_a_code_and_no_internals(exc, code):
    got, message = public_error(exc)
    assert got == code
    text = step_error_text("silver", exc)
    assert text == f"silver: {code}: {message}"
    for internal in ("memory_limit", "/srv", "azuredatabricks", "PERMISSION_DENIED", "secret value", "x.parquet"):
        assert internal not in text


def test_the_log_keeps_the_detail_but_not_quoted_data():
    assert "failed to pin block" in log_detail(duckdb.OutOfMemoryException("Out of Memory Error: failed to pin block"))
    assert "secret value" not in log_detail(duckdb.ConversionException("Could not convert string 'secret value'"))
