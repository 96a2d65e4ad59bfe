"""Where forwarded output goes: byte streams, or records for a host app.

Writes to the streams are whole prefixed blocks, so lines of different
replicas never interleave inside a line. The blocking writes happen in a
writer thread; its bounded queue is the backpressure: when it is full the
replicas' pipes fill and they block, and no buffer of ours grows.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import os
import select
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol, TextIO

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .writer import ThreadedWriter

Stream = Literal["stdout", "stderr"]

_PALETTE = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94, 91)
RESET = b"\x1b[0m"


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a replica wrote, without prefix or newline."""

    replica: str
    pid: int
    stream: Stream
    line: bytes


class OutputSink(Protocol):
    #: False when the sink wants records, True when it wants prefixed bytes.
    prefixed: bool

    async def write(self, replica: str, pid: int, stream: Stream, data: bytes) -> None: ...


def use_color(mode: str, stream: TextIO | BinaryIO | None, environ: dict[str, str]) -> bool:
    """``auto`` colours only a TTY and honours NO_COLOR, like most CLIs."""
    if mode == "always":
        return True
    if mode == "never" or environ.get("NO_COLOR"):
        return False
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):
        return False


def make_prefix(name: str, pid: int, color_index: int | None) -> bytes:
    label = f"({name} pid={pid})".encode()
    if color_index is None:
        return label + b" "
    code = _PALETTE[color_index % len(_PALETTE)]
    return b"\x1b[%dm" % code + label + RESET + b" "


class StreamSink:
    """Prefixed bytes to a pair of streams (default: this process's stdout/stderr).

    Each stream is written by its own thread (``writer.ThreadedWriter``), so a
    stalled reader never blocks the event loop: ``write`` waits only while a
    bounded queue is full, which slows the replicas through their pipes.
    ``abandon()`` at the stop deadline drops what is left and counts it.
    """

    prefixed = True

    def __init__(
        self,
        stdout: TextIO | BinaryIO | None = None,
        stderr: TextIO | BinaryIO | None = None,
        *,
        on_closed: Callable[[Stream, str], None] | None = None,
    ) -> None:
        self._targets: dict[Stream, BinaryIO | _TextTarget | int] = {
            "stdout": _binary(stdout if stdout is not None else sys.stdout),
            "stderr": _binary(stderr if stderr is not None else sys.stderr),
        }
        self._writers: dict[Stream, ThreadedWriter] = {}
        self._on_closed = on_closed

    def _writer(self, stream: Stream) -> ThreadedWriter:
        writer = self._writers.get(stream)
        if writer is None:
            target = self._targets[stream]
            sink = _fd_sink(target) if isinstance(target, int) else _stream_sink(target)
            try_now = _fd_try_now(target) if isinstance(target, int) else None

            def closed(why: str) -> None:
                # Called in the writer thread: the reader went away (`serve | head`)
                # or the host closed the stream. The replicas matter more than
                # their display, so supervision goes on and this stream is dropped.
                if self._on_closed is not None:
                    self._on_closed(stream, why)

            writer = ThreadedWriter(
                sink, name=f"placevisor-{stream}", on_error=closed, try_now=try_now
            )
            self._writers[stream] = writer
        return writer

    async def write(self, replica: str, pid: int, stream: Stream, data: bytes) -> None:
        await self._writer(stream).write(data)

    async def drain(self, stream: Stream) -> None:
        """Wait until this stream's queued output was written (or dropped)."""
        writer = self._writers.get(stream)
        if writer is not None:
            await writer.drain()

    def write_nowait(self, stream: Stream, data: bytes) -> None:
        """For the supervisor's own log lines: queued in order with replica output."""
        self._writer(stream).write_nowait(data)

    def abandon(self) -> int:
        """Drop what a stalled reader still holds back; total bytes dropped so far.

        Only streams whose reader stalled are abandoned: one that keeps up
        still carries the supervisor's last log lines.
        """
        for writer in self._writers.values():
            if writer.stalled():
                writer.abandon()
        return self.dropped

    @property
    def dropped(self) -> int:
        return sum(w.dropped for w in self._writers.values())

    def flush(self, timeout: float) -> bool:
        """Wait (blocking, outside the loop) for every queued byte to be written."""
        return all(w.flush(timeout) for w in self._writers.values())

    def close(self, timeout: float = 1.0) -> None:
        for writer in self._writers.values():
            writer.close(timeout)
        self._writers.clear()

    def log_stream(self, stream: Stream = "stderr") -> _LogStream:
        """A text stream for structlog whose lines join this sink's queue."""
        return _LogStream(self, stream)


