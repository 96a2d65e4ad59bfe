"""structlog configuration for the CLI (the library never configures logging)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

import structlog


def configure(*, log_format: str, color: bool, stream: TextIO | None = None) -> Any:
    """Console renderer for people, one JSON object per line for machines."""
    out = stream if stream is not None else sys.stderr
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
