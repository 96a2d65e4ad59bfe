"""Run ``python -m supervisor serve`` as a real subprocess and watch its output."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.helpers import PY, REPO


class Serve:
    """A live ``serve`` process; its stdout/stderr collected by reader threads."""

    def __init__(self, config: Path, *args: str, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ if env is None else env)
        full_env.setdefault("PYTHONPATH", str(REPO))
        self.proc = subprocess.Popen(
            [PY, "-m", "supervisor", "serve", str(config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            cwd=REPO,
        )
        self._out = bytearray()
        self._err = bytearray()
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _read(self, pipe: object, buf: bytearray) -> None:
        assert pipe is not None
        while True:
            chunk = os.read(pipe.fileno(), 65536)  # type: ignore[attr-defined]
            with self._cond:
                buf.extend(chunk)
                self._cond.notify_all()
            if not chunk:
                return

    @property
    def out(self) -> str:
        with self._cond:
            return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        with self._cond:
            return self._err.decode(errors="replace")

    def wait_for(
        self, text: str, *, stream: str = "out", count: int = 1, timeout: float = 15
    ) -> None:
        """Block until ``text`` appeared ``count`` times, woken by each chunk read."""
        deadline = time.monotonic() + timeout
        buf = self._out if stream == "out" else self._err
        with self._cond:
            while bytes(buf).count(text.encode()) < count:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._alive()):
                    raise AssertionError(
                        f"{text!r} x{count} not seen on {stream} in {timeout} s;\n"
                        f"stdout:\n{self._out.decode(errors='replace')}\n"
                        f"stderr:\n{self._err.decode(errors='replace')}"
                    )
                self._cond.wait(min(left, 0.5))

    def _alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float = 20) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        for t in self._threads:
            t.join(timeout)
        return rc
