"""``ctl top``: the status refreshed live, with CPU %, RSS and NUMA-local memory.

The client reads each replica's process tree from /proc itself (the socket
is local, so the supervisor's /proc is ours) and computes CPU % from the
difference between two refreshes. curses (the system's ncurses) draws the
screen; ``q`` or Ctrl-C quits. Only this command imports curses.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .procstats import tree_stats
from .table import format_cpulist, format_duration

if TYPE_CHECKING:
    from .ctl import Client


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


COLUMNS = (
    # header, right-aligned, width (NAME takes what is left)
    ("NAME", False, 0),
    ("STATE", False, 8),
    ("RDY", False, 3),
    ("PID", True, 7),
    ("CPU%", True, 6),
    ("RSS", True, 7),
    ("THR", True, 4),
    ("RST", True, 3),
    ("UP", True, 6),
    ("CPUS", False, 12),
    ("NUMA%", True, 5),
    ("PLACE", False, 5),
)


def cells(r: dict[str, Any]) -> list[str]:
    """One replica's row, in COLUMNS order."""
    cpu = r["cpu_pct"]
    numa = r["numa"]
    return [
        str(r["name"]),
        str(r["state"]),
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
    ]


def lines(doc: dict[str, Any], rows: list[dict[str, Any]], socket: str, width: int) -> list[str]:
    """The screen as text lines at most ``width`` wide: a title, headers, one line a replica."""
    fixed = sum(w + 1 for _, _, w in COLUMNS[1:])
    name_width = max(8, width - fixed)
    widths = [name_width] + [w for _, _, w in COLUMNS[1:]]

    def fit(values: list[str]) -> str:
        out = []
        for (_, right, _), w, v in zip(COLUMNS, widths, values, strict=True):
            v = v if len(v) <= w else v[: max(w - 1, 0)] + "~"
            out.append(v.rjust(w) if right else v.ljust(w))
        return " ".join(out)[:width].rstrip()

    ready = "ready" if doc.get("ready") else "not ready"
    title = f"placevisor {socket}  {len(rows)} replicas  {ready}   (q quits)"
    return [title[:width], fit([h for h, _, _ in COLUMNS])] + [fit(cells(r)) for r in rows]


def run_top(client: Client, *, interval: float = 1.0) -> int:
    """The live view, drawn with curses; ``q`` or Ctrl-C quits."""
    import curses

    from .ctl import checked

    sampler = Sampler()

    def loop(screen: Any) -> int:
        with contextlib.suppress(curses.error):
            curses.curs_set(0)
        screen.timeout(int(max(interval, 0.1) * 1000))
        while True:
            doc = checked(client.request("GET", "/v1/status"))
            rows = sampler.sample(doc["replicas"])
            height, width = screen.getmaxyx()
            screen.erase()
            for y, text in enumerate(lines(doc, rows, client.path, width - 1)[:height]):
                with contextlib.suppress(curses.error):
                    screen.addstr(y, 0, text, curses.A_BOLD if y == 1 else curses.A_NORMAL)
            screen.refresh()
            key = screen.getch()
            if key in (ord("q"), ord("Q")):
                return 0

    try:
        return int(curses.wrapper(loop))
    except KeyboardInterrupt:
        return 0
