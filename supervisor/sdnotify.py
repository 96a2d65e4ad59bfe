"""The supervisor's own sd_notify messages to the service manager (systemd ``Type=notify``).

Only ``serve`` uses this; the library never talks to ``NOTIFY_SOCKET``. Sends
never block: a datagram the manager cannot take right now is dropped, as
libsystemd does with a full queue.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

#: Variables systemd gives the supervisor that must not reach a replica.
MANAGER_VARS = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
)


class Notifier:
    """Sends ``KEY=VALUE`` lines to ``$NOTIFY_SOCKET``; does nothing without one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # the abstract namespace
        self._address = address if address.startswith(("/", "\0")) else ""
        self._sock: socket.socket | None = None
        self.watchdog_interval = _watchdog(environ)
        self._last_status = ""

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def send(self, *lines: str) -> bool:
        if not self._address:
            return False
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT, self._address)
        except OSError:
            return False
        return True

    def status(self, text: str) -> None:
        """STATUS=, only when it changed."""
        if text != self._last_status:
            self._last_status = text
            self.send(f"STATUS={text}")

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _watchdog(environ: Mapping[str, str]) -> float:
    """Seconds between WATCHDOG=1 (half of WATCHDOG_USEC), 0 when not asked for us."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        return 0.0
    try:
        usec = int(environ.get("WATCHDOG_USEC", "0"))
    except ValueError:
        return 0.0
    return usec / 2e6 if usec > 0 else 0.0
