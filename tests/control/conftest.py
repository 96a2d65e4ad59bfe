"""A supervisor with its control socket, served in a thread of the test process.

The test body stays synchronous and drives real clients (``ctl`` and curl
subprocesses, raw sockets) against a real ``Supervisor`` with real replicas.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import Config, Supervisor
from supervisor.control.server import serve_control
from tests.helpers import PY, REPO


class Served:
    """A Supervisor + serve_control running in its own thread and event loop."""

    def __init__(self, cfg: Config, socket: str, listen: str | None = None) -> None:
        self.cfg = cfg
        self.socket = socket
        self.listen = listen
        self.sup: Any = None
        self.tcp_port: int | None = None
        self._ready = threading.Event()
        self._stop: Any = None
        self._token: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            anyio.run(self._run)
        except BaseException as exc:
            self.error = exc
            self._ready.set()

    async def _run(self) -> None:
        self._token = anyio.lowlevel.current_token()
        self._stop = anyio.Event()
        devnull = open(os.devnull, "wb")  # noqa: SIM115 - closed below
        try:
            sup = Supervisor(self.cfg, stdout=devnull, stderr=devnull)
            async with (
                serve_control(sup, socket=self.socket, listen=self.listen) as server,
                sup,
            ):
                self.sup = sup
                self.tcp_port = server.tcp_address[1] if server.tcp_address else None
                self._ready.set()
                with anyio.move_on_after(120):
                    await self._stop.wait()
        finally:
            devnull.close()

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn`` in the server's loop (sync functions only) and return its result."""
        return anyio.from_thread.run_sync(fn, *args, token=self._token)

    def status(self) -> dict[str, Any]:
        return {s.name: s for s in self.call(self.sup.status)}

    def __enter__(self) -> Served:
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            raise self.error
        assert self.sup is not None, "the supervisor did not start in 30 s"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None and self._thread.is_alive():
            anyio.from_thread.run_sync(self._stop.set, token=self._token)
        self._thread.join(30)
        assert not self._thread.is_alive(), "the supervisor did not stop in 30 s"


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp paths can be long.
    short = Path(f"/tmp/pv-ctl-{os.getpid()}-{abs(hash(tmp_path)) % 10**8}")
    short.mkdir(mode=0o700)
    yield str(short / "ctl.sock")
    subprocess.run(["rm", "-rf", str(short)], check=False)


@pytest.fixture
def served(sock_path: str) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(cfg: Config, listen: str | None = None) -> Served:
        s = Served(cfg, sock_path, listen)
        s.__enter__()
        started.append(s)
        return s

    yield start
    for s in started:
        s.__exit__(None, None, None)


def ctl(socket: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run the real ``python -m supervisor ctl`` client."""
    return subprocess.run(
        [PY, "-m", "supervisor", "ctl", "--socket", socket, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "NO_COLOR": "1"},
    )


def curl(socket: str, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Real curl over the unix socket; stdout ends with the HTTP status on its own line."""
    return subprocess.run(
        [
            "curl",
            "-sS",
            "--unix-socket",
            socket,
            "-w",
            "\n%{http_code}",
            *args,
            f"http://localhost{path}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