class _LogStream:
    """``write``/``flush`` for structlog's PrintLogger, never blocking."""

    def __init__(self, sink: StreamSink, stream: Stream) -> None:
        self._sink = sink
        self._stream = stream

    def write(self, text: str) -> int:
        self._sink.write_nowait(self._stream, text.encode("utf-8", "surrogateescape"))
        return len(text)

    def flush(self) -> None:
        pass


def _fd_sink(fd: int) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:  # someone made the fd non-blocking: wait for room
                select.select([], [fd], [])
                continue
            view = view[n:]

    return write


#: A pipe that polls writable takes this much at once without blocking.
_ATOMIC = select.PIPE_BUF


def _fd_try_now(fd: int) -> Callable[[bytes], int]:
    """Write a short block at once when the fd says it has room; the bytes written."""

    def write(data: bytes) -> int:
        if len(data) > _ATOMIC or not select.select([], [fd], [], 0)[1]:
            return 0
        return os.write(fd, data)

    return write


def _stream_sink(target: BinaryIO | _TextTarget) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        target.write(data)
        target.flush()

    return write


class RecordSink:
    """Each line as an ``OutputLine`` to a host callback (sync or async)."""

    prefixed = False

    def __init__(self, callback: Callable[[OutputLine], Awaitable[None] | None]) -> None:
        self._callback = callback

    async def write(self, replica: str, pid: int, stream: Stream, data: bytes) -> None:
        for line in data.split(b"\n")[:-1]:
            result = self._callback(OutputLine(replica, pid, stream, line))
            if inspect.isawaitable(result):
                await result


#: Default bound of ``Supervisor.lines()``: lines held before the replicas wait.
LINE_BUFFER = 1024


class ChannelSink:
    """Each line as an ``OutputLine`` into a bounded memory stream a host iterates.

    When ``max_buffer`` lines wait unread, ``write`` blocks: the replica's pump
    stops reading, its pipe fills and the replica blocks on its next write.
    So a slow reader slows the replicas and nothing grows without bound. A
    reader that closed its end discards the lines that follow.
    """

    prefixed = False

    def __init__(self, max_buffer: int = LINE_BUFFER) -> None:
        if isinstance(max_buffer, bool) or not isinstance(max_buffer, int) or max_buffer < 1:
            raise ValueError(f"line_buffer must be an integer >= 1, got {max_buffer!r}")
        send, receive = anyio.create_memory_object_stream[OutputLine](max_buffer)
        self._send: MemoryObjectSendStream[OutputLine] = send
        self.receive: MemoryObjectReceiveStream[OutputLine] = receive
        self.claimed = False

    async def write(self, replica: str, pid: int, stream: Stream, data: bytes) -> None:
        for line in data.split(b"\n")[:-1]:
            try:
                await self._send.send(OutputLine(replica, pid, stream, line))
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                return  # the host stopped reading

    def close(self) -> None:
        """End the host's iteration (after the lines already buffered)."""
        self._send.close()
        if not self.claimed:
            self.receive.close()  # nobody will read them


def _binary(stream: TextIO | BinaryIO) -> BinaryIO | _TextTarget | int:
    """The raw fd when the stream is this process's own stdout/stderr (fastest)."""
    if stream is sys.__stdout__ or stream is sys.__stderr__:
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
        return int(stream.fileno())
    if isinstance(stream, io.TextIOBase) or hasattr(stream, "buffer"):
        return _TextTarget(stream)  # type: ignore[arg-type]
    return stream


class _TextTarget:
    """A host's text stream: bytes go to its ``.buffer`` after the text layer
    is flushed (so the host's own writes stay in order); a stream without one
    (``io.StringIO``) gets the bytes decoded as UTF-8 with ``surrogateescape``,
    which keeps undecodable bytes recoverable with the same error handler.
    """

    __slots__ = ("_buffer", "_text")

    def __init__(self, text: TextIO) -> None:
        self._text = text
        self._buffer: BinaryIO | None = getattr(text, "buffer", None)

    def write(self, data: bytes) -> None:
        if self._buffer is None:
            self._text.write(data.decode("utf-8", "surrogateescape"))
        else:
            self._text.flush()
            self._buffer.write(data)

    def flush(self) -> None:
        (self._text if self._buffer is None else self._buffer).flush()
