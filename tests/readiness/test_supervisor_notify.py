"""``serve`` under systemd (Type=notify): what it tells the NOTIFY_SOCKET the test binds.

READY=1 waits for the slowest replica's readiness, not its start; a SIGHUP
reload is framed by RELOADING=1 and READY=1, and a changed group is rolled
one replica at a time inside that frame.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PY, toml_config, wait_until
from tests.serve_process import Serve

SLOW = """
import sys, time
print("slow loading", flush=True)
open(sys.argv[1]).read()
print("slow ready", flush=True)
time.sleep(120)
"""

FAST = """
import os, time
print("fast ready", os.environ.get("GEN", ""), flush=True)
time.sleep(120)
"""


class Systemd:
    """The service manager's end of NOTIFY_SOCKET: every datagram, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[list[str]] = []

    def until(self, line: str, count: int = 1, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while sum(line in m for m in self.messages) < count:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{line!r} x{count} not received: {self.messages}")
            self.sock.settimeout(left)  # the kernel wakes us on the next datagram
            try:
                self.messages.append(self.sock.recv(4096).decode().splitlines())
            except TimeoutError:
                continue

    def index(self, line: str, nth: int = 1) -> int:
        seen = 0
        for i, m in enumerate(self.messages):
            seen += line in m
            if seen == nth:
                return i
        raise AssertionError(f"{line!r} x{nth} not in {self.messages}")


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    manager = Systemd(tmp_path / "notify.sock")
    try:
        yield manager
    finally:
        manager.sock.close()


def open_gate(path: Path) -> None:
    def opened() -> bool:
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            return False
        return True

    wait_until(opened, 15, "the slow replica at its gate")


def write(tmp: Path, gate: Path, gen: str) -> Path:
    return toml_config(
        tmp,
        [
            {"name": "slow", "command": [PY, "-c", SLOW, str(gate)], "bind": False,
             "ready": "line:^slow ready$"},
            {"name": "fast", "command": [PY, "-c", FAST], "replicas": 2, "bind": False,
             "ready": "line:^fast ready", "env": {"GEN": gen}},
        ],
        extra='[control]\nsocket = ""\n',
    )  # fmt: skip


@pytest.mark.slow
def test_ready_after_every_replica_then_reloading_around_sighup(
    systemd: Systemd, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    cfg = write(tmp_path, gate, "one")
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path)}
    with Serve(cfg, env=env) as serve:
        systemd.until("STATUS=2 of 3 replicas ready")
        assert not any("READY=1" in m for m in systemd.messages), systemd.messages
        open_gate(gate)
        systemd.until("READY=1")
        assert systemd.index("STATUS=3 of 3 replicas ready") <= systemd.index("READY=1") + 1
        # Their own lines may be forwarded just after READY=1 (a datagram overtakes a pipe).
        serve.wait_for("fast ready one", count=2)
        assert serve.out.count("fast ready one") == 2

        write(tmp_path, gate, "two")  # the fast group changed: a reload rolls it
        serve.signal(signal.SIGHUP)
        systemd.until("RELOADING=1")
        systemd.until("READY=1", count=2)
        reloading = systemd.messages[systemd.index("RELOADING=1")]
        assert any(line.startswith("MONOTONIC_USEC=") for line in reloading), reloading
        assert systemd.index("RELOADING=1") < systemd.index("READY=1", 2)
        serve.wait_for("fast ready two", count=2)
        assert serve.out.count("fast ready two") == 2
        rolled = [
            ("replica_exited", "fast_0"),
            ("replica_ready", "fast_0"),
            ("replica_exited", "fast_1"),
            ("replica_ready", "fast_1"),
        ]

        def order() -> list[tuple[str, str]]:
            return [
                (e["event"], e["replica"])
                for e in serve.events()
                if e.get("event") in ("replica_exited", "replica_ready")
                and e.get("replica", "").startswith("fast")
            ][-4:]

        # The log line may reach us just after the READY=1 datagram: wait for it.
        serve.wait_for(lambda: order() == rolled, 10, "the roll in the log", stream="err")
        assert order() == rolled, order()
        assert not [
            e
            for e in serve.events()
            if e.get("replica") == "slow_0" and e.get("event") == "replica_exited"
        ], "the unchanged group kept running"

        serve.signal(signal.SIGTERM)
        systemd.until("STOPPING=1")
        assert serve.finish() == 0, serve.err[-3000:]
