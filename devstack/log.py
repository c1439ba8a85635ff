"""The launcher's own messages."""

from __future__ import annotations

import sys


def log(msg: str) -> None:
    # stderr only: `make tenant` callers read the API key from the last line of stdout.
    print(f"devstack: {msg}", file=sys.stderr, flush=True)
