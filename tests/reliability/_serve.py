"""Run ``python -m supervisor serve`` as a real subprocess and read what it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers import REPO, wait_until

PY = sys.executable


def toml_config(
    tmp: Path,
    groups: Sequence[dict[str, Any]],
    *,
    shutdown_timeout: float = 5.0,
    extra: str = "",
) -> Path:
    """Write a config with JSON-encoded values (valid TOML for strings, lists, numbers)."""
    parts = [
        "[supervisor]",
        f"shutdown_timeout = {shutdown_timeout}",
        'log_format = "json"',
        'color = "never"',
        extra,
    ]
    for g in groups:
        parts.append("[[group]]")
        for key, value in g.items():
            if isinstance(value, dict):
                inner = ", ".join(f"{k} = {json.dumps(v)}" for k, v in value.items())
                parts.append(f"{key} = {{ {inner} }}")
            else:
                parts.append(f"{key} = {json.dumps(value)}")
    path = tmp / "serve.toml"
    path.write_text("\n".join(parts) + "\n")
    return path


def script(tmp: Path, name: str, code: str) -> str:
    path = tmp / name
    path.write_text(code)
    return str(path)


class Serve:
    """A running ``serve``: stdout and stderr collected by threads, events parsed."""

    def __init__(
        self,
        config: Path,
        *,
        prefix: Sequence[str] = (),
        loop: str = "auto",
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.PIPE,
        start_new_session: bool = False,
    ) -> None:
        argv = [*prefix, PY, "-m", "supervisor", "serve", str(config), "--loop", loop]
        self.proc = subprocess.Popen(
            argv,
            cwd=REPO,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=start_new_session,
        )
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self._lock = threading.Lock()
        self._threads = []
        if self.proc.stdout is not None:
            self._threads.append(self._reader(self.proc.stdout, self.out))
        assert self.proc.stderr is not None
        self._threads.append(self._reader(self.proc.stderr, self.err))

    def _reader(self, stream: Any, into: list[bytes]) -> threading.Thread:
        def run() -> None:
            for line in stream:
                with self._lock:
                    into.append(line)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout_text(self) -> str:
        with self._lock:
            return b"".join(self.out).decode(errors="replace")

    def stderr_text(self) -> str:
        with self._lock:
            return b"".join(self.err).decode(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        with self._lock:
            lines = list(self.err)
        for line in lines:
            if not line.startswith(b"{"):
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if name is None or ev.get("event") == name:
                found.append(ev)
        return found

    def wait_for(self, cond: Callable[[], bool], timeout: float = 15.0, what: str = "") -> None:
        try:
            wait_until(cond, timeout, what)
        except AssertionError:
            raise AssertionError(
                f"{what}: timed out\nstdout:\n{self.stdout_text()}\nstderr:\n{self.stderr_text()}"
            ) from None

    def wait(self, timeout: float = 30.0) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"serve did not exit in {timeout} s\nstderr:\n{self.stderr_text()}"
            ) from None
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        if any(t.is_alive() for t in self._threads):
            raise AssertionError("a descendant of serve still holds its output pipes")
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
