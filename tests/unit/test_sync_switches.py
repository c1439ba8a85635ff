"""Unit tests of the sync switches: reading them, and whether an upload syncs."""

from __future__ import annotations

import pytest

from service.config import as_bool, from_env
from service.datasets import upload_syncs


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        ("true", True),
        (" On ", True),
        ("1", True),
        (False, False),
        ("FALSE", False),
        ("no", False),
        ("0", False),
    ],
)
def test_as_bool(value, expected):
    assert as_bool(value, "X") is expected


def test_as_bool_rejects_other_values():
    with pytest.raises(ValueError, match="AUTO_SYNC must be true or false"):
        as_bool("sometimes", "AUTO_SYNC")


def test_switches_default_on_and_read_the_environment():
    config = from_env({"AUTO_SYNC": "false"})
    assert config["SYNC_ENABLED"] is True and config["AUTO_SYNC"] is False
    with pytest.raises(ValueError, match="SYNC_ENABLED"):
        from_env({"SYNC_ENABLED": "maybe"})


@pytest.mark.parametrize(
    ("enabled", "auto", "requested", "expected"),
    [
        (True, True, None, True),
        (True, True, False, False),
        (True, False, None, False),
        (True, False, True, True),
        ("false", True, True, False),  # syncing off wins over the upload's choice
        (False, False, None, False),
    ],
)
def test_upload_syncs(enabled, auto, requested, expected):
    assert upload_syncs({"SYNC_ENABLED": enabled, "AUTO_SYNC": auto}, requested) is expected
