"""Shared listening sockets: bound once by the supervisor, handed to replicas as fds 3, 4, ...

The sockets stay open across restarts, rolling restarts and reloads, so a
connection made while a replica restarts waits in the backlog instead of
being refused. A replica receives them with the systemd convention
(``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES``) through a small exec
shim that moves them to 3, 4, ... and sets ``LISTEN_PID`` to its own pid,
which is the replica's pid after the exec.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from .config import Config, ConfigError, SocketConfig

FIRST_FD = 3

_SHIM = (
    "import fcntl,os,sys;"
    "n=int(sys.argv[1]);src=[int(f) for f in sys.argv[2:2+n]];argv=sys.argv[2+n:];"
    "tmp=[fcntl.fcntl(f,fcntl.F_DUPFD,3+n) for f in src];"
    "[os.close(f) for f in src if f>=3+n];"
    "[os.dup2(t,3+i) for i,t in enumerate(tmp)];"
    "[os.close(t) for t in tmp];"
    "env=dict(os.environ);env['LISTEN_PID']=str(os.getpid());"
    "os.execvpe(argv[0],argv,env)"
)


def shim_prefix(fds: Sequence[int]) -> list[str]:
    """argv that moves ``fds`` to 3, 4, ... and sets LISTEN_PID before exec."""
    return [sys.executable, "-S", "-I", "-c", _SHIM, str(len(fds)), *map(str, fds)]


def listen_env(names: Sequence[str]) -> dict[str, str]:
    """What a replica given these sockets finds in its environment (LISTEN_PID: the shim)."""
    if not names:
        return {}
    return {"LISTEN_FDS": str(len(names)), "LISTEN_FDNAMES": ":".join(names)}


def bind(spec: SocketConfig, base_dir: Path, source: str) -> socket.socket:
    """Bind and listen; ConfigError (one line) naming the socket and address on failure."""
    address = spec.address.under(base_dir)
    try:
        if address.family == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _remove_stale(address.path)
            sock.bind(address.path)
        else:
            family = socket.AF_INET6 if address.family == "inet6" else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if spec.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            sock.bind((address.host, address.port))
            # Inherited by accepted connections: servers that take the fd as an
            # opaque socket (uvicorn --fd) would otherwise wait on Nagle.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.listen(spec.backlog)
    except OSError as exc:
        with contextlib.suppress(NameError):
            sock.close()
        raise ConfigError(
            f"{source}: socket {spec.name!r}: cannot listen on {spec.listen}: {exc.strerror or exc}"
        ) from None
    sock.set_inheritable(False)
    return sock


def _remove_stale(path: str) -> None:
    """A socket file nobody listens on is left over from an earlier run: replace it."""
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
    except OSError:
        pass
    finally:
        probe.close()


class SocketSet:
    """The bound sockets of a run, by name; rebinds only what a reload changed."""

    def __init__(self) -> None:
        self._socks: dict[str, tuple[SocketConfig, socket.socket]] = {}
        self._base = Path(".")

    def open(self, config: Config) -> None:
        """Bind the config's sockets; keep unchanged ones; all or nothing."""
        fresh: dict[str, tuple[SocketConfig, socket.socket]] = {}
        self._base = config.base_dir
        try:
            for spec in config.sockets:
                kept = self._socks.get(spec.name)
                if kept is not None and kept[0] == spec:
                    fresh[spec.name] = kept
                else:
                    fresh[spec.name] = (spec, bind(spec, config.base_dir, config.source))
        except ConfigError:
            for name, (_, sock) in fresh.items():
                if self._socks.get(name, (None, None))[1] is not sock:
                    sock.close()
            raise
        for name, (_, sock) in self._socks.items():
            if fresh.get(name, (None, None))[1] is not sock:
                sock.close()
        self._socks = fresh

    def fds(self, names: Iterable[str]) -> tuple[int, ...]:
        return tuple(self._socks[name][1].fileno() for name in names)

    def close(self) -> None:
        for spec, sock in self._socks.values():
            sock.close()
            address = spec.address.under(self._base)
            if address.family == "unix":
                with contextlib.suppress(OSError):
                    os.unlink(address.path)
        self._socks.clear()
