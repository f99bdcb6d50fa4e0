"""The demo's webhook receiver: a local HTTP server that keeps every alert notification
whose signature checks out, as a receiver of Driftline's webhooks would."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


class WebhookReceiver:
    """``with WebhookReceiver() as receiver:`` ... ``receiver.channel`` (for a rule),
    ``receiver.notifications()`` (the bodies taken, in order)."""

    def __init__(self) -> None:
        self.secret = secrets.token_hex(16)
        self._taken: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/driftline"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def channel(self) -> dict[str, str]:
        return {"type": "webhook", "url": self.url, "secret": self.secret}

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def notifications(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._taken)

    def _take(self, body: bytes, signature: str) -> bool:
        """Keep a notification signed with the secret (once: a repeat after a worker's
        restart carries the same change id); False for a forged one."""
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return False
        notification = orjson.loads(body)
        with self._lock:
            if all(n["change_id"] != notification["change_id"] for n in self._taken):
                self._taken.append(notification)
        return True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                signed = receiver._take(body, self.headers.get("X-Driftline-Signature", ""))
                self.send_response(204 if signed else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo prints what it took."""

        return Handler
