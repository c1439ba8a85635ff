"""What counts as transient, and how long to wait before trying again.

Only the error types named here are retried; everything else fails the step at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis.exceptions
import requests
import sqlalchemy.exc
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from service.lakehouse.base import TransientTargetError
from service.locks import DatasetBusy

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    TransientTargetError,
    DatasetBusy,  # another step of the dataset holds its lock
    sqlalchemy.exc.OperationalError,  # PostgreSQL unreachable, restarting, connection dropped
    sqlalchemy.exc.InterfaceError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    requests.ConnectionError,
    requests.Timeout,
)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, TRANSIENT_ERRORS)


def quick_retrying(attempts: int = 3) -> Retrying:
    """In-process retries with short waits, for one call that may hit a brief outage."""
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0, jitter=0.2),
        retry=retry_if_exception(is_transient),
        reraise=True,
    )


@dataclass(frozen=True)
class StepRetryPolicy:
    """Retries of a whole sync step, spaced by exponential backoff with jitter.

    Waits of minutes go back to the broker as a countdown instead of holding a worker
    process; they are capped below the broker's visibility timeout.
    """

    attempts: int
    interval: float
    max_wait: float

    def should_retry(self, exc: BaseException, attempt: int) -> bool:
        return attempt < self.attempts and is_transient(exc)

    def countdown(self, attempt: int) -> float:
        wait = wait_exponential_jitter(multiplier=self.interval, max=self.max_wait, jitter=self.interval)
        state = RetryCallState(retry_object=Retrying(), fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        return min(wait(state), self.max_wait)

    @classmethod
    def from_config(cls, config: dict) -> StepRetryPolicy:
        visibility = float(config.get("BROKER_VISIBILITY_TIMEOUT", 7200))
        return cls(
            attempts=max(1, int(config["SYNC_RETRY_ATTEMPTS"])),
            interval=float(config["SYNC_RETRY_INTERVAL"]),
            max_wait=visibility / 2,
        )
