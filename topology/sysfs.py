"""Read CPUs, cores, packages and NUMA nodes from a sysfs tree (no subprocess).

Reads are per core and per package where the kernel offers sibling lists, not per CPU:
each read costs microseconds and a big machine has thousands of CPUs.
"""

from __future__ import annotations

import os
from pathlib import Path

from .cpulist import parse_cpulist
from .errors import CpuListError, TopologyError
from .model import RawCpu, Topology, build


def _read(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    try:
        return os.read(fd, 65536).decode("ascii", "replace").strip()
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def _read_int(path: str) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise TopologyError(f"{path}: {text!r} is not an integer") from None


def _read_list(path: str) -> tuple[int, ...] | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return parse_cpulist(text, allow_empty=True)
    except CpuListError as exc:
        raise TopologyError(f"{path}: {exc}") from None


def _numbered(directory: Path, prefix: str) -> list[int]:
    """Numbers of entries like ``cpu12`` or ``node3``; skips ``cpufreq`` and kin."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    start = len(prefix)
    return sorted(int(n[start:]) for n in names if n.startswith(prefix) and n[start:].isdigit())


def cpu_dirs(root: Path) -> list[int]:
    return _numbered(root / "devices/system/cpu", "cpu")


def node_of_cpus(root: Path) -> dict[int, int]:
    """CPU id -> NUMA node from ``node*/cpulist``; empty without NUMA support."""
    nodes: dict[int, int] = {}
    base = root / "devices/system/node"
    for node in _numbered(base, "node"):
        for cpu in _read_list(f"{base}/node{node}/cpulist") or ():
            nodes[cpu] = node
    return nodes


def _online(base: str, ids: list[int]) -> set[int]:
    """The ``online`` list, else each ``cpuN/online`` (cpu0 often has none: online)."""
    listed = _read_list(f"{base}/online")
    if listed is not None:
        return set(listed)
    return {cpu for cpu in ids if _read(f"{base}/cpu{cpu}/online") != "0"}


# ("first", package, lowest sibling) from a sibling list; ("core", package, core_id)
# from core_id alone; ("cpu", id, id) when the CPU says nothing about its core.
CoreKey = tuple[str, int, int]


def _core_of(
    topo: str, cpu: int, package: int, online: bool, present: set[int]
) -> dict[int, CoreKey]:
    """The core key of ``cpu`` and of its sibling threads: one read per core when the
    kernel lists siblings (online CPUs only; an offline CPU's list may be just itself)."""
    if online:
        siblings = _read_list(f"{topo}/core_cpus_list") or _read_list(
            f"{topo}/thread_siblings_list"
        )
        if siblings and cpu in siblings:
            key = ("first", package, siblings[0])
            return {other: key for other in siblings if other in present}
    core_id = _read_int(f"{topo}/core_id")
    if core_id is None or core_id < 0:
        return {cpu: ("cpu", cpu, cpu)}
    return {cpu: ("core", package, core_id)}


def _join_offline(base: str, core: dict[int, CoreKey]) -> None:
    """Put CPUs keyed by core_id (offline ones) into the core their online siblings share;
    costs one core_id read per core, and nothing when every CPU has a sibling list."""
    by_core_id: dict[CoreKey, list[int]] = {}
    for cpu, key in core.items():
        if key[0] == "core":
            by_core_id.setdefault(key, []).append(cpu)
    if not by_core_id:
        return
    for key in {key for key in core.values() if key[0] == "first"}:
        _, package, first = key
        core_id = _read_int(f"{base}/cpu{first}/topology/core_id")
        for cpu in by_core_id.get(("core", package, -1 if core_id is None else core_id), ()):
            core[cpu] = key


def read_sysfs(root: Path) -> Topology:
    """Key cores by package and core (core_id repeats in every package)."""
    ids = cpu_dirs(root)
    if not ids:
        raise TopologyError(f"{root}: no devices/system/cpu/cpu* entries; is this a sysfs tree?")
    base = f"{root}/devices/system/cpu"
    present = set(ids)
    online = _online(base, ids)
    nodes = node_of_cpus(root)
    package: dict[int, int] = {}
    core: dict[int, CoreKey] = {}
    for cpu in ids:
        topo = f"{base}/cpu{cpu}/topology"
        if cpu not in package:
            found = _read_int(f"{topo}/physical_package_id")
            socket = found if found is not None and found >= 0 else 0
            same = _read_list(f"{topo}/package_cpus_list") if found is not None else None
            for other in same or (cpu,):
                package.setdefault(other, socket)
            package[cpu] = socket
        if cpu not in core:
            core.update(_core_of(topo, cpu, package[cpu], cpu in online, present))
    _join_offline(base, core)
    raws = (RawCpu(cpu, core[cpu], package[cpu], nodes.get(cpu, 0), cpu in online) for cpu in ids)
    return build(raws, f"sysfs:{root}")
