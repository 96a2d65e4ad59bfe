"""Read back where a replica's threads may really run, and report drift from its place.

A place is only worth what the kernel enforces: a runtime (``KMP_AFFINITY=norespect``),
a library or the program itself can widen a thread's CPU set after the wrapper pinned
it. This module only reads ``/proc`` (no event loop, no psutil) so one pass over every
bound replica stays cheap enough to run at each ``status`` or ``/metrics`` request.

``Mems_allowed_list`` is the cpuset's memory nodes, not the numactl memory policy
(``--membind`` leaves it unchanged): compare memory only where a cpuset restricts it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from topology.cpulist import format_cpulist, parse_cpulist

Verdict = Literal["ok", "drift"]
ChildrenOf = Callable[[int], Iterable[int]]

_PROC = "/proc"
_CPUS_KEY = b"\nCpus_allowed_list:"
_MEMS_KEY = b"\nMems_allowed_list:"
_NAME_KEY = b"Name:"
_READ_SIZE = 8192  # a task's status is about 1.5 KB; one read gets it whole


@dataclass(frozen=True, slots=True)
class ThreadPlacement:
    """The CPUs and memory nodes one thread may use, as the kernel says now."""

    pid: int
    tid: int
    name: str
    cpus: frozenset[int]
    mems: frozenset[int]


@dataclass(frozen=True, slots=True)
class Mismatch:
    """A thread allowed outside its replica's place."""

    replica: str
    pid: int
    tid: int
    thread: str
    cpus: tuple[int, ...]
    place_cpus: tuple[int, ...]
    mems: tuple[int, ...]
    place_nodes: tuple[int, ...]

    def fields(self) -> dict[str, object]:
        """The ``placement_mismatch`` event's fields, lists in Linux syntax."""
        return {
            "replica": self.replica,
            "pid": self.pid,
            "tid": self.tid,
            "thread": self.thread,
            "cpus": format_cpulist(self.cpus),
            "place": format_cpulist(self.place_cpus),
            "mems": format_cpulist(self.mems),
            "place_nodes": format_cpulist(self.place_nodes),
        }


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, _READ_SIZE)
    finally:
        os.close(fd)


def _field(status: bytes, key: bytes) -> bytes:
    start = status.find(key)
    if start < 0:
        return b""
    start += len(key)
    end = status.find(b"\n", start)
    return status[start : end if end >= 0 else len(status)].strip()


def _parse_status(
    pid: int, tid: int, status: bytes, lists: dict[bytes, frozenset[int]]
) -> ThreadPlacement:
    """Parse one task's status; ``lists`` memoises the few distinct CPU lists of a pass."""
    sets = []
    for key in (_CPUS_KEY, _MEMS_KEY):
        text = _field(status, key)
        parsed = lists.get(text)
        if parsed is None:
            parsed = frozenset(parse_cpulist(text.decode("ascii"), allow_empty=True))
            lists[text] = parsed
        sets.append(parsed)
    # "Name:" is the first line; the kernel escapes newlines and backslashes in it.
    name = _field(status, _NAME_KEY).decode("utf-8", "replace")
    return ThreadPlacement(pid=pid, tid=tid, name=name, cpus=sets[0], mems=sets[1])


def children_file_supported(proc: str = _PROC) -> bool:
    """Whether the kernel has ``/proc/PID/task/TID/children`` (CONFIG_PROC_CHILDREN)."""
    return os.path.exists(f"{proc}/self/task/{os.getpid()}/children")


def parent_map(proc: str = _PROC) -> dict[int, list[int]]:
    """Every process's children, from one scan of ``/proc/*/stat`` (kernels without
    the children file); a process gone mid-scan is skipped."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir(proc):
        if not entry.isdigit():
            continue
        try:
            stat = _read(f"{proc}/{entry}/stat")
        except (FileNotFoundError, ProcessLookupError):
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        rest = stat[stat.rfind(b")") + 2 :].split(b" ", 2)
        if len(rest) >= 2:
            children.setdefault(int(rest[1]), []).append(int(entry))
    return children


def _lookup(found: Mapping[int, list[int]]) -> ChildrenOf:
    return lambda pid: found.get(pid, ())


def _children_from_files(proc: str, pid: int, tids: Iterable[int]) -> list[int]:
    found: list[int] = []
    for tid in tids:
        try:
            text = _read(f"{proc}/{pid}/task/{tid}/children")
        except (FileNotFoundError, ProcessLookupError):
            continue
        found.extend(int(word) for word in text.split())
    return found


def read_tree(
    pid: int,
    *,
    children: ChildrenOf | None = None,
    proc: str = _PROC,
    lists: dict[bytes, frozenset[int]] | None = None,
) -> list[ThreadPlacement]:
    """Every thread of ``pid`` and of all its descendants, parents before children.

    Processes and threads that exit while being read are left out, never an error.
    ``children`` maps a pid to its child pids; by default the kernel's children
    files, or one ``/proc`` scan where the kernel lacks them.
    """
    if children is None and not children_file_supported(proc):
        children = _lookup(parent_map(proc))
    return _walk(pid, children, proc, {} if lists is None else lists)


def _walk(
    pid: int, children: ChildrenOf | None, proc: str, lists: dict[bytes, frozenset[int]]
) -> list[ThreadPlacement]:
    """``read_tree`` proper; ``children`` None means the kernel's children files."""
    threads: list[ThreadPlacement] = []
    seen: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            tids = sorted(int(t) for t in os.listdir(f"{proc}/{current}/task"))
        except (FileNotFoundError, ProcessLookupError):
            continue
        for tid in tids:
            try:
                status = _read(f"{proc}/{current}/task/{tid}/status")
            except (FileNotFoundError, ProcessLookupError):
                continue
            threads.append(_parse_status(current, tid, status, lists))
        kids = _children_from_files(proc, current, tids) if children is None else children(current)
        todo.extend(sorted(kids, reverse=True))
    return threads


