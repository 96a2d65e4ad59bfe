"""Turn a pipe's byte chunks into whole, prefixed lines.

The hot path does one ``bytes.replace`` per chunk, never a Python call per
line: a chunk's complete lines are prefixed in C and the unterminated tail is
kept for the next chunk. A tail that grows past ``limit`` is cut into
prefixed pieces so a replica that never writes a newline cannot make us
buffer without bound.

A line of length L always comes out as the same pieces, however the stream
was chunked: ``ceil(L / limit)`` pieces of ``limit`` bytes (the last one
shorter), or one empty piece for an empty line.
"""

from __future__ import annotations

LINE_LIMIT = 64 * 1024


class LineSplitter:
    """Prefix every complete line of a byte stream; keep the partial last line."""

    __slots__ = ("_cut", "_limit", "_nl_prefix", "_prefix", "_tail")

    def __init__(self, prefix: bytes, *, limit: int = LINE_LIMIT) -> None:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        self._prefix = prefix
        self._nl_prefix = b"\n" + prefix
        self._limit = limit
        self._tail = b""
        # True once pieces of the current (unfinished) line went out, so its
        # end must not add an empty piece when nothing of it is left over.
        self._cut = False

    @property
    def pending(self) -> int:
        """Bytes of the unterminated line held back."""
        return len(self._tail)

    def feed(self, data: bytes) -> bytes:
        """Return the prefixed complete lines (and cut pieces) that ``data`` finishes."""
        last = data.rfind(b"\n")
        if last < 0:
            self._tail += data
            return self._cut_tail() if len(self._tail) >= self._limit else b""
        out = b""
        start = 0
        if self._tail or self._cut:
            # Finish the line that earlier chunks began.
            first = data.find(b"\n")
            line = self._tail + data[:first]
            out = self._pieces(line) if line or not self._cut else b""
            self._tail, self._cut = b"", False
            start = first + 1
        if start <= last:
            if last - start >= self._limit and self._long_line_in(data, start, last):
                out += b"".join(self._pieces(line) for line in data[start:last].split(b"\n"))
            else:
                head = data[start:last]  # complete lines, without the final newline
                out += self._prefix + head.replace(b"\n", self._nl_prefix) + b"\n"
        self._tail = data[last + 1 :]
        if len(self._tail) >= self._limit:
            out += self._cut_tail()
        return out

    def _long_line_in(self, data: bytes, start: int, end: int) -> bool:
        """Whether a line of ``data[start:end]`` is longer than the limit.

        C-speed scans first: when every window of half the limit holds a
        newline, no line can reach the limit; only otherwise are lines measured.
        """
        step = self._limit // 2
        if step:
            find = data.find
            stop = end + 1  # the final newline closes the last line
            if all(find(b"\n", i, min(i + step, stop)) >= 0 for i in range(start, stop, step)):
                return False
        return _longest_line(data[start:end]) > self._limit

    def flush(self) -> bytes:
        """Return the unterminated last line, prefixed and ended, at EOF."""
        tail, self._tail, self._cut = self._tail, b"", False
        return self._prefix + tail + b"\n" if tail else b""

    def _cut_tail(self) -> bytes:
        limit = self._limit
        whole = len(self._tail) - len(self._tail) % limit
        out = b"".join(
            self._prefix + self._tail[i : i + limit] + b"\n" for i in range(0, whole, limit)
        )
        self._tail = self._tail[whole:]
        self._cut = True
        return out

    def _pieces(self, line: bytes) -> bytes:
        limit = self._limit
        if len(line) <= limit:
            return self._prefix + line + b"\n"
        return b"".join(
            self._prefix + line[i : i + limit] + b"\n" for i in range(0, len(line), limit)
        )


def _longest_line(block: bytes) -> int:
    return max(map(len, block.split(b"\n")))
