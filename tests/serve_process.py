"""Run ``python -m supervisor serve`` as a real subprocess and watch what it says.

The one ``serve`` helper of the suite: stdout and stderr are read by threads
(so a chatty serve never blocks on a full pipe unless a test asks for that
with ``stdout=``), waits are woken by each chunk read, and the JSON log on
stderr is parsed on demand by ``events``. Config files come from
``tests.helpers.toml_config``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.helpers import PY, REPO


class Serve:
    """A live ``serve`` process; its stdout/stderr collected by reader threads.

    ``stdout`` other than PIPE (a file, DEVNULL, a pipe's write end) is handed
    to serve as is and not read here. ``prefix`` runs serve under a wrapper
    (``unshare``, ``prlimit``); ``loop`` adds ``--loop``.
    """

    def __init__(
        self,
        config: Path,
        *args: str,
        loop: str | None = None,
        prefix: Sequence[str] = (),
        env: dict[str, str] | None = None,
        stdout: Any = subprocess.PIPE,
        start_new_session: bool = False,
    ) -> None:
        argv = [*prefix, PY, "-m", "supervisor", "serve", str(config), *args]
        if loop is not None:
            argv += ["--loop", loop]
        self.proc = subprocess.Popen(
            argv,
            stdout=stdout,
            stderr=subprocess.PIPE,
            env=env,  # as given: replicas see exactly this (serve finds us by cwd)
            cwd=REPO,
            start_new_session=start_new_session,
        )
        self._out = bytearray()
        self._err = bytearray()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        if self.proc.stdout is not None:
            self._threads.append(self._reader(self.proc.stdout.fileno(), self._out))
        assert self.proc.stderr is not None
        self._threads.append(self._reader(self.proc.stderr.fileno(), self._err))

    def _reader(self, fd: int, buf: bytearray) -> threading.Thread:
        def run() -> None:
            while True:
                chunk = os.read(fd, 65536)
                with self._cond:
                    buf.extend(chunk)
                    self._cond.notify_all()
                if not chunk:
                    return

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def out(self) -> str:
        with self._cond:
            return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        with self._cond:
            return self._err.decode(errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """The JSON log records on stderr (``log_format = "json"``), optionally one kind."""
        found = []
        with self._cond:
            lines = bytes(self._err).splitlines()
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

    def wait_for(
        self,
        target: str | Callable[[], bool],
        timeout: float = 15.0,
        what: str = "",
        *,
        stream: str = "out",
        count: int = 1,
    ) -> None:
        """Block until ``target`` appeared ``count`` times on ``stream`` (or is true).

        Woken by each chunk read (a callable is re-checked at least every 50 ms).
        """
        deadline = time.monotonic() + timeout
        buf = self._out if stream == "out" else self._err

        def met() -> bool:
            if callable(target):
                return target()
            return bytes(buf).count(target.encode()) >= count

        with self._cond:
            while not met():
                left = deadline - time.monotonic()
                if left <= 0 or not self._alive():
                    label = what or (repr(target) if isinstance(target, str) else "condition")
                    raise AssertionError(
                        f"{label} x{count} not seen in {timeout} s (stream {stream});\n"
                        f"stdout:\n{self._out.decode(errors='replace')[-4000:]}\n"
                        f"stderr:\n{self._err.decode(errors='replace')[-4000:]}"
                    )
                self._cond.wait(min(left, 0.05 if callable(target) else 0.5))

    def _alive(self) -> bool:
        return self.proc.poll() is None or any(t.is_alive() for t in self._threads)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 30.0) -> int:
        """Wait for serve's exit status; past ``timeout`` kill it and fail the test."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(
                f"serve did not exit in {timeout} s\nstderr:\n{self.err[-4000:]}"
            ) from None
        for t in self._threads:
            t.join(timeout)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.finish()

    def close(self) -> None:
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> Serve:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
        held = any(t.is_alive() for t in self._threads)
        self.close()
        if held:
            raise AssertionError("a descendant of serve still holds its output pipes")
