"""The control socket's listeners, inside the supervisor's own event loop.

Each connection is its own task; every send has a deadline and every
follower drops its oldest lines when its client is slow, so a stalled
client never slows the replicas or other clients. Nothing a client sends
can raise into the supervisor: protocol failures become 4xx replies and
anything unexpected is logged and ends only that connection.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket as socketlib
import stat
import struct
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup

from . import SocketInUseError
from .api import Follow, Reply, handle
from .http import Closed, Failure, ServerConnection

if TYPE_CHECKING:
    from ..engine import Supervisor

SEND_TIMEOUT = 10.0  # a reply not taken within this is abandoned (connection closed)
FOLLOW_SEND_TIMEOUT = 60.0  # a tail -f client may pause longer (its lines drop meanwhile)
IDLE_TIMEOUT = 60.0  # keep-alive connections with no request close after this
READ_CHUNK = 65536
ACCEPT_RETRY = 0.5  # after EMFILE and the like


class ControlServer:
    """What ``serve_control`` yields: where it listens."""

    def __init__(self, sup: Supervisor) -> None:
        self.sup = sup
        self.socket_path: str | None = None
        self.tcp_address: tuple[str, int] | None = None


def _claim_path(path: str) -> None:
    """Make room for a socket at ``path``: replace a stale one, refuse a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketInUseError(f"control socket {path}: exists and is not a socket; remove it")
    probe = socketlib.socket(socketlib.AF_UNIX, socketlib.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: its supervisor is gone
        return
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.ETIMEDOUT):
            raise SocketInUseError(f"control socket {path}: {exc.strerror}") from None
    finally:
        probe.close()
    raise SocketInUseError(
        f"control socket {path}: another supervisor is serving it; stop it or set "
        "[control] socket to another path"
    )


def _make_dir(path: str) -> None:
    """Create missing directories 0700 (an existing one is left as it is)."""
    directory = Path(path).parent
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.chmod(0o700)  # mkdir's mode is masked by the umask


async def _open_unix(path: str) -> SocketListener:
    """Bind under a temporary name, chmod 0600, then rename into place atomically."""
    await anyio.to_thread.run_sync(_make_dir, path)
    await anyio.to_thread.run_sync(_claim_path, path)
    tmp = f"{path}.{os.getpid()}.tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    listener = await anyio.create_unix_listener(tmp, mode=0o600)
    try:
        os.rename(tmp, path)
    except OSError:
        await listener.aclose()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return listener


