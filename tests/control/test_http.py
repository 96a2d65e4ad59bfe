"""The sans-I/O protocol layer: whole requests out of any chunking, limits, failures."""

from __future__ import annotations

import pytest

from supervisor.control.http import (
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    Closed,
    Failure,
    Request,
    ServerConnection,
)

POST = (
    b"POST /v1/groups/web/scale?x=1 HTTP/1.1\r\nHost: l\r\nContent-Type: application/json\r\n"
    b'Content-Length: 15\r\n\r\n{"replicas": 4}'
)


def feed_all(conn: ServerConnection, data: bytes, step: int) -> object:
    result: object = None
    for i in range(0, len(data), step):
        result = conn.feed(data[i : i + step])
        if result is not None:
            return result
    return result


@pytest.mark.parametrize("step", [1, 3, 17, 1000])
def test_a_request_comes_out_whole_whatever_the_chunking(step: int) -> None:
    req = feed_all(ServerConnection(), POST, step)
    assert isinstance(req, Request)
    assert (req.method, req.path, req.query) == ("POST", "/v1/groups/web/scale", {"x": ["1"]})
    assert req.json() == {"replicas": 4}


def test_reply_then_keep_alive_serves_a_second_request() -> None:
    conn = ServerConnection()
    first = conn.feed(
        b"GET /healthz HTTP/1.1\r\nHost: l\r\n\r\nGET /readyz HTTP/1.1\r\nHost: l\r\n\r\n"
    )
    assert isinstance(first, Request) and first.path == "/healthz"
    out = conn.respond_json(200, {"ok": True})
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and out.endswith(b'{"ok": true}\n')
    assert conn.next_cycle()
    second = conn.feed(None)
    assert isinstance(second, Request) and second.path == "/readyz"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"\x00\x01garbage\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # HTTP/1.1 without Host
        (b"GET / HTTP/1.1\r\nHost: l\r\nX: " + b"a" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n", 431),
        (
            b"POST / HTTP/1.1\r\nHost: l\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY_BYTES + 1),
            413,
        ),
    ],
)
def test_bad_requests_become_a_status_never_an_exception(data: bytes, status: int) -> None:
    conn = ServerConnection()
    result = feed_all(conn, data, 4096)
    assert isinstance(result, Failure) and result.status == status
    reply = conn.respond_json(result.status, {"error": result.message}, close=True)
    assert reply.startswith(b"HTTP/1.1 %d " % status)


def test_a_chunked_body_over_the_limit_is_refused() -> None:
    conn = ServerConnection()
    head = b"POST / HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunk = b"%x\r\n%s\r\n" % (16384, b"x" * 16384)
    result = feed_all(conn, head + chunk * 5, 65536)
    assert isinstance(result, Failure) and result.status == 413


def test_headers_trickled_past_the_limit_are_refused() -> None:
    conn = ServerConnection()
    conn.feed(b"GET / HTTP/1.1\r\nHost: l\r\n")
    result = None
    for _ in range(MAX_HEADER_BYTES // 100 + 10):
        result = conn.feed(b"X-Pad: " + b"p" * 90 + b"\r\n")
        if result is not None:
            break
    assert isinstance(result, Failure) and result.status in (400, 431)


def test_eof_before_a_request_is_closed_and_mid_request_is_bad() -> None:
    assert isinstance(ServerConnection().feed(b""), Closed)
    conn = ServerConnection()
    assert conn.feed(b"GET /v1/sta") is None
    result = conn.feed(b"")
    assert isinstance(result, Failure) and result.status == 400


def test_streamed_reply_is_chunked() -> None:
    conn = ServerConnection()
    assert isinstance(conn.feed(b"GET /x HTTP/1.1\r\nHost: l\r\n\r\n"), Request)
    out = conn.start_stream(200, "text/plain") + conn.stream_data(b"a\n") + conn.end_stream()
    assert b"Transfer-Encoding: chunked" in out and out.endswith(b"2\r\na\n\r\n0\r\n\r\n")
