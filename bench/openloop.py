"""An open-loop load: requests sent on a fixed schedule, whatever became of the earlier ones.

Request k is due at ``t0 + k / rate``. A scheduler hands each one, at its due time, to a pool
of connections; when every connection is busy it waits in a queue, and that wait is part of
its latency, which runs from the due time. A slow server therefore cannot slow the offered
load down and hide its own slowness (no coordinated omission).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.stats import dist

# What one connection's send returns: HTTP status (0: no answer), the created id, an error text.
Outcome = tuple[int, str | None, str | None]
# Time for every connection thread to be up before the first request is due.
LEAD_S = 0.2


@dataclass(frozen=True)
class Sent:
    """One request: when it was due, when a connection took it, when the answer came (seconds
    since t0), and the answer."""

    k: int
    due_s: float
    sent_s: float
    answered_s: float
    status: int
    ident: str | None = None
    error: str | None = None

    @property
    def latency_s(self) -> float:
        return self.answered_s - self.due_s

    @property
    def wait_s(self) -> float:
        """Time it waited for a free connection (the client's own queue)."""
        return self.sent_s - self.due_s


def due_offsets(count: int, rate: float) -> list[float]:
    """Seconds after t0 at which each of ``count`` requests is due, ``rate`` per second."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    return [k / rate for k in range(count)]


def run_open_loop(
    items: Sequence[Any], rate: float, connections: int, make_send: Callable[[], Callable[[Any], Outcome]]
) -> tuple[list[Sent], float]:
    """Send every item on the schedule over ``connections`` threads, each with its own
    ``make_send()``; every request's record (in schedule order) and t0 as wall-clock time."""
    due = due_offsets(len(items), rate)
    ready: queue.Queue = queue.Queue()
    records: list[Sent] = []
    lock = threading.Lock()
    t0 = time.monotonic() + LEAD_S
    t0_wall = time.time() + LEAD_S

    def connection() -> None:
        send = make_send()
        while (job := ready.get()) is not None:
            k, item = job
            sent = time.monotonic() - t0
            try:
                status, ident, error = send(item)
            except Exception as exc:  # noqa: BLE001 - an upload that got no answer is a failure
                status, ident, error = 0, None, repr(exc)
            record = Sent(k, due[k], sent, time.monotonic() - t0, status, ident, error)
            with lock:
                records.append(record)

    pool = [threading.Thread(target=connection, name=f"open-loop-{i}", daemon=True) for i in range(connections)]
    for thread in pool:
        thread.start()
    for k, item in enumerate(items):
        delay = t0 + due[k] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        ready.put((k, item))
    for _ in pool:
        ready.put(None)
    for thread in pool:
        thread.join()
    return sorted(records, key=lambda r: r.k), t0_wall


def rate_between(times: list[float]) -> float | None:
    """Events per second from the first to the last of ``times`` (None for fewer than two, or
    all at once)."""
    if len(times) < 2:
        return None
    span = max(times) - min(times)
    return (len(times) - 1) / span if span > 0 else None


def summarize(records: list[Sent], rate: float, ok_status: int = 201) -> dict:
    """Latency (from the due time) of the accepted requests, the failures, the rate the
    requests really went out at, and how long they waited for a connection."""
    accepted = [r for r in records if r.status == ok_status]
    failed = [r for r in records if r.status != ok_status]
    return {
        "offered": len(records),
        "accepted": len(accepted),
        "failed_uploads": len(failed),
        "upload_errors": [f"{r.status}: {r.error}" for r in failed][:20],
        "rate_target": rate,
        "rate_achieved": rate_between([r.sent_s for r in records]),
        "offered_s": max((r.due_s for r in records), default=0.0),
        "upload_latency_s": dist([r.latency_s for r in accepted]),
        "connection_wait_s": dist([r.wait_s for r in records]),
        "last_answer_s": max((r.answered_s for r in records), default=None),
    }
