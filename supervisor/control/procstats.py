"""Resource use of a replica's whole process tree, read from /proc.

Blocking file reads: call from a worker thread (the server) or a client.
A process that exits mid-walk is skipped, never an error.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class TreeStats:
    processes: int
    threads: int
    cpu_seconds: float
    rss_bytes: int
    numa_pages: dict[int, int]  # pages per NUMA node, over the tree's mappings

    def numa_local_ratio(self, nodes: tuple[int, ...]) -> float | None:
        """Share of the tree's mapped pages on ``nodes``; None when unknown."""
        total = sum(self.numa_pages.values())
        if not nodes or total == 0:
            return None
        return sum(self.numa_pages.get(n, 0) for n in nodes) / total


def _read(path: Path | str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
        return b"".join(chunks).decode("ascii", "replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def tree_pids(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """``pid`` and its descendants (through every thread's children list)."""
    found: list[int] = []
    seen: set[int] = set()
    todo = [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        base = f"{proc}/{p}/task"
        try:
            tasks = os.listdir(base)
        except OSError:
            continue
        found.append(p)
        for tid in tasks:
            text = _read(f"{base}/{tid}/children")
            if text:
                todo.extend(int(c) for c in text.split())
    return found


def parse_numa_maps(text: str) -> dict[int, int]:
    """Pages per node from the ``N<node>=<pages>`` fields of numa_maps."""
    pages: dict[int, int] = {}
    for field in text.split():
        if field.startswith("N") and "=" in field:
            node, _, count = field[1:].partition("=")
            if node.isdigit() and count.isdigit():
                pages[int(node)] = pages.get(int(node), 0) + int(count)
    return pages


def tree_stats(pid: int, *, numa: bool = True, proc: Path = Path("/proc")) -> TreeStats | None:
    """Totals over ``pid``'s tree; None when ``pid`` is gone."""
    processes = threads = ticks = rss_pages = 0
    numa_pages: dict[int, int] = {}
    for p in tree_pids(pid, proc):
        stat = _read(f"{proc}/{p}/stat")
        statm = _read(f"{proc}/{p}/statm")
        if stat is None or statm is None:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        threads += int(fields[17])
        rss_pages += int(statm.split()[1])
        processes += 1
        if numa:
            text = _read(f"{proc}/{p}/numa_maps")
            if text:
                for node, count in parse_numa_maps(text).items():
                    numa_pages[node] = numa_pages.get(node, 0) + count
    if processes == 0:
        return None
    return TreeStats(processes, threads, ticks / CLK_TCK, rss_pages * PAGE_SIZE, numa_pages)
