"""Writes to streams the supervisor does not own, off the event loop.

A reader of our stdout may stall (a paused pager, a stuck log shipper). A
blocking write in the loop would then freeze everything, signals included.
Each target gets one writer thread fed from a byte-bounded queue: the loop
hands over whole blocks and waits only while the queue is full, which is the
backpressure that slows the replicas through their pipes while they run.
At the stop deadline the writer is abandoned: what is still queued is
dropped and counted, and no waiter stays blocked.
"""

from __future__ import annotations

import collections
import contextlib
import os
import threading
import time
from collections.abc import Callable

import anyio

#: Bytes queued before ``write`` waits for the thread (a few big blocks).
HIGH_WATER = 1024 * 1024

Sink = Callable[[bytes], None]


class ThreadedWriter:
    """One thread writing blocks in order to ``sink`` (a blocking call)."""

    def __init__(
        self,
        sink: Sink,
        *,
        name: str,
        on_error: Callable[[str], None],
        try_now: Callable[[bytes], int] | None = None,
    ) -> None:
        self._sink = sink
        self._try_now = try_now
        self._on_error = on_error
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queue: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._closed = False
        self._abandoned = False
        self._broken = False
        self.dropped = 0
        self._progress = time.monotonic()  # the last write done, or the queue's last start
        # The thread wakes the loop through a pipe when room frees up: the same
        # on asyncio, uvloop and trio, and no wakeup while nobody waits.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._waiting = False
        self._flush_waiting = False
        self._watching: anyio.Event | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def write(self, data: bytes) -> None:
        """Queue ``data``; wait while the queue is over its bound (not after abandon)."""
        while True:
            with self._lock:
                if self._abandoned or self._broken:
                    self.dropped += len(data)
                    return
                if self._queued < HIGH_WATER:
                    self._enqueue(data)
                    return
                self._waiting = True
            await self._wait_room()

    async def _wait_room(self) -> None:
        """One task watches the wake pipe (a fd takes one reader); the rest wait on it."""
        if self._watching is not None:
            await self._watching.wait()
            return
        self._watching = anyio.Event()
        try:
            await anyio.wait_readable(self._wake_r)
            with contextlib.suppress(BlockingIOError):
                os.read(self._wake_r, 4096)
        finally:
            done, self._watching = self._watching, None
            done.set()

    async def drain(self) -> None:
        """Wait until everything queued so far was written (or dropped)."""
        while True:
            with self._lock:
                if self._queued == 0 or self._abandoned or self._broken:
                    return
                self._waiting = True
                self._flush_waiting = True
            await self._wait_room()

    def write_nowait(self, data: bytes) -> None:
        """Queue without waiting (the supervisor's own log lines, a few hundred bytes).

        With nothing queued, ``try_now`` may write it at once when that cannot
        block: the line then leaves in order with what the loop does next
        (a READY=1 datagram, say), not a thread switch later.
        """
        with self._lock:
            if self._abandoned or self._broken or self._queued >= 4 * HIGH_WATER:
                self.dropped += len(data)
                return
            if not self._queued and self._try_now is not None:
                # On an error the thread's own write meets it again and reports it.
                with contextlib.suppress(OSError):
                    data = data[self._try_now(data) :]
                if not data:
                    return
            self._enqueue(data)

    def _enqueue(self, data: bytes) -> None:
        """Hand ``data`` to the thread (the lock is held)."""
        if not self._queued:
            self._progress = time.monotonic()
        self._queue.append(data)
        self._queued += len(data)
        self._idle.clear()
        self._ready.notify()

    def abandon(self) -> int:
        """Drop what is queued, refuse what follows, release every waiter; bytes dropped."""
        with self._lock:
            if not self._abandoned:
                self._abandoned = True
                self.dropped += self._queued
                self._queue.clear()
                self._queued = 0
                self._wake()
            return self.dropped

    def flush(self, timeout: float) -> bool:
        """Block (outside any loop) until the queue is written; False on timeout."""
        return self._idle.wait(timeout)

    def stalled(self, age: float = 0.2) -> bool:
        """Output is queued and nothing was written for ``age`` seconds."""
        with self._lock:
            return self._queued > 0 and time.monotonic() - self._progress > age

    def _wake(self) -> None:
        if self._waiting:
            self._waiting = False
            with contextlib.suppress(BlockingIOError):  # a wakeup is already pending
                os.write(self._wake_w, b"x")

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue:
                    self._idle.set()
                    if self._closed:
                        return
                    self._ready.wait()
                data = self._queue.popleft()
            try:
                if not self._abandoned:
                    self._sink(data)
            except (OSError, ValueError) as exc:
                with self._lock:
                    self._broken = True
                    self.dropped += len(data) + self._queued
                    self._queue.clear()
                    self._queued = 0
                    self._wake()
                self._on_error(str(exc) or type(exc).__name__)
                continue
            with self._lock:
                self._progress = time.monotonic()
                if not self._abandoned:
                    self._queued -= len(data)
                if self._queued == 0 or (self._queued < HIGH_WATER and not self._flush_waiting):
                    self._flush_waiting = False
                    self._wake()

    def close(self, timeout: float = 1.0) -> None:
        """End the thread once the queue is empty, then release the wake pipe.

        A thread stuck in a write to a stalled reader is left behind (it is a
        daemon) with its two pipe fds, rather than blocking the caller.
        """
        with self._lock:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout)
        if not self._thread.is_alive():
            os.close(self._wake_r)
            os.close(self._wake_w)
