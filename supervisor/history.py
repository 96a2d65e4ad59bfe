"""The last output of each replica, and live subscriptions to new output.

``record`` sits on the forwarding hot path (millions of lines a second), so
it stores whole blocks of already prefixed lines and never loops per line in
Python: each replica keeps a ring of blocks bounded by bytes, and lines are
split out only when someone reads them (``last``, a ``Follower``). A
follower's queue is bounded by lines; when its reader falls behind, the
oldest lines are dropped and a marker says how many, so a client that never
reads costs ``record`` one bounded append, never a wait.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import anyio

DEFAULT_RING_BYTES = 64 * 1024
DEFAULT_FOLLOW_LINES = 1000


def dropped_marker(n: int) -> bytes:
    """The line a follower reads in place of ``n`` lines it was too slow for."""
    return f"... {n} lines dropped ...\n".encode()


def _tail_lines(block: bytes, n: int) -> bytes:
    """The last ``n`` complete lines of ``block`` (which ends in a newline)."""
    if n <= 0:
        return b""
    parts = block.rsplit(b"\n", n + 1)
    if len(parts) <= n + 1:  # the block holds n lines or fewer
        return block
    return block[len(parts[0]) + 1 :]


class _Ring:
    """One replica's recent blocks, oldest first, bounded by bytes."""

    __slots__ = ("blocks", "limit", "size")

    def __init__(self, limit: int) -> None:
        self.blocks: deque[tuple[int, bytes]] = deque()
        self.size = 0
        self.limit = limit

    def add(self, seq: int, block: bytes) -> None:
        if len(block) > self.limit:  # keep the newest whole lines that fit
            cut = block.find(b"\n", len(block) - self.limit - 1)
            block = block[cut + 1 :] if cut >= 0 else b""
            if not block:
                return
        self.blocks.append((seq, block))
        self.size += len(block)
        while self.size > self.limit:
            _, old = self.blocks.popleft()
            self.size -= len(old)


class Follower:
    """New lines of some replicas, as they are recorded, until ``close()``.

    ``async for line in follower`` yields lines; ``await follower.read()``
    returns everything queued at once (what a socket writer wants).
    """

    def __init__(self, history: OutputHistory, replicas: Iterable[str], max_lines: int) -> None:
        self._history = history
        self.replicas = tuple(dict.fromkeys(replicas))
        self.max_lines = max(1, max_lines)
        self._queue: deque[list[object]] = deque()  # [block, line count]
        self._lines = 0
        self._dropped = 0
        self._closed = False
        self._event: anyio.Event | None = None
        self._pending: deque[bytes] = deque()

    # -- called by OutputHistory.record (hot path: no await, bounded work) --
    def _push(self, block: bytes) -> None:
        count = block.count(b"\n")
        self._queue.append([block, count])
        self._lines += count
        excess = self._lines - self.max_lines
        while excess > 0:
            head = self._queue[0]
            head_lines = head[1]
            assert isinstance(head_lines, int)
            if head_lines <= excess:
                self._queue.popleft()
                dropped = head_lines
            else:
                data = head[0]
                assert isinstance(data, bytes)
                head[0] = data.split(b"\n", excess)[-1]
                head[1] = head_lines - excess
                dropped = excess
            self._dropped += dropped
            self._lines -= dropped
            excess -= dropped
        self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    # -- reader side ------------------------------------------------------
    @property
    def dropped(self) -> int:
        """Lines dropped so far and not yet reported by a marker."""
        return self._dropped

    def _take(self) -> bytes:
        parts: list[bytes] = []
        if self._dropped:
            parts.append(dropped_marker(self._dropped))
            self._dropped = 0
        while self._queue:
            block = self._queue.popleft()[0]
            assert isinstance(block, bytes)
            parts.append(block)
        self._lines = 0
        return b"".join(parts)

    async def read(self) -> bytes:
        """Wait for new lines and return all that are queued; b"" once closed."""
        import anyio

        while not self._queue and not self._dropped:
            if self._closed:
                return b""
            self._event = anyio.Event()
            await self._event.wait()
            self._event = None
        return self._take()

    def __aiter__(self) -> Follower:
        return self

    async def __anext__(self) -> bytes:
        if not self._pending:
            data = await self.read()
            if not data:
                raise StopAsyncIteration
            self._pending.extend(data.splitlines(keepends=True))
        return self._pending.popleft()

    def close(self) -> None:
        """Unsubscribe; a pending ``read`` returns what is queued, then b""."""
        if not self._closed:
            self._closed = True
            self._history._unsubscribe(self)
            self._wake()

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class OutputHistory:
    """Recent output per replica, plus followers; pure memory, no I/O."""

    def __init__(self, ring_bytes: int = DEFAULT_RING_BYTES) -> None:
        self.ring_bytes = ring_bytes
        self._rings: dict[str, _Ring] = {}
        self._followers: dict[str, list[Follower]] = {}
        self._seq = itertools.count()

    def record(self, replica: str, stream: str, block: bytes) -> None:
        """Keep ``block`` (complete, prefixed lines) and hand it to followers.

        ``stream`` ("stdout"/"stderr") is accepted for symmetry with the
        forwarders; the history keeps both streams interleaved as they came.
        """
        if not block:
            return
        ring = self._rings.get(replica)
        if ring is None:
            ring = self._rings[replica] = _Ring(self.ring_bytes)
        ring.add(next(self._seq), block)
        followers = self._followers.get(replica)
        if followers:
            for f in followers:
                f._push(block)

    def last(self, replicas: list[str], n: int) -> list[bytes]:
        """The last ``n`` lines across ``replicas``, oldest first, in arrival order."""
        if n <= 0:
            return []
        blocks: list[tuple[int, bytes]] = []
        for name in dict.fromkeys(replicas):
            ring = self._rings.get(name)
            if ring is not None:
                blocks.extend(ring.blocks)
        blocks.sort(key=lambda sb: sb[0])
        picked: list[bytes] = []
        have = 0
        for _, block in reversed(blocks):
            count = block.count(b"\n")
            if have + count >= n:
                picked.append(_tail_lines(block, n - have))
                break
            picked.append(block)
            have += count
        return b"".join(reversed(picked)).splitlines(keepends=True)

    def follow(self, replicas: list[str], max_lines: int = DEFAULT_FOLLOW_LINES) -> Follower:
        """Subscribe to new lines of ``replicas``; ``close()`` the follower when done."""
        follower = Follower(self, replicas, max_lines)
        for name in follower.replicas:
            self._followers.setdefault(name, []).append(follower)
        return follower

    def forget(self, replica: str) -> None:
        """Drop a replica's stored lines (a replica removed by scale or reload)."""
        self._rings.pop(replica, None)

    def close(self) -> None:
        """End every follower (the supervisor has finished)."""
        for followers in list(self._followers.values()):
            for f in list(followers):
                f.close()

    def _unsubscribe(self, follower: Follower) -> None:
        for name in follower.replicas:
            followers = self._followers.get(name)
            if followers is not None and follower in followers:
                followers.remove(follower)
                if not followers:
                    del self._followers[name]
