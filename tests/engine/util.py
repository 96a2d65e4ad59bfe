"""Tools for engine tests: a recording logger and output that keeps arrival order."""

from __future__ import annotations

import io
import time
from typing import Any


class Events:
    """A logger to pass as ``Supervisor(logger=...)``: records each event with its fields.

    ``journal``, when given, receives ``("log", event)`` too, so tests can
    check the order of log events against output writes.
    """

    def __init__(self, journal: list[tuple[str, Any]] | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self._journal = journal

    def _record(self, level: str, event: str, **fields: Any) -> None:
        rec = {"event": event, "level": level, "t": time.monotonic(), **fields}
        self.records.append(rec)
        if self._journal is not None:
            self._journal.append(("log", rec))

    def debug(self, event: str, **fields: Any) -> None:
        self._record("debug", event, **fields)

    def info(self, event: str, **fields: Any) -> None:
        self._record("info", event, **fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._record("warning", event, **fields)

    def error(self, event: str, **fields: Any) -> None:
        self._record("error", event, **fields)

    def of(self, event: str, **match: Any) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if r["event"] == event and all(r.get(k) == v for k, v in match.items())
        ]

    def names(self) -> list[str]:
        return [r["event"] for r in self.records]


class Journal(io.RawIOBase):
    """A binary stream that records every write, in order, into a shared list."""

    def __init__(self, name: str, journal: list[tuple[str, Any]]) -> None:
        super().__init__()
        self._name = name
        self._journal = journal
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self.data += data
        self._journal.append((self._name, data))
        return len(data)
