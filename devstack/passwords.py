"""Generated passwords of the local servers, each kept in a file only its owner can read."""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

PRIVATE = 0o600


def stored_password(path: Path) -> str:
    """The password kept in ``path``; generated (and written with mode 0600) on first use."""
    path = Path(path)
    if not path.exists():
        _publish(path, secrets.token_urlsafe(24))
    if stat.S_IMODE(path.stat().st_mode) != PRIVATE:
        path.chmod(PRIVATE)  # loosened by hand: tighten it again
    password = path.read_text().strip()
    if not password:
        raise RuntimeError(f"{path} is empty; delete it to have a new password generated")
    return password


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable by its owner only (also when it existed before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), PRIVATE)
        fh.write(text)


def _publish(path: Path, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        write_private(tmp, password + "\n")
        # A hard link publishes the whole file at once and fails if the name exists, so two
        # launchers starting together agree on one password and never read a half-written one.
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
