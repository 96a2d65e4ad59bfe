"""HTTP/1.1 for the control socket, sans-I/O: bytes in, requests out, bytes to send.

h11 does the parsing; this module adds the limits (in one place) and turns
every protocol failure into a status code, so the server never sees an
exception from a malformed request.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import h11

MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
SERVER_NAME = "placevisor"

REASONS = {
    200: b"OK",
    400: b"Bad Request",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    409: b"Conflict",
    413: b"Content Too Large",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    503: b"Service Unavailable",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> dict[str, object]:
        """The body as a JSON object ({} when empty); ValueError when it is not one."""
        if not self.body.strip():
            return {}
        value = json.loads(self.body)
        if not isinstance(value, dict):
            raise ValueError("the body must be a JSON object")
        return value


@dataclass(frozen=True)
class Failure:
    """The request cannot be served; answer ``status`` and close."""

    status: int
    message: str


class Closed:
    """The peer closed its side."""


CLOSED = Closed()


class ServerConnection:
    """One connection's protocol state: feed bytes, get a Request, send a reply."""

    def __init__(
        self, *, max_header_bytes: int = MAX_HEADER_BYTES, max_body_bytes: int = MAX_BODY_BYTES
    ) -> None:
        self._conn = h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes)
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self._head: h11.Request | None = None
        self._body = bytearray()

    def feed(self, data: bytes | None) -> Request | Failure | Closed | None:
        """Add received bytes (b"" at EOF; None: only look at what is buffered).

        Returns a complete Request, a Failure, CLOSED, or None for "need more".
        """
        if data is not None:
            try:
                self._conn.receive_data(data)
            except RuntimeError as exc:  # data after the peer closed
                return Failure(400, str(exc))
        while True:
            try:
                event = self._conn.next_event()
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                return Failure(status if status in REASONS else 400, f"bad request: {exc}")
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return None
            if isinstance(event, h11.Request):
                failure = self._check_head(event)
                if failure is not None:
                    return failure
                self._head = event
                self._body.clear()
            elif isinstance(event, h11.Data):
                self._body += event.data
                if len(self._body) > self.max_body_bytes:
                    return Failure(413, f"request body over {self.max_body_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return self._request()
            elif isinstance(event, h11.ConnectionClosed):
                return CLOSED

    def _check_head(self, event: h11.Request) -> Failure | None:
        size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
        if size > self.max_header_bytes:
            return Failure(431, f"request headers over {self.max_header_bytes} bytes")
        for name, value in event.headers:
            if name == b"content-length" and int(value) > self.max_body_bytes:
                return Failure(413, f"request body over {self.max_body_bytes} bytes")
        return None

    def _request(self) -> Request | Failure:
        head = self._head
        assert head is not None
        try:
            target = head.target.decode("ascii")
        except UnicodeDecodeError:
            return Failure(400, "the request target is not ASCII")
        parts = urlsplit(target)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}
        return Request(
            method=head.method.decode("ascii", "replace"),
            path=unquote(parts.path),
            query=parse_qs(parts.query),
            body=bytes(self._body),
            headers=headers,
        )

    # -- replies ------------------------------------------------------------
    def _send(self, event: h11.Event) -> bytes:
        return self._conn.send(event) or b""

    def respond(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        *,
        close: bool = False,
    ) -> bytes:
        """A complete reply; b"" when the protocol state allows none (then close)."""
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Server", SERVER_NAME),
        ]
        if close:
            headers.append(("Connection", "close"))
        try:
            return (
                self._send(
                    h11.Response(status_code=status, headers=headers, reason=_reason(status))
                )
                + self._send(h11.Data(data=body))
                + self._send(h11.EndOfMessage())
            )
        except h11.LocalProtocolError:
            return b""

    def respond_json(self, status: int, value: object, *, close: bool = False) -> bytes:
        return self.respond(status, json.dumps(value).encode() + b"\n", close=close)

    def start_stream(self, status: int, content_type: str) -> bytes:
        """The head of a reply whose body follows in ``stream_data`` pieces."""
        headers = [("Content-Type", content_type), ("Server", SERVER_NAME)]
        return self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    def stream_data(self, data: bytes) -> bytes:
        return self._send(h11.Data(data=data)) if data else b""

    def end_stream(self) -> bytes:
        return self._send(h11.EndOfMessage())

    def next_cycle(self) -> bool:
        """After a reply: True if the connection can take another request."""
        if self._conn.our_state is h11.DONE and self._conn.their_state is h11.DONE:
            self._conn.start_next_cycle()
            self._head = None
            return True
        return False


def _reason(status: int) -> bytes:
    return REASONS.get(status, b"")
