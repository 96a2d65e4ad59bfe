"""The ``ctl status`` table: pure rendering of the status JSON to aligned text.

Columns shrink (long names cut with "~") until the table fits the width;
colour is decided by the caller and only changes the state column.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

HEADERS = (
    "NAME",
    "GROUP",
    "STATE",
    "READY",
    "PID",
    "UPTIME",
    "RESTARTS",
    "CPUS",
    "NODES",
    "PLACE",
    "LAST EXIT",
)
# Columns that may be cut, in the order they give up width, down to these minimums;
# a second, harder pass runs only when the first was not enough.
SHRINK_PASSES = (
    (("LAST EXIT", 9), ("CPUS", 7), ("GROUP", 6), ("NAME", 12)),
    (("LAST EXIT", 4), ("NAME", 8), ("GROUP", 4), ("CPUS", 3)),
)
SHORT_HEADERS = {"RESTARTS": "RST", "UPTIME": "UP", "READY": "RDY"}
STATE_COLORS = {
    "running": "32",
    "starting": "33",
    "backoff": "33",
    "stopping": "33",
    "pending": "2",
    "stopped": "2",
    "exited": "2",
    "failed": "31",
}


def format_cpulist(cpus: Iterable[int]) -> str:
    """``[0, 1, 2, 5]`` -> ``"0-2,5"``."""
    out: list[str] = []
    run: list[int] = []
    for cpu in sorted(set(cpus)):
        if run and cpu == run[-1] + 1:
            run.append(cpu)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [cpu]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def format_duration(seconds: float | None) -> str:
    """``93784`` -> ``"1d2h"``: two units at most, so the column stays short."""
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600}h"


def row(item: Mapping[str, Any]) -> list[str]:
    """One replica's cells, in HEADERS order."""
    return [
        str(item["name"]),
        str(item["group"]),
        str(item["state"]),
        "yes" if item.get("ready") else "no",
        str(item["pid"]) if item.get("pid") is not None else "-",
        format_duration(item.get("uptime")),
        str(item.get("restarts", 0)),
        format_cpulist(item.get("cpus") or ()) or "-",
        format_cpulist(item.get("nodes") or ()) or "-",
        str(item.get("placement") or "-"),
        str(item.get("last_exit") or "-"),
    ]


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(width - 1, 0)] + "~"


def render(replicas: Sequence[Mapping[str, Any]], *, width: int = 80, color: bool = False) -> str:
    """The aligned table, at most ``width`` columns wide (when the minimums allow)."""
    headers = list(HEADERS)
    rows = [row(item) for item in replicas]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for i, h in enumerate(headers):  # a long header gives way to its short form first
        if h in SHORT_HEADERS and all(len(r[i]) <= len(SHORT_HEADERS[h]) for r in rows):
            headers[i] = SHORT_HEADERS[h]
            widths[i] = max([len(headers[i])] + [len(r[i]) for r in rows])
    sep = 2 if sum(widths) + 2 * (len(widths) - 1) <= width else 1
    total = sum(widths) + sep * (len(widths) - 1)
    for shrink in SHRINK_PASSES:
        for name, minimum in shrink:
            i = HEADERS.index(name)
            give = min(widths[i] - minimum, total - width)
            if give > 0:
                widths[i] -= give
                total -= give
    lines = [_line(headers, widths, None, sep)]
    for r, item in zip(rows, replicas, strict=True):
        state_color = STATE_COLORS.get(str(item["state"])) if color else None
        lines.append(_line(r, widths, state_color, sep))
    return "\n".join(lines) + "\n"


def _line(cells: Sequence[str], widths: Sequence[int], state_color: str | None, sep: int) -> str:
    if state_color is None and all(len(c) <= w for c, w in zip(cells, widths, strict=True)):
        # The common row: nothing to cut or colour, one join.
        return (" " * sep).join([c.ljust(w) for c, w in zip(cells, widths, strict=True)]).rstrip()
    parts = []
    last = len(cells) - 1
    for i, (cell, w) in enumerate(zip(cells, widths, strict=True)):
        text = _cut(cell, w)
        text = text if i == last else text.ljust(w)
        if i == 2 and state_color:
            text = f"\x1b[{state_color}m{text}\x1b[0m"
        parts.append(text)
    return (" " * sep).join(parts).rstrip()
