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

    def write_bronze(self, ref, source):
        if ref.table.startswith("poison"):
            self._attempt(ref.table)
            os.kill(os.getpid(), signal.SIGKILL)
        if ref.table.startswith("slow_bronze"):
            _slow()
        return super().write_bronze(ref, source)

    def write_silver(self, bronze, silver, plan):
        if silver.table.startswith("flaky_silver") and self._attempt(silver.table) == 1:
            raise TransientTargetError("injected: lakehouse storage temporarily unavailable")
        if silver.table.startswith("broken_silver"):
            self._attempt(silver.table)
            raise TransientTargetError("injected: lakehouse storage keeps failing")
        if silver.table.startswith("bad_silver"):
            raise PermanentTargetError("injected: the silver table definition was refused")
        if silver.table.startswith("slow_silver"):
            _slow()
        return super().write_silver(bronze, silver, plan)

    def count_rows(self, ref):
        if ref.table.startswith("slow_meta") and ref.schema == "bronze":
            _slow()
        return super().count_rows(ref)
