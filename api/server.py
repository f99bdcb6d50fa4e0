"""How ``driftline api`` serves the application: JSON errors and bounded reads at the
HTTP layer, below the application's middlewares.

aiohttp answers the errors it meets while parsing a request (a request line or header
too long, a malformed request line) itself, in text/plain, before any middleware runs;
``JsonErrorHandler`` answers them as ``{"error": ...}`` with a sentence that says what to
change. It also bounds how long a client may take to send a request's head: aiohttp's
keep-alive timer (armed when a connection opens and after every response, and not moved
by the bytes of a head arriving) is set to ``api_header_timeout_s``; when it fires on a
half-sent head the client gets a 408 before the connection closes, an idle connection is
closed silently. The body's deadline is the application's (``api.app``), since only a
handler knows when it has read the body.

The overrides reach into aiohttp's ``RequestHandler`` (``_process_keepalive``,
``_waiter``, ``_messages``, ``_request_count``); the tests in
``tests/e2e/test_api_transport.py`` pin the behaviour on the aiohttp version installed.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from driftline.api.app import ApiSettings, create_app, error_response
from driftline.api.protocol import MAX_FIELD_BYTES, MAX_LINE_BYTES, protocol_error, raw_json_answer
from driftline.api.service_metrics import metrics_app

# How long a connection answered 408 stays open, dropping what the client still sends.
LINGER_S = 2.0


class JsonErrorHandler(RequestHandler):
    """aiohttp's connection handler with JSON errors and a 408 for a head sent too slowly."""

    def __init__(self, manager: web.Server, *, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(manager, keepalive_timeout=header_timeout_s, **kwargs)
        self._header_timeout_s = header_timeout_s
        # Bytes of a request's head have come, and not the whole head.
        self._head_started = False
        # A 408 was sent: the connection only waits to close (``_linger``).
        self._lingering = False

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status == 500 or not isinstance(exc, HttpProcessingError):
            self.log_exception("Error handling request", exc_info=exc)
        else:
            self.log_debug("Refused a malformed request", exc_info=exc)
        if request.writer.output_size > 0:
            raise ConnectionError("a response is under way; the connection is closed")
        answer_status, text = protocol_error(exc, status)
        response = error_response(answer_status, text)
        response.force_close()
        return response

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the 408 is out; what the client still sends is read and dropped
        waiting_for_head = self._waiter is not None or self._request_count == 0
        super().data_received(data)
        if waiting_for_head and data:
            self._head_started = not self._messages
        elif self._messages:
            self._head_started = False

    def _process_keepalive(self) -> None:
        due = self._loop.time() >= self._next_keepalive_close_time
        waiting = self._waiter is not None and not self._waiter.done()
        if due and waiting and self._head_started and self.transport is not None:
            self.transport.write(
                raw_json_answer(
                    408,
                    f"the request's line and headers did not all arrive within "
                    f"{self._header_timeout_s:g} s; send them at once",
                )
            )
            self._linger()
            return
        super()._process_keepalive()

    def _linger(self) -> None:
        """Close after the 408 the way HTTP servers close on a client still sending: stop
        writing (FIN after the answer), read and drop what still comes, close a moment
        later. Closing at once would make the kernel answer the client's next bytes with a
        reset, and a reset discards the 408 the client has not read yet."""
        assert self.transport is not None
        self._lingering = True
        self._keepalive_handle = None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._loop.call_later(LINGER_S, self.force_close)


class _JsonErrorServer(web.Server):
    def __init__(self, plain: web.Server, handler_kwargs: dict[str, Any]) -> None:
        super().__init__(
            plain.request_handler,
            request_factory=plain.request_factory,
            handler_cancellation=plain.handler_cancellation,
        )
        self._handler_kwargs = handler_kwargs

    def __call__(self) -> RequestHandler:
        return JsonErrorHandler(self, loop=asyncio.get_running_loop(), **self._handler_kwargs)


class ApiRunner(web.AppRunner):
    """An ``AppRunner`` whose connections are handled by ``JsonErrorHandler``."""

    def __init__(self, app: web.Application, settings: ApiSettings) -> None:
        super().__init__(app, access_log=None)
        self._handler_kwargs: dict[str, Any] = {
            "header_timeout_s": settings.api_header_timeout_s,
            "max_line_size": MAX_LINE_BYTES,
            "max_field_size": MAX_FIELD_BYTES,
            "access_log": None,
        }

    async def _make_server(self) -> web.Server:
        return _JsonErrorServer(await super()._make_server(), self._handler_kwargs)


def run(settings: ApiSettings, internal_secret: str, announce: Callable[[str], None]) -> None:
    """Serve the API until SIGINT or SIGTERM, then close connections and services."""
    asyncio.run(_serve(settings, internal_secret, announce))


async def _serve(
    settings: ApiSettings, internal_secret: str, announce: Callable[[str], None]
) -> None:
    runner = ApiRunner(create_app(settings, internal_secret), settings)
    metrics_runner = web.AppRunner(metrics_app())
    await runner.setup()
    await metrics_runner.setup()
    try:
        site = web.TCPSite(runner, settings.api_host, settings.api_port)
        await site.start()
        metrics_host, metrics_port = settings.api_metrics_host, settings.api_metrics_port
        await web.TCPSite(metrics_runner, metrics_host, metrics_port).start()
        announce(f"driftline api on http://{settings.api_host}:{settings.api_port}, "
                 f"its metrics on http://{metrics_host}:{metrics_port}/metrics")  # fmt: skip
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await metrics_runner.cleanup()
        await runner.cleanup()
