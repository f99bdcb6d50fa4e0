"""A local HTTP receiver for alert notifications (webhook, Slack- and PagerDuty-style
channels all POST): it keeps every request it took, and answers at once, after a delay,
with an error, or never."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes
    # time.perf_counter() when the request was read
    at: float

    def json(self) -> Any:
        return orjson.loads(self.body)


class Receiver:
    """``with Receiver() as receiver:`` ... ``receiver.url``; ``delay_s`` before each
    answer, ``status`` of each answer, ``hang``: never answer (until closed)."""

    def __init__(self, delay_s: float = 0.0, status: int = 200, hang: bool = False) -> None:
        self.delay_s, self.status, self.hang = delay_s, status, hang
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def taken(self) -> list[Delivery]:
        with self._lock:
            return list(self.deliveries)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                delivery = Delivery(self.path, dict(self.headers), body, time.perf_counter())
                with receiver._lock:
                    receiver.deliveries.append(delivery)
                if receiver.hang:
                    receiver._closing.wait()
                    return
                if receiver.delay_s:
                    receiver._closing.wait(receiver.delay_s)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
