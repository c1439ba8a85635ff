"""A Delta target that fails on purpose, for tests that run it inside real worker processes.

Behaviour is chosen by the dataset name at the start of the table name:
- ``flaky_silver``: the first silver write of each table raises a transient error;
- ``broken_silver``: every silver write raises a transient error;
- ``bad_silver``: every silver write raises a permanent error;
- ``slow_bronze`` / ``slow_silver`` / ``slow_meta``: that step takes FLAKY_SLOW_SECONDS
  longer, so a test can break things while it runs;
- ``poison``: the bronze write kills its own worker process, every time.
Attempts are counted in files under FLAKY_STATE_DIR, so they survive across processes.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from service.lakehouse.base import PermanentTargetError, TransientTargetError
from service.lakehouse.delta import DeltaTarget


def _slow() -> None:
    time.sleep(float(os.environ.get("FLAKY_SLOW_SECONDS", "3")))


class FlakyDeltaTarget(DeltaTarget):
    def _attempt(self, table: str) -> int:
        state = Path(os.environ["FLAKY_STATE_DIR"])
        state.mkdir(parents=True, exist_ok=True)
        marker = state / table
        count = int(marker.read_text()) + 1 if marker.exists() else 1
        marker.write_text(str(count))
        return count

    def write_bronze(self, ctx):
        table = ctx.bronze.table
        if table.startswith("poison"):
            self._attempt(table)
            os.kill(os.getpid(), signal.SIGKILL)
        if table.startswith("slow_bronze"):
            _slow()
        return super().write_bronze(ctx)

    def write_silver(self, ctx, plan):
        table = ctx.silver.table
        if table.startswith("flaky_silver") and self._attempt(table) == 1:
            raise TransientTargetError("injected: lakehouse storage temporarily unavailable")
        if table.startswith("broken_silver"):
            self._attempt(table)
            raise TransientTargetError("injected: lakehouse storage keeps failing")
        if table.startswith("bad_silver"):
            raise PermanentTargetError("injected: the silver table definition was refused")
        if table.startswith("slow_silver"):
            _slow()
        return super().write_silver(ctx, plan)

    def read_back(self, ctx):
        if ctx.bronze.table.startswith("slow_meta"):
            _slow()
        return super().read_back(ctx)
