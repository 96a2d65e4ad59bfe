"""Signals for the CLI through a self-pipe, the same on asyncio, uvloop and trio.

A plain ``signal.signal`` handler writes the signal number into a pipe the
loop watches. Python runs such a handler once per delivery on every backend,
whereas uvloop's loop-level handlers can fire twice for one SIGTERM that
lands beside a SIGCHLD (a forced kill where a graceful stop was asked), and
refuse SIGCHLD altogether. Only the CLI uses this: a library installs no
handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Iterable
from types import FrameType
from typing import Any

import anyio


class SignalPipe:
    """Install handlers for ``signums``; ``async for signum in pipe`` receives them."""

    def __init__(self, signums: Iterable[int]) -> None:
        self._signums = tuple(signums)
        self._old: dict[int, Any] = {}
        self._r = self._w = -1

    def __enter__(self) -> SignalPipe:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        for signum in self._signums:
            self._old[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, old in self._old.items():
            signal.signal(signum, old)
        self._old.clear()
        os.close(self._r)
        os.close(self._w)

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._w, bytes((signum,)))

    async def __aiter__(self) -> AsyncIterator[int]:
        while True:
            try:
                data = os.read(self._r, 256)
            except BlockingIOError:
                await anyio.wait_readable(self._r)
                continue
            for signum in data:
                yield signum
