"""What the API answers to a request aiohttp cannot parse, and the raw 408: in plain words,
whatever aiohttp's own parser says."""

from __future__ import annotations

import asyncio
import http.client
import io

import orjson
import pytest
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.http_parser import HttpRequestParser

from driftline.api.protocol import protocol_error, raw_json_answer


def parse_error(raw: bytes) -> HttpProcessingError:
    """The exception aiohttp's own parser (the C one when built) raises on ``raw``."""

    async def feed() -> HttpProcessingError:
        parser = HttpRequestParser(None, asyncio.get_running_loop(), 2**16)  # type: ignore[arg-type]
        try:
            parser.feed_data(raw)
        except HttpProcessingError as error:
            return error
        raise AssertionError(f"{raw!r} parsed")

    return asyncio.run(feed())


@pytest.mark.parametrize(
    ("raw", "status", "words"),
    [
        (b"GET /v1/events?" + b"event_id=a&" * 800 + b" HTTP/1.1\r\n\r\n", 414,
         "POST them to /v1/events/lookup"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431,
         "a request header is longer than 8,190 bytes"),
        (b"HELLO\r\n\r\n", 400, "does not start with an HTTP method"),
        (b"\x16\x03\x01\x00\xa5\x01\r\n\r\n", 400, "does not start with an HTTP method"),
        (b"GET / HTTP/9.x\r\n\r\n", 400, "'METHOD /path HTTP/1.1' (invalid minor version)"),
        (b"GET / HTTP/1.1\r\nBad Header: 1\r\n\r\n", 400, "invalid header token"),
        (b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400,
         "duplicate content-length"),
    ],
)  # fmt: skip
def test_protocol_errors_are_said_in_plain_words(raw: bytes, status: int, words: str) -> None:
    answer_status, message = protocol_error(parse_error(raw), 400)
    assert answer_status == status
    assert words in message
    for repr_mark in ("b'", 'b"', "bytearray", "\\x", "^", "None"):
        assert repr_mark not in message


def test_errors_from_inside_the_app_stay_5xx_without_details() -> None:
    assert protocol_error(RuntimeError("secret detail"), 500) == (
        500, "internal error; the API's log has the details",
    )  # fmt: skip
    assert protocol_error(None, 504)[0] == 504


def test_the_raw_408_is_a_whole_http_response_that_closes() -> None:
    raw = raw_json_answer(408, "the headers did not arrive within 10 s")

    class Sock:
        def makefile(self, mode: str) -> io.BytesIO:
            return io.BytesIO(raw)

    response = http.client.HTTPResponse(Sock())  # type: ignore[arg-type]
    response.begin()
    assert (response.status, response.reason) == (408, "Request Timeout")
    assert response.getheader("Connection") == "close"
    assert response.getheader("Content-Type", "").startswith("application/json")
    assert orjson.loads(response.read()) == {"error": "the headers did not arrive within 10 s"}
