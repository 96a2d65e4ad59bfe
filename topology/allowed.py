"""What this process may use: affinity, cgroup cpuset, online CPUs, allowed memory nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .cpulist import format_cpulist, parse_cpulist
from .errors import CpuListError, TopologyError
from .lscpu import from_json
from .model import RawCpu, Topology, build
from .sysfs import sysfs_topology


def _cpulist_file(path: Path) -> frozenset[int] | None:
    try:
        text = path.read_text()
    except OSError:
        return None
    try:
        return frozenset(parse_cpulist(text, allow_empty=True))
    except CpuListError as exc:
        raise TopologyError(f"{path}: {exc}") from None


def _ancestors(base: Path, cgroup_path: str) -> list[Path]:
    """The cgroup directory, then its parents up to ``base`` (a container sees a subtree)."""
    parts = [p for p in cgroup_path.strip().split("/") if p]
    return [base.joinpath(*parts[:n]) for n in range(len(parts), -1, -1)]


def cgroup_cpus(proc_root: Path, cgroup_root: Path) -> frozenset[int] | None:
    """The cpuset's effective CPUs (v2 unified or v1 cpuset), or None when there is none."""
    try:
        lines = (proc_root / "self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if "cpuset" in controllers.split(","):
            for directory in _ancestors(cgroup_root / "cpuset", path):
                for name in ("cpuset.effective_cpus", "cpuset.cpus"):
                    found = _cpulist_file(directory / name)
                    if found:
                        return found
    for line in lines:
        if line.startswith("0::"):
            for directory in _ancestors(cgroup_root, line[3:]):
                found = _cpulist_file(directory / "cpuset.cpus.effective")
                if found:
                    return found
    return None


def mems_allowed(proc_root: Path) -> frozenset[int] | None:
    """``Mems_allowed_list`` from ``/proc/self/status``; None when unreadable."""
    try:
        lines = (proc_root / "self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key == "Mems_allowed_list":
            try:
                return frozenset(parse_cpulist(value))
            except CpuListError as exc:
                where = proc_root / "self/status"
                raise TopologyError(f"{where}: Mems_allowed_list: {exc}") from None
    return None


def _lscpu() -> Topology | None:
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        return None
    try:
        done = subprocess.run([lscpu, "-Je"], capture_output=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return from_json(done.stdout, source="lscpu -Je")


def _fallback() -> Topology:
    """Off Linux: every CPU its own core on node 0."""
    count = os.cpu_count() or 1
    return build((RawCpu(i, ("cpu", i), 0, 0, True) for i in range(count)), "os.cpu_count")


def detect(
    *,
    sysfs_root: Path,
    proc_root: Path,
    cgroup_root: Path,
    affinity: Iterable[int] | None,
) -> Topology:
    """sysfs first (cheap, no subprocess), ``lscpu -Je`` second, a fallback last."""
    topo = sysfs_topology(sysfs_root) or _lscpu() or _fallback()
    allowed = set(topo.allowed)  # every reader's build() makes this the online set
    if affinity is None and hasattr(os, "sched_getaffinity"):
        affinity = os.sched_getaffinity(0)
    if affinity is not None:
        allowed.intersection_update(affinity)
    cpuset = cgroup_cpus(proc_root, cgroup_root)
    if cpuset is not None:
        allowed &= cpuset
    mems = mems_allowed(proc_root)
    if not allowed:
        raise TopologyError(
            f"{topo.source}: no CPU is both online and allowed "
            f"(online {format_cpulist(topo.online)}, affinity {format_cpulist(affinity or [])}, "
            f"cpuset {'unset' if cpuset is None else format_cpulist(cpuset)})"
        )
    return topo.restrict(allowed, mems)
