"""What the API answers to requests it cannot parse or that arrive too slowly: pure
messages for aiohttp's protocol-level errors (``api.server`` and ``api.app`` answer them
as JSON), and a whole raw response for where no request object exists yet."""

from __future__ import annotations

from aiohttp.http_exceptions import (
    BadHttpMessage,
    BadHttpMethod,
    BadStatusLine,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    PayloadEncodingError,
)

from driftline.state import exact_json

# aiohttp's limits, kept: a longer request line is what the POST form of lookups is for.
MAX_LINE_BYTES = 8190
MAX_FIELD_BYTES = 8190
LOOKUP_HINT = (
    "to look up many event ids, POST them to /v1/events/lookup as JSON "
    '{"project_id": ..., "model_id": ..., "event_ids": [...]} (up to 10,000 ids)'
)
_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long",
            431: "Request Header Fields Too Large"}  # fmt: skip


def protocol_error(error: BaseException | None, status: int) -> tuple[int, str]:
    """The status and plain-words message for an error aiohttp met below the app."""
    if isinstance(error, LineTooLong):
        if _is_request_target(error.args[0] if error.args else b""):
            return 414, (f"the request line is longer than {MAX_LINE_BYTES:,} bytes; {LOOKUP_HINT}")
        return 431, (
            f"a request header is longer than {MAX_FIELD_BYTES:,} bytes; shorten it ({LOOKUP_HINT})"
        )
    if isinstance(error, BadHttpMethod):
        return 400, (
            "the request does not start with an HTTP method such as GET or POST (HTTPS "
            "sent to this plain-HTTP port?)"
        )
    if isinstance(error, BadStatusLine):
        return 400, (f"the request line must be 'METHOD /path HTTP/1.1' ({_plain(error.message)})")
    if isinstance(error, InvalidHeader):
        return 400, "a request header is malformed: 'Name: value', the name without spaces"
    if isinstance(error, InvalidURLError):
        return 400, "the request's URL is not valid; percent-encode what it carries"
    if isinstance(error, PayloadEncodingError):
        return 400, "the body does not match its Content-Length or its chunked encoding"
    if isinstance(error, BadHttpMessage):
        if "Too many headers" in error.message:
            return 431, "the request has too many headers; send fewer"
        return 400, f"the request is not valid HTTP/1.1: {_plain(error.message)}"
    if isinstance(error, HttpProcessingError):
        return 400, "the request is not valid HTTP/1.1"
    if status == 504:
        return 504, "the request took too long to answer; retry"
    return 500, "internal error; the API's log has the details"


def _is_request_target(line: object) -> bool:
    """Whether the text aiohttp cut is a request target (URL), not a header."""
    # The C parser gives a bytearray, the pure-Python one bytes.
    head = bytes(line) if isinstance(line, bytes | bytearray) else str(line).encode()
    return head.startswith((b"/", b"http://", b"https://")) or b" /" in head[:24]


def _plain(message: str) -> str:
    """llhttp's reason in plain words: its messages quote the raw bytes (a Python repr)
    and a caret under them, which say nothing to a client in another language."""
    words = [
        line.strip().rstrip(":.")
        for line in message.splitlines()
        if line.strip() and not any(mark in line for mark in ("b'", 'b"', "\\x", "^"))
    ]
    return words[-1].lower() if words else "malformed request line or headers"


def raw_json_answer(status: int, message: str) -> bytes:
    """A whole HTTP/1.1 response that closes the connection, for where no request object
    exists to answer through (a head that never finished)."""
    body = exact_json.dumps({"error": message})
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: application/json; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body