def mismatches(
    replica: str,
    threads: Iterable[ThreadPlacement],
    cpus: tuple[int, ...],
    nodes: tuple[int, ...],
    *,
    check_mems: bool = False,
) -> list[Mismatch]:
    """Threads allowed on a CPU outside ``cpus`` or (``check_mems`` and ``nodes``
    given) on a memory node outside ``nodes``."""
    place = frozenset(cpus)
    place_nodes = frozenset(nodes)
    check_nodes = check_mems and bool(nodes)
    found = []
    for t in threads:
        if t.cpus <= place and (not check_nodes or t.mems <= place_nodes):
            continue
        found.append(
            Mismatch(
                replica=replica,
                pid=t.pid,
                tid=t.tid,
                thread=t.name,
                cpus=tuple(sorted(t.cpus)),
                place_cpus=tuple(cpus),
                mems=tuple(sorted(t.mems)),
                place_nodes=tuple(nodes),
            )
        )
    return found


@dataclass(slots=True)
class _Reported:
    pid: int
    keys: set[tuple[int, frozenset[int], frozenset[int]]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class Target:
    """One bound replica to verify: its root pid and its place."""

    replica: str
    pid: int
    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    check_mems: bool = False


class Verifier:
    """Checks replicas against their places, reporting each distinct mismatch once.

    A mismatch is distinct by (tid, CPUs, memory nodes); what a replica's earlier
    process reported is forgotten when its pid changes, and keys of threads that
    exited are dropped so the memory stays bounded by live threads.
    """

    def __init__(self, *, proc: str = _PROC, children_files: bool | None = None) -> None:
        """``children_files=False`` forces the ``/proc`` scan (for tests and benchmarks)."""
        self._proc = proc
        self._children_files = (
            children_file_supported(proc) if children_files is None else children_files
        )
        self._reported: dict[str, _Reported] = {}
        self._lists: dict[bytes, frozenset[int]] = {}

    def check(
        self,
        replica: str,
        pid: int,
        cpus: tuple[int, ...],
        nodes: tuple[int, ...],
        check_mems: bool = False,
    ) -> tuple[Verdict, list[Mismatch]]:
        """``("ok" | "drift", mismatches not reported before)`` for one replica."""
        target = Target(replica, pid, tuple(cpus), tuple(nodes), check_mems)
        return self.check_all([target])[replica]

    def check_all(self, targets: Iterable[Target]) -> dict[str, tuple[Verdict, list[Mismatch]]]:
        """One pass over many replicas, sharing one ``/proc`` scan where needed."""
        targets = list(targets)
        children: ChildrenOf | None = None
        if not self._children_files and targets:
            children = _lookup(parent_map(self._proc))
        if len(self._lists) > 4096:  # bounded memo: distinct lists are few in practice
            self._lists.clear()
        results: dict[str, tuple[Verdict, list[Mismatch]]] = {}
        for t in targets:
            threads = _walk(t.pid, children, self._proc, self._lists)
            results[t.replica] = self._judge(t, threads)
        return results

    def _judge(self, t: Target, threads: list[ThreadPlacement]) -> tuple[Verdict, list[Mismatch]]:
        current = mismatches(t.replica, threads, t.cpus, t.nodes, check_mems=t.check_mems)
        reported = self._reported.get(t.replica)
        if reported is None or reported.pid != t.pid:
            reported = self._reported[t.replica] = _Reported(t.pid)
        live = {th.tid for th in threads}
        reported.keys = {k for k in reported.keys if k[0] in live}
        new = []
        for m in current:
            key = (m.tid, frozenset(m.cpus), frozenset(m.mems))
            if key not in reported.keys:
                reported.keys.add(key)
                new.append(m)
        return ("drift" if current else "ok"), new

    def forget(self, replica: str) -> None:
        """Drop what was reported for ``replica`` (it exited or was removed)."""
        self._reported.pop(replica, None)

    @property
    def reported(self) -> Mapping[str, int]:
        """How many distinct mismatches each replica has outstanding (for tests, metrics)."""
        return {name: len(r.keys) for name, r in self._reported.items()}
