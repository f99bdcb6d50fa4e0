"""Local HTTP receivers for notifications: a thread with ``http.server`` on 127.0.0.1, port 0.

A receiver records every POST it gets (path, headers, body, when) and answers as its
``mode`` says: ``ok`` (204), ``fail`` (500) or ``hang`` (never answers until it is stopped
or its mode changes), so a test can show retries, dead letters and a hanging receiver.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import orjson

Mode = Literal["ok", "fail", "hang"]


@dataclass(frozen=True, slots=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived

    def json(self) -> dict[str, object]:
        decoded: dict[str, object] = orjson.loads(self.body)
        return decoded


class Receiver:
    def __init__(self, mode: Mode = "ok") -> None:
        self.mode: Mode = mode
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/hook"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def set_mode(self, mode: Mode) -> None:
        """Switch how later requests are answered; hanging ones are let go."""
        self.mode = mode
        if mode != "hang":
            self._released.set()

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def _record(self, received: Received) -> Mode:
        with self._lock:
            self.received.append(received)
            return self.mode

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received = Received(self.path, dict(self.headers.items()), body, time.monotonic())
                mode = receiver._record(received)
                if mode == "hang":
                    receiver._released.wait()
                    return  # the client timed out long ago; close without an answer
                self.send_response(204 if mode == "ok" else 500)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet: the test reads what was received."""

        return Handler
