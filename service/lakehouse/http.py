"""HTTP calls of remote lakehouse targets: error classification and short in-process retries.

A response is sorted into the target errors the sync chain understands:

- transient (``RemoteTransientError``): 408, 429, 5xx, the error codes in
  ``TRANSIENT_CODES``, connection errors and timeouts. They are retried here a few times,
  waiting what ``Retry-After`` asks; past that the error goes up and the chain's retry,
  through the broker, takes over.
- permanent (``RemotePermanentError``): any other 4xx, e.g. 401/403 (bad credentials,
  missing permission), 400 and 404. The remote service's own message is kept, because it
  ends up as the dataset's ``last_error``.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from service.lakehouse.base import PermanentTargetError, TransientTargetError

log = logging.getLogger(__name__)

TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TRANSIENT_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "RESOURCE_EXHAUSTED"})
MAX_MESSAGE = 1000


class RemoteTransientError(TransientTargetError):
    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, retry_after: float | None = None
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


class RemotePermanentError(PermanentTargetError):
    def __init__(self, message: str, *, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.code = code


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_details(response: requests.Response) -> tuple[str | None, str]:
    """(error code, message) from an error response of Databricks, an OAuth server or
    a JSON API of the ``{"error": {"code", "message"}}`` kind."""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = message = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            code, message = err.get("code") or err.get("error_code"), err.get("message")
        elif isinstance(err, str):
            code, message = err, body.get("error_description") or body.get("message")
        code = code or body.get("error_code") or body.get("code")
        message = message or body.get("message") or body.get("detail")
    if not message:
        text = (response.text or "").strip()
        message = text[:MAX_MESSAGE] if text and body is None else (response.reason or f"HTTP {response.status_code}")
    return (str(code) if code is not None else None), str(message)[:MAX_MESSAGE]


def classify(service: str, response: requests.Response, what: str) -> Exception:
    """The target error for a failed response."""
    status = response.status_code
    code, message = error_details(response)
    label = f"{code}: {message}" if code and code not in message else message
    if status in TRANSIENT_STATUSES or (code or "").upper() in TRANSIENT_CODES:
        return RemoteTransientError(
            f"{service} is unavailable ({status}) during {what}: {label}",
            status=status,
            code=code,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )
    if status == 401:
        text = f"{service} rejected the credentials (401) during {what}: {label}"
    elif status == 403:
        text = f"{service} denied permission (403) during {what}: {label}"
    else:
        text = f"{service} refused {what} ({status}): {label}"
    return RemotePermanentError(text, status=status, code=code)


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests error, without urllib3's wrapping."""
    reason = exc
    seen = set()
    while True:
        inner = getattr(reason, "reason", None) or reason.__cause__ or reason.__context__
        if inner is None or id(inner) in seen or not isinstance(inner, BaseException):
            break
        seen.add(id(inner))
        reason = inner
    text = str(reason) or reason.__class__.__name__
    return text[:300]


class HttpClient:
    """Calls to one remote service with a shared connection pool.

    ``auth`` returns the headers that authenticate a request (called per attempt, so a
    refreshed token is picked up); ``on_unauthorized`` may drop a cached token and return
    True to have a 401 tried once more at once.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        *,
        timeout: float = 60.0,
        auth: Callable[[], dict] | None = None,
        on_unauthorized: Callable[[], bool] | None = None,
        attempts: int = 3,
        max_retry_after: float = 30.0,
        backoff: tuple[float, float] = (0.25, 4.0),
        session: requests.Session | None = None,
    ):
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.auth = auth
        self.on_unauthorized = on_unauthorized
        self.attempts = max(1, attempts)
        self.max_retry_after = max_retry_after
        self.backoff = backoff
        self.session = session or requests.Session()

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after
        initial, cap = self.backoff
        return min(cap, initial * (2 ** (state.attempt_number - 1)))

    def _should_retry(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientTargetError):
            return False
        # A long Retry-After is better waited for by the broker than by a busy worker.
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is None or retry_after <= self.max_retry_after

    def retrying(self) -> Retrying:
        return Retrying(
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            retry=retry_if_exception(self._should_retry),
            reraise=True,
            before_sleep=lambda s: log.info(
                "%s call failed (attempt %d), retrying: %s",
                self.service,
                s.attempt_number,
                s.outcome and s.outcome.exception(),
            ),
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str | None = None,
        expected: Iterable[int] = (200, 201, 202, 204),
        allow: Iterable[int] = (),
        json: Any = None,
        params: dict | None = None,
        data: Callable[[], Any] | bytes | dict | None = None,
        headers: dict | None = None,
        timeout: float | None = None,
    ) -> requests.Response:
        """One call, retried while transient. Statuses in ``allow`` are returned as they
        are (e.g. 404 when absence is fine); ``data`` may be a callable that opens a fresh
        body for each attempt, so a file is streamed from disk every time."""
        what = what or f"{method} {path}"
        expected, allow = set(expected), set(allow)
        for attempt in self.retrying():
            with attempt:
                return self._once(method, path, what, expected, allow, json, params, data, headers, timeout)
        raise AssertionError("unreachable")

    def _once(self, method, path, what, expected, allow, json, params, data, headers, timeout):
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        retried_auth = False
        while True:
            all_headers = dict(self.auth() if self.auth else {})
            all_headers.update(headers or {})
            body = data() if callable(data) else data
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    data=body,
                    headers=all_headers,
                    timeout=timeout or self.timeout,
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise RemoteTransientError(
                    f"cannot reach {self.service} at {self.base_url} during {what}: {_short(exc)}"
                ) from exc
            finally:
                if body is not None and hasattr(body, "close") and callable(data):
                    body.close()
            if response.status_code == 401 and not retried_auth and self.on_unauthorized and self.on_unauthorized():
                retried_auth = True
                continue
            if response.status_code in expected or response.status_code in allow:
                return response
            raise classify(self.service, response, what)


def sleep_until(deadline: float, interval: float) -> None:
    """Sleep ``interval`` seconds, but not past ``deadline`` (a time.monotonic value)."""
    time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
