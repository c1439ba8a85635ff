"""Serving a WSGI app on 127.0.0.1 in a background thread, and canned faults."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):  # request lines would flood test output
        pass


class ServerThread:
    """A threaded werkzeug server; ``stop()`` then ``start()`` serves again on the same
    port, which is how tests take a service down and bring it back."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.host = host
        self.port = port
        self._server = None
        self._thread = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> ServerThread:
        if self._server is not None:
            return self
        deadline = time.monotonic() + 10
        while True:
            try:
                self._server = make_server(self.host, self.port, self.app, threaded=True, request_handler=_QuietHandler)
                break
            except OSError:
                # The port of a server just stopped may linger briefly.
                if time.monotonic() > deadline or self.port == 0:
                    raise
                time.sleep(0.1)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = self._thread = None


logging.getLogger("werkzeug").setLevel(logging.WARNING)


@dataclass
class Fault:
    """A canned response for the next ``times`` requests that match."""

    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    method: str | None = None
    path: str | None = None  # regex searched in the request path
    body_match: str | None = None  # regex searched in a JSON request body
    times: int = 1

    def matches(self, request: Request, body_text: str | None) -> bool:
        if self.method and request.method.upper() != self.method.upper():
            return False
        if self.path and not re.search(self.path, request.path):
            return False
        if self.body_match and (body_text is None or not re.search(self.body_match, body_text, re.S)):
            return False
        return True

    def response(self) -> Response:
        body = self.body
        if body is None:
            body = ""
        if isinstance(body, (dict, list)):
            return Response(json.dumps(body), status=self.status, headers=self.headers, mimetype="application/json")
        return Response(str(body), status=self.status, headers=self.headers)


class FaultQueue:
    """Faults in the order they were added; each request takes the first that matches."""

    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self.served: list[tuple[str, str, int]] = []  # (method, path, status) of faults served

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(f.times for f in self._faults)

    def take(self, request: Request) -> Response | None:
        body_text = None
        if request.mimetype == "application/json" or request.mimetype == "application/x-www-form-urlencoded":
            body_text = request.get_data(cache=True, as_text=True)
        with self._lock:
            for fault in self._faults:
                if fault.matches(request, body_text):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    self.served.append((request.method, request.path, fault.status))
                    return fault.response()
        return None


class Emulator:
    """What every emulator shares: a server thread, a fault queue and their controls.

    Subclasses set ``self.server`` and ``self.faults`` in ``__init__``.
    """

    server: ServerThread
    faults: FaultQueue

    @property
    def url(self) -> str:
        return self.server.url

    def start(self):
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def inject(
        self,
        status: int,
        body=None,
        *,
        headers: dict | None = None,
        method: str | None = None,
        path: str | None = None,
        body_match: str | None = None,
        times: int = 1,
    ) -> Fault:
        """Answer the next ``times`` matching requests with this response instead."""
        return self.faults.add(Fault(status, body, headers or {}, method, path, body_match, times))

    def clear_faults(self) -> None:
        self.faults.clear()
