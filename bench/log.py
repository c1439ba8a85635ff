"""The harness's progress lines, stamped with the seconds since it started."""

from __future__ import annotations

import time

T0 = time.monotonic()


def elapsed() -> float:
    return time.monotonic() - T0


def log(msg: str) -> None:
    print(f"[bench {elapsed():7.1f}s] {msg}", flush=True)


def seconds(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}s"
