"""The control socket: HTTP/1.1 + JSON inside the supervisor's loop, and its client ``ctl``.

Nothing heavy is imported here, so ``ctl status`` starts fast; the server
side lives in ``server`` (anyio) and ``metrics`` (prometheus_client).
"""

from __future__ import annotations

from ..errors import SupervisorError


class SocketInUseError(SupervisorError):
    """A live supervisor already serves that control socket path."""


__all__ = ["SocketInUseError"]
