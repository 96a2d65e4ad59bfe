"""``ctl top``: the status refreshed live, with CPU %, RSS and NUMA-local memory.

The client reads each replica's process tree from /proc itself (the socket
is local, so the supervisor's /proc is ours) and computes CPU % from the
difference between two refreshes. rich draws the screen; ``q`` or Ctrl-C
quits. Only this command imports rich.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .procstats import tree_stats
from .table import format_cpulist, format_duration

if TYPE_CHECKING:
    from rich.table import Table

    from .ctl import Client

STATE_STYLES = {"running": "green", "failed": "red", "starting": "yellow", "backoff": "yellow"}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "K", "M", "G"):
        if value < 1024 or unit == "G":
            return f"{value:.0f}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.1f}G"


class Sampler:
    """CPU % per replica from the change in tree CPU seconds between samples."""

    def __init__(self, proc: Path = Path("/proc")) -> None:
        self.proc = proc
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (monotonic, cpu seconds)

    def sample(self, replicas: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = []
        seen: dict[int, tuple[float, float]] = {}
        for item in replicas:
            pid = item.get("pid")
            stats = tree_stats(pid, numa=bool(item.get("nodes")), proc=self.proc) if pid else None
            extra: dict[str, Any] = {"cpu_pct": None, "rss": None, "threads": None, "numa": None}
            if stats is not None and pid is not None:
                now = time.monotonic()
                prev = self._last.get(pid)
                if prev is not None and now > prev[0]:
                    extra["cpu_pct"] = 100.0 * (stats.cpu_seconds - prev[1]) / (now - prev[0])
                seen[pid] = (now, stats.cpu_seconds)
                extra["rss"] = stats.rss_bytes
                extra["threads"] = stats.threads
                extra["numa"] = stats.numa_local_ratio(tuple(item.get("nodes") or ()))
            rows.append({**item, **extra})
        self._last = seen
        return rows


OTHER_COLUMNS_WIDTH = 70  # every column but NAME at its minimum, with padding


def build_table(
    doc: dict[str, Any], rows: list[dict[str, Any]], socket: str, width: int = 80
) -> Table:
    from rich.table import Table

    ready = "[green]ready[/]" if doc.get("ready") else "[yellow]not ready[/]"
    table = Table(
        title=f"placevisor {socket}  {len(rows)} replicas  {ready}   (q quits)",
        expand=False,
        pad_edge=False,
        box=None,
        padding=(0, 1, 0, 0),
        header_style="bold",
    )
    for name, justify, low, high in (
        ("NAME", "left", 8, max(8, width - OTHER_COLUMNS_WIDTH)),
        ("STATE", "left", 8, None),
        ("RDY", "left", 3, None),
        ("PID", "right", 7, None),
        ("CPU%", "right", 6, None),
        ("RSS", "right", 7, None),
        ("THR", "right", 3, None),
        ("RST", "right", 3, None),
        ("UP", "right", 6, None),
        ("CPUS", "left", 4, 16),
        ("NUMA%", "right", 5, None),
        ("PLACE", "left", 5, None),
    ):
        table.add_column(
            name,
            justify=justify,  # type: ignore[arg-type]
            no_wrap=True,
            min_width=low,
            max_width=high,
        )
    for r in rows:
        state = str(r["state"])
        style = STATE_STYLES.get(state)
        cpu = r["cpu_pct"]
        numa = r["numa"]
        table.add_row(
            str(r["name"]),
            f"[{style}]{state}[/]" if style else state,
            "yes" if r.get("ready") else "no",
            str(r["pid"]) if r.get("pid") else "-",
            f"{cpu:.1f}" if cpu is not None else "-",
            _size(r["rss"]) if r["rss"] is not None else "-",
            str(r["threads"]) if r["threads"] is not None else "-",
            str(r.get("restarts", 0)),
            format_duration(r.get("uptime")),
            format_cpulist(r.get("cpus") or ()) or "-",
            f"{100 * numa:.0f}%" if numa is not None else "-",
            str(r.get("placement") or "-"),
        )
    return table


@contextlib.contextmanager
def _keys() -> Iterator[int | None]:
    """stdin in cbreak mode (keys arrive unbuffered), restored on exit; None if not a TTY."""
    fd = sys.stdin.fileno() if sys.stdin is not None else -1
    if fd < 0 or not os.isatty(fd):
        yield None
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield fd
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _wait_key(fd: int | None, timeout: float) -> str:
    """A key pressed within ``timeout`` seconds, or ""."""
    if fd is None:
        time.sleep(timeout)
        return ""
    ready, _, _ = select.select([fd], [], [], timeout)
    return os.read(fd, 32).decode(errors="replace") if ready else ""


def run_top(client: Client, *, interval: float = 1.0) -> int:
    from rich.console import Console
    from rich.live import Live

    from .ctl import checked

    sampler = Sampler()
    console = Console()
    with _keys() as fd, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            doc = checked(client.request("GET", "/v1/status"))
            rows = sampler.sample(doc["replicas"])
            table = build_table(doc, rows, client.path, console.width)
            live.update(table, refresh=True)
            deadline = time.monotonic() + max(interval, 0.1)
            while (left := deadline - time.monotonic()) > 0:
                key = _wait_key(fd, left)
                if "q" in key.lower():
                    return 0
