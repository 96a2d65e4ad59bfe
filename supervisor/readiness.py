"""Readiness and liveness probes, and the supervisor's own sd_notify socket for replicas.

Every probe is bounded in time and awaits sockets on the loop: none blocks
it. ``tcp:`` and ``http:`` are retried on a short, growing interval (nothing
can wake us when a port starts listening); ``notify`` and ``line:`` are pushed
to us, by a datagram and by the output pump.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from urllib.parse import urlsplit

import anyio

from .config import ListenAddress

#: One probe attempt's bound.
ATTEMPT_TIMEOUT = 2.0
#: First and longest wait between attempts while a replica starts.
RETRY_FIRST, RETRY_MAX = 0.05, 0.5
#: The most a probe reads of a response (status line and headers suffice).
MAX_RESPONSE = 64 * 1024


async def tcp_ok(address: ListenAddress, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """Whether a TCP (or unix) connect succeeds within ``timeout``."""
    with anyio.move_on_after(timeout):
        try:
            if address.family == "unix":
                await (await anyio.connect_unix(address.path)).aclose()
            else:
                await (await anyio.connect_tcp(address.host, address.port)).aclose()
        except OSError:
            return False
        return True
    return False


async def http_ok(url: str, timeout: float = ATTEMPT_TIMEOUT) -> bool:
    """Whether ``GET url`` answers 2xx within ``timeout`` (HTTP/1.1 spoken by h11)."""
    import h11  # only replicas with an http: probe pay for it

    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    port = parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = h11.Connection(our_role=h11.CLIENT, max_incomplete_event_size=MAX_RESPONSE)
    request = h11.Request(
        method="GET",
        target=target,
        headers=[("Host", parts.netloc), ("Connection", "close"), ("User-Agent", "placevisor")],
    )
    with anyio.move_on_after(timeout):
        try:
            async with await anyio.connect_tcp(host, port) as stream:
                await stream.send(conn.send(request) + conn.send(h11.EndOfMessage()))
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        try:
                            data = await stream.receive(MAX_RESPONSE)
                        except anyio.EndOfStream:
                            data = b""
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Response):
                        return 200 <= event.status_code < 300
                    return False
        except (OSError, h11.ProtocolError, anyio.BrokenResourceError):
            return False
    return False


async def retry_until(check: Callable[[], object], deadline: float) -> bool:
    """Run the async ``check()`` until it is true or ``deadline`` passes."""
    wait = RETRY_FIRST
    while anyio.current_time() < deadline:
        remaining = deadline - anyio.current_time()
        if await check():  # type: ignore[misc]
            return True
        await anyio.sleep(min(wait, max(0.0, remaining)))
        wait = min(wait * 2, RETRY_MAX)
    return False


Handler = Callable[[int, dict[str, str]], None]


class NotifyListener:
    """A datagram socket replicas send sd_notify messages to, each attributed to its pid.

    ``SO_PASSCRED`` makes the kernel attach the sender's pid to every
    datagram, so a replica cannot speak for another one. It lives in a
    private 0700 directory and is removed at close.
    """

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._dir = tempfile.mkdtemp(prefix="placevisor-notify-")
        self.path = os.path.join(self._dir, "notify.sock")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._sock.bind(self.path)
        os.chmod(self.path, 0o600)
        self._sock.setblocking(False)

    async def serve(self) -> None:
        """Receive until cancelled; malformed datagrams are ignored."""
        creds = socket.CMSG_SPACE(struct.calcsize("3i"))
        while True:
            try:
                data, ancillary, _, _ = self._sock.recvmsg(4096, creds)
            except BlockingIOError:
                await anyio.wait_readable(self._sock)
                continue
            except OSError:
                return
            pid = 0
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = struct.unpack("3i", payload[: struct.calcsize("3i")])[0]
            if pid:
                self._handler(pid, parse_notify(data))

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        with contextlib.suppress(OSError):
            os.rmdir(self._dir)


def parse_notify(data: bytes) -> dict[str, str]:
    """``KEY=VALUE`` lines of one sd_notify datagram (the last value of a key wins)."""
    fields: dict[str, str] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def parent_of(pid: int) -> int:
    """The parent pid of ``pid`` (0 when it is gone): to attribute a descendant's message."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    return int(stat.rsplit(b")", 1)[1].split()[1])
