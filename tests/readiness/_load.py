"""A real load generator (apt's ``wrk``) against the shared socket, and what it saw.

Every request opens a new connection (``Connection: close``): a refused
connection shows as a connect error, and a replica that drops a connection
it accepted shows as a read error. A small Lua script counts which replica
answered each request (the app puts its replica name in the body).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

LUA = """
wrk.headers["Connection"] = "close"
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) served = {} end
function response(status, headers, body)
  local name = string.match(body, '"replica": "([^"]+)"') or "?"
  served[name] = (served[name] or 0) + 1
end
function done(summary, latency, requests)
  for _, t in ipairs(threads) do
    for name, n in pairs(t:get("served")) do
      io.write(string.format("SERVED %s %d\\n", name, n))
    end
  end
  io.write(string.format("P50_US %d\\n", latency:percentile(50)))
  io.write(string.format("P99_US %d\\n", latency:percentile(99)))
end
"""

_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_TOTAL = re.compile(r"(\d+) requests in ")


def need_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        pytest.skip("wrk is not installed (apt install wrk; it is in .ci/apt-packages)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class WrkResult:
    text: str
    requests: int = 0
    connect: int = 0
    read: int = 0
    write: int = 0
    timeout: int = 0
    non_2xx: int = 0
    p50_us: int = 0
    p99_us: int = 0
    served: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        match = re.search(r"Requests/sec:\s+([\d.]+)", self.text)
        return float(match.group(1)) if match else 0.0

    def summary(self) -> str:
        return (
            f"{self.requests} requests, connect {self.connect}, read {self.read}, "
            f"write {self.write}, timeout {self.timeout}, non-2xx {self.non_2xx}, "
            f"p99 {self.p99_us / 1000:.1f} ms, served {self.served}"
        )


def parse_wrk(text: str) -> WrkResult:
    """wrk's own summary lines (absent when a count is 0) and our script's lines."""
    result = WrkResult(text=text)
    if m := _ERRORS.search(text):
        result.connect, result.read, result.write, result.timeout = map(int, m.groups())
    if m := _NON2XX.search(text):
        result.non_2xx = int(m.group(1))
    if m := _TOTAL.search(text):
        result.requests = int(m.group(1))
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "SERVED":
            result.served[parts[1]] = result.served.get(parts[1], 0) + int(parts[2])
        elif len(parts) == 2 and parts[0] in ("P50_US", "P99_US"):
            setattr(result, parts[0].lower(), int(parts[1]))
    return result


class Wrk:
    """``wrk`` running in the background for ``seconds`` against ``url``."""

    def __init__(
        self, url: str, seconds: float, tmp: Path, *, connections: int = 16, threads: int = 2
    ) -> None:
        script = tmp / "count.lua"
        script.write_text(LUA)
        self.proc = subprocess.Popen(
            [
                need_wrk(),
                f"-t{threads}",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "2s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def wait_connected(self, port: int, timeout: float = 30.0) -> None:
        """Until wrk holds a socket: its only sockets are its connections to ``port``.

        (Its fd table, not ``net_connections``: with a new connection per request
        each lives a millisecond, and matching /proc/net/tcp to fds can miss
        them for the whole run.)
        """
        fd_dir = f"/proc/{self.proc.pid}/fd"

        def has_socket() -> bool:
            for fd in os.listdir(fd_dir):
                with contextlib.suppress(OSError):
                    if os.readlink(f"{fd_dir}/{fd}").startswith("socket:"):
                        return True
            return False

        deadline = time.monotonic() + timeout
        while not has_socket():
            if self.proc.poll() is not None:
                out, _ = self.proc.communicate()
                raise AssertionError(f"wrk ended before it connected to port {port}: {out}")
            if time.monotonic() > deadline:
                raise AssertionError(f"wrk opened no connection to port {port} in {timeout} s")
            time.sleep(0.01)

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def result(self, timeout: float = 60.0) -> WrkResult:
        out, _ = self.proc.communicate(timeout=timeout)
        assert self.proc.returncode == 0, out
        return parse_wrk(out)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
