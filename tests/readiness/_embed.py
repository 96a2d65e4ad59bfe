"""An embedded Supervisor watched from the test: its log events, its replicas' lines, gates.

A *gate* is a FIFO a replica blocks on (``open(path).read()``) until the
test opens it for writing: the replica's next step (READY=1, a line, a
listening port) happens exactly when the test says, with no timing guess.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio

from supervisor import Config, OutputLine, Supervisor
from tests.helpers import eventually


class Recorder:
    """A structlog-like logger and an ``on_output`` callback: everything, timestamped."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.lines: list[tuple[float, OutputLine]] = []

    def _log(self, event: str, **fields: Any) -> None:
        self.events.append((time.monotonic(), event, fields))

    info = warning = error = debug = _log

    def on_output(self, rec: OutputLine) -> None:
        self.lines.append((time.monotonic(), rec))

    def named(self, event: str, replica: str | None = None) -> list[tuple[float, dict[str, Any]]]:
        return [
            (t, f)
            for t, e, f in self.events
            if e == event and (replica is None or f.get("replica") == replica)
        ]

    def first(self, event: str, replica: str) -> float:
        found = self.named(event, replica)
        assert found, f"no {event} for {replica}: {self.events}"
        return found[0][0]

    def said(self, text: str) -> bool:
        return any(text in rec.line.decode(errors="replace") for _, rec in self.lines)

    def line_at(self, text: str) -> float:
        for t, rec in self.lines:
            if text in rec.line.decode(errors="replace"):
                return t
        raise AssertionError(f"no line with {text!r}: {[r.line for _, r in self.lines]}")


def gate(tmp: Path, name: str = "gate") -> Path:
    path = tmp / name
    os.mkfifo(path)
    return path


def _try_open(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: nobody reads it yet
        return False
    os.close(fd)  # the reader's read() returns at EOF
    return True


async def release(path: Path, timeout: float = 15.0) -> None:
    """Open the gate once the replica waits at it (tried on short checkpoints)."""
    with anyio.fail_after(timeout):
        while not _try_open(path):
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def running(cfg: Config, rec: Recorder) -> AsyncIterator[Supervisor]:
    """``sup.run`` in a task group, not waiting for readiness; stopped at the end."""
    sup = Supervisor(cfg, logger=rec, on_output=rec.on_output)
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        await eventually(lambda: bool(sup.replicas), 10, "replicas added")
        try:
            yield sup
        finally:
            with anyio.CancelScope(shield=True):
                await sup.stop()


def state(sup: Supervisor, name: str) -> Any:
    return next(s for s in sup.status() if s.name == name)
