"""structlog configuration for the CLI (the library never configures logging)."""

from __future__ import annotations

import sys
from typing import Any, Protocol, TextIO, cast

import structlog


class Writable(Protocol):
    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


def configure(*, log_format: str, color: bool, stream: Writable | None = None) -> Any:
    """Console renderer for people, one JSON object per line for machines."""
    out = cast(TextIO, _Tolerant(stream if stream is not None else sys.stderr))
    renderer: Any
    if log_format == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=color, pad_event_to=0)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        logger_factory=structlog.PrintLoggerFactory(out),
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    return structlog.get_logger("supervisor")


class _Tolerant:
    """A log stream that goes quiet once its reader is gone (`serve 2>&1 | head`).

    A supervisor must not crash, with its replicas, because nobody reads its log.
    """

    def __init__(self, stream: Writable) -> None:
        self._stream: Writable | None = stream

    def write(self, text: str) -> int:
        if self._stream is not None:
            try:
                return self._stream.write(text)
            except (BrokenPipeError, ValueError):
                self._stream = None
        return len(text)

    def flush(self) -> None:
        if self._stream is not None:
            try:
                self._stream.flush()
            except (BrokenPipeError, ValueError):
                self._stream = None
