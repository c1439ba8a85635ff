"""Credentials of the Flower dashboard started by ``make run`` / ``make flower``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from devstack.passwords import stored_password

FLOWER_URL = "http://127.0.0.1:5555"
FLOWER_USER = "admin"


class BadSetting(ValueError):
    """A variable of the environment the launcher cannot work with."""


def flower_basic_auth(data_dir: Path, environ: Mapping[str, str] | None = None) -> str:
    """``FLOWER_BASIC_AUTH`` (``user:password[,user:password...]``), else ``admin`` with a password
    generated once and kept in ``DATA_DIR/flower.password``.

    Flower reads the variable from its environment itself, which keeps the password out of
    its command line (``ps`` shows that to every user of the host).
    """
    configured = (os.environ if environ is None else environ).get("FLOWER_BASIC_AUTH", "").strip()
    if not configured:
        return f"{FLOWER_USER}:{stored_password(Path(data_dir) / 'flower.password')}"
    for pair in configured.split(","):
        user, sep, password = pair.partition(":")
        if not (user and sep and password):
            raise BadSetting("FLOWER_BASIC_AUTH must be user:password (comma-separated for several users)")
    return configured


def flower_login(basic_auth: str) -> str:
    """How the banner names the credentials: the generated password is shown, a configured one is not."""
    if os.environ.get("FLOWER_BASIC_AUTH", "").strip():
        return "(basic auth from FLOWER_BASIC_AUTH)"
    user, _, password = basic_auth.partition(":")
    return f"(user {user}, password {password})"
