"""``Type=notify``: what a systemd unit hears from ``serve`` on its NOTIFY_SOCKET.

The test plays systemd: it binds an AF_UNIX datagram socket, names it in the
supervisor's NOTIFY_SOCKET, and reads the supervisor's own notifications.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PY
from tests.serve_process import Serve

REPLICA = Path(__file__).with_name("_replica.py")


class Listener:
    """systemd's end: every datagram received, as text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[str] = []

    def until(self, line: str, timeout: float = 15) -> None:
        """Receive until a datagram carries ``line`` (one of its newline-separated fields)."""
        deadline = time.monotonic() + timeout
        while not any(line in m.splitlines() for m in self.messages):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {line!r} on NOTIFY_SOCKET in {timeout} s: "
                                     f"{self.messages}")
            self.sock.settimeout(left)  # blocks in recv: the kernel wakes us
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(tmp_path / "notify.sock")
    try:
        yield lst
    finally:
        lst.close()


def write_config(tmp: Path) -> Path:
    path = tmp / "unit.toml"
    argv = [PY, str(REPLICA), "notify-test"]
    path.write_text(
        f'[supervisor]\nshutdown_timeout = 3.0\ncolor = "never"\n\n'
        f'[[group]]\nname = "engine"\ncommand = {json.dumps(argv)}\nreplicas = 2\n'
    )
    return path


def test_ready_then_stopping(listener: Listener, tmp_path: Path) -> None:
    env = {**os.environ, "NOTIFY_SOCKET": str(listener.path)}
    serve = Serve(write_config(tmp_path), env=env)
    try:
        listener.until("READY=1")
        # READY=1 means every replica is running: both have reported by now or soon.
        serve.wait_for("REPLICA", count=2)
        assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for m in listener.messages), (
            f"a STATUS= line with the ready count: {listener.messages}"
        )
        assert not any("STOPPING=1" in m for m in listener.messages)
        serve.signal(signal.SIGTERM)
        listener.until("STOPPING=1")
        assert serve.finish() == 0, serve.err
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
            serve.finish()
    ready_at = next(i for i, m in enumerate(listener.messages) if "READY=1" in m.splitlines())
    stop_at = next(i for i, m in enumerate(listener.messages) if "STOPPING=1" in m.splitlines())
    assert ready_at < stop_at
    # No replica inherits the socket systemd gave the supervisor.
    reports = [json.loads(m) for m in re.findall(r"REPLICA (\{.*\})", serve.out)]
    assert len(reports) == 2
    assert all(r["notify_socket"] != str(listener.path) for r in reports), reports