def parse_listen(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9100"`` or ``"[::1]:9100"`` -> (host, port); ValueError otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(f"listen address {address!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def _peer_uid(stream: SocketStream) -> int | None:
    raw = stream.extra(SocketAttribute.raw_socket, None)
    if raw is None or raw.family != socketlib.AF_UNIX:
        return None
    creds = raw.getsockopt(socketlib.SOL_SOCKET, socketlib.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return int(uid)


@asynccontextmanager
async def serve_control(
    sup: Supervisor, *, socket: str | None = None, listen: str | None = None
) -> AsyncIterator[ControlServer]:
    """Serve the control API on ``socket`` (and read-only on TCP ``listen``) while open.

    Raises ``SocketInUseError`` when a live supervisor already serves
    ``socket``; the socket file is removed on exit.
    """
    server = ControlServer(sup)
    async with AsyncExitStack() as stack:
        # Listeners open before the task group, so a refusal raises as itself.
        listeners: list[tuple[SocketListener, bool]] = []
        if socket:
            unix = await _open_unix(socket)
            stack.push_async_callback(_remove_socket, socket, os.stat(socket).st_ino)
            stack.push_async_callback(unix.aclose)
            server.socket_path = socket
            listeners.append((unix, False))
        if listen:
            host, port = parse_listen(listen)
            try:
                tcp = await anyio.create_tcp_listener(local_host=host, local_port=port)
            except OSError as exc:
                raise SocketInUseError(
                    f"control.listen {listen!r}: cannot listen: {exc.strerror or exc}"
                ) from None
            stack.push_async_callback(tcp.aclose)
            for one in tcp.listeners:
                assert isinstance(one, SocketListener)
                bound = one.extra(SocketAttribute.local_address)
                server.tcp_address = (str(bound[0]), int(bound[1]))
                listeners.append((one, True))
        tg = await stack.enter_async_context(anyio.create_task_group())
        stack.callback(tg.cancel_scope.cancel)  # runs first on exit
        for listener, read_only in listeners:
            tg.start_soon(_accept, server, listener, tg, read_only)
        sup.log.info(
            "control_listening",
            socket=server.socket_path,
            listen=f"{server.tcp_address[0]}:{server.tcp_address[1]}"
            if server.tcp_address
            else None,
        )
        yield server


async def _remove_socket(path: str, inode: int) -> None:
    """Remove our socket file, unless another process replaced it meanwhile."""
    with contextlib.suppress(FileNotFoundError):
        if os.stat(path).st_ino == inode:
            os.unlink(path)


async def _accept(server: ControlServer, listener: SocketListener, tg: TaskGroup, ro: bool) -> None:
    while True:
        try:
            stream = await listener.accept()
        except OSError as exc:  # out of fds, say: keep the supervisor, retry soon
            server.sup.log.warning("control_accept_failed", error=exc.strerror or str(exc))
            await anyio.sleep(ACCEPT_RETRY)
            continue
        tg.start_soon(_connection, server, stream, ro)


_GONE = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


async def _connection(server: ControlServer, stream: SocketStream, read_only: bool) -> None:
    try:
        async with stream:
            await _serve_http(server, stream, read_only)
    except (*_GONE, TimeoutError):
        pass  # the client went away or stalled: only its connection ends
    except Exception as exc:  # a bug must end one connection, never the supervisor
        server.sup.log.error("control_request_failed", error=repr(exc))


async def _receive(stream: SocketStream) -> bytes:
    try:
        with anyio.fail_after(IDLE_TIMEOUT):
            return await stream.receive(READ_CHUNK)
    except anyio.EndOfStream:
        return b""


async def _send(stream: SocketStream, data: bytes, timeout: float = SEND_TIMEOUT) -> None:
    if data:
        with anyio.fail_after(timeout):
            await stream.send(data)


async def _serve_http(server: ControlServer, stream: SocketStream, read_only: bool) -> None:
    uid = _peer_uid(stream)
    allowed = uid is None or uid in (0, os.geteuid())
    conn = ServerConnection()
    while True:
        event = conn.feed(None)
        while event is None:
            event = conn.feed(await _receive(stream))
        if isinstance(event, Closed):
            return
        if isinstance(event, Failure):
            await _send(
                stream, conn.respond_json(event.status, {"error": event.message}, close=True)
            )
            return
        if not allowed:
            server.sup.log.warning("control_client_refused", uid=uid)
            body = {"error": f"uid {uid} may not use this control socket"}
            await _send(stream, conn.respond_json(403, body, close=True))
            return
        result = await handle(server.sup, event, read_only=read_only)
        if isinstance(result, Follow):
            await _follow(server, stream, conn, result)
            return
        assert isinstance(result, Reply)
        await _send(stream, conn.respond(result.status, result.body, result.content_type))
        if not conn.next_cycle():
            return


async def _follow(
    server: ControlServer, stream: SocketStream, conn: ServerConnection, follow: Follow
) -> None:
    """Stream the initial lines, then new ones, until the client or the server ends."""
    with server.sup.history.follow(follow.replicas) as follower:
        await _send(
            stream,
            conn.start_stream(200, "text/plain; charset=utf-8") + conn.stream_data(follow.initial),
        )
        async with anyio.create_task_group() as tg:

            async def watch_peer() -> None:
                with contextlib.suppress(*_GONE):
                    while await stream.receive():
                        pass  # nothing more is expected; EOF means the client left
                tg.cancel_scope.cancel()

            tg.start_soon(watch_peer)
            while data := await follower.read():
                await _send(stream, conn.stream_data(data), FOLLOW_SEND_TIMEOUT)
            await _send(stream, conn.end_stream())
            tg.cancel_scope.cancel()
