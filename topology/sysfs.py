"""Read CPUs, cores, packages and NUMA nodes from a sysfs tree (no subprocess).

Reads are per core and per package where the kernel offers sibling lists, not per CPU:
each read costs microseconds and a big machine has thousands of CPUs. Files are opened
relative to one open ``devices/system/cpu`` directory, so the kernel walks three path
components per read instead of the whole path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from operator import lt
from pathlib import Path

from .cpulist import parse_cpulist
from .errors import CpuListError, TopologyError
from .model import RawCpu, Topology, build

_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
# Most files hold a short line; a small first read is measurably cheaper than a big one.
_SMALL = 256

# Reads ``path`` (relative to the directory the reader was made for): None when missing.
Reader = Callable[[str], bytes | None]


def _error(base: str, path: str, exc: OSError) -> TopologyError:
    return TopologyError(f"{os.path.join(base, path)}: cannot read ({exc.strerror or exc})")


def _rest(fd: int, first: bytes) -> bytes:
    """``first`` filled the small buffer: read on to the end (long lists come a page at
    a time from bin attributes, so a short read proves nothing; only an empty one does)."""
    parts = [first]
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


def _reader(base: str, dir_fd: int | None) -> Reader:
    """A reader of files under ``base``; errors name the full path."""

    def read(path: str) -> bytes | None:
        try:
            fd = os.open(path, _FLAGS, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _error(base, path, exc) from None
        try:
            data = os.read(fd, _SMALL)
            return _rest(fd, data) if len(data) == _SMALL else data
        except OSError as exc:
            raise _error(base, path, exc) from None
        finally:
            os.close(fd)

    return read


def _text(data: bytes) -> str:
    return data.decode("ascii", "replace").strip()


def _int(read: Reader, base: str, path: str) -> int | None:
    data = read(path)
    if data is None:
        return None
    text = _text(data)
    try:
        return int(text)
    except ValueError:
        raise TopologyError(f"{os.path.join(base, path)}: {text!r} is not an integer") from None


def _ids(data: bytes) -> tuple[int, ...] | None:
    """Fast path for what sibling lists hold (``5,2053`` or ``4-5``); None: take the slow one."""
    text = data.strip()
    if text.replace(b",", b"").isdigit():
        ids = tuple(map(int, text.split(b",")))
        if len(ids) == 2:
            return ids if ids[0] < ids[1] else None
        return ids if len(ids) == 1 or all(map(lt, ids, ids[1:])) else None
    first, dash, last = text.partition(b"-")
    if dash and first.isdigit() and last.isdigit() and int(first) <= int(last):
        return tuple(range(int(first), int(last) + 1))
    return None


def _slow_list(data: bytes, base: str, path: str) -> tuple[int, ...]:
    try:
        return parse_cpulist(_text(data), allow_empty=True)
    except CpuListError as exc:
        raise TopologyError(f"{os.path.join(base, path)}: {exc}") from None


def _list(read: Reader, base: str, path: str) -> tuple[int, ...] | None:
    data = read(path)
    if data is None:
        return None
    return _ids(data) or _slow_list(data, base, path)


def _numbered(directory: Path | str, prefix: str) -> list[int]:
    """Numbers of entries like ``cpu12`` or ``node3``; skips ``cpufreq`` and kin."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    start = len(prefix)
    return sorted([int(n[start:]) for n in names if n[start:].isdigit() and n.startswith(prefix)])


def cpu_dirs(root: Path) -> list[int]:
    return _numbered(root / "devices/system/cpu", "cpu")


def node_of_cpus(root: Path) -> dict[int, int]:
    """CPU id -> NUMA node from ``node*/cpulist``; empty without NUMA support."""
    nodes: dict[int, int] = {}
    base = f"{root}/devices/system/node"
    read = _reader(base, None)
    for node in _numbered(base, "node"):
        path = f"{base}/node{node}/cpulist"
        for cpu in _list(read, base, path) or ():
            nodes[cpu] = node
    return nodes


def _online(read: Reader, base: str, ids: list[int]) -> set[int]:
    """The ``online`` list, else each ``cpuN/online`` (cpu0 often has none: online)."""
    listed = _list(read, base, "online")
    if listed is not None:
        return set(listed)
    return {cpu for cpu in ids if (read(f"cpu{cpu}/online") or b"").strip() != b"0"}


# ("first", package, lowest sibling) from a sibling list; ("core", package, core_id)
# from core_id alone; ("cpu", id, id) when the CPU says nothing about its core.
CoreKey = tuple[str, int, int]


def _packages(read: Reader, base: str, ids: list[int]) -> dict[int, int]:
    """CPU -> package: one id and one list per package, per CPU only without lists."""
    package: dict[int, int] = {}
    for cpu in ids:
        if cpu in package:
            continue
        topo = f"cpu{cpu}/topology"
        found = _int(read, base, f"{topo}/physical_package_id")
        socket = found if found is not None and found >= 0 else 0
        same = None
        if found is not None:
            same = _list(read, base, f"{topo}/package_cpus_list")
            if same is None:  # kernels before 5.3 name it core_siblings_list
                same = _list(read, base, f"{topo}/core_siblings_list")
        for other in same or ():
            package.setdefault(other, socket)
        package[cpu] = socket
    return package


def _siblings(base: str, path: str, dir_fd: int) -> tuple[int, ...] | None:
    """One core's sibling list: the per-core hot path, so the read is inlined."""
    try:
        fd = os.open(path, _FLAGS, dir_fd=dir_fd)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _error(base, path, exc) from None
    try:
        data = os.read(fd, _SMALL)
        if len(data) == _SMALL:
            data = _rest(fd, data)
    except OSError as exc:
        raise _error(base, path, exc) from None
    finally:
        os.close(fd)
    first, comma, second = data.rstrip(b"\n").partition(b",")  # "5,2053": SMT2, the usual
    if comma and first.isdigit() and second.isdigit():
        a, b = int(first), int(second)
        if a < b:
            return a, b
    return _ids(data) or _slow_list(data, base, path)


def _cores(
    read: Reader,
    base: str,
    dir_fd: int,
    ids: list[int],
    package: dict[int, int],
    online: set[int],
) -> dict[int, CoreKey]:
    """CPU -> core key: one sibling list per core (online CPUs only: an offline CPU's list
    may be just itself), else the CPU's core_id."""
    core: dict[int, CoreKey] = {}
    present = set(ids)
    for cpu in ids:
        if cpu in core:
            continue
        if cpu in online:
            siblings = _siblings(base, f"cpu{cpu}/topology/core_cpus_list", dir_fd) or _list(
                read, base, f"cpu{cpu}/topology/thread_siblings_list"
            )
            if siblings and cpu in siblings:
                key = ("first", package[cpu], siblings[0])
                for other in siblings:
                    if other in present:
                        core[other] = key
                continue
        core_id = _int(read, base, f"cpu{cpu}/topology/core_id")
        if core_id is None or core_id < 0:
            core[cpu] = ("cpu", cpu, cpu)
        else:
            core[cpu] = ("core", package[cpu], core_id)
    return core


def _join_offline(read: Reader, base: str, core: dict[int, CoreKey]) -> None:
    """Put CPUs keyed by core_id (offline ones) into the core their online siblings share;
    costs one core_id read per core of a package with such CPUs, else nothing."""
    by_core_id: dict[CoreKey, list[int]] = {}
    for cpu, key in core.items():
        if key[0] == "core":
            by_core_id.setdefault(key, []).append(cpu)
    if not by_core_id:
        return
    packages = {key[1] for key in by_core_id}
    for key in {key for key in core.values() if key[0] == "first" and key[1] in packages}:
        _, package, first = key
        core_id = _int(read, base, f"cpu{first}/topology/core_id")
        for cpu in by_core_id.get(("core", package, -1 if core_id is None else core_id), ()):
            core[cpu] = key


def sysfs_topology(root: Path) -> Topology | None:
    """The machine under ``root``, or None when there is no ``devices/system/cpu/cpu*``."""
    base = f"{root}/devices/system/cpu"
    ids = _numbered(base, "cpu")
    if not ids:
        return None
    try:
        dir_fd = os.open(base, _FLAGS | os.O_DIRECTORY)
    except OSError as exc:
        raise TopologyError(f"{base}: cannot read ({exc.strerror or exc})") from None
    try:
        read = _reader(base, dir_fd)
        online = _online(read, base, ids)
        package = _packages(read, base, ids)
        core = _cores(read, base, dir_fd, ids, package, online)
        _join_offline(read, base, core)
    finally:
        os.close(dir_fd)
    nodes = node_of_cpus(root)
    raws = [RawCpu(cpu, core[cpu], package[cpu], nodes.get(cpu, 0), cpu in online) for cpu in ids]
    return build(raws, f"sysfs:{root}")


def read_sysfs(root: Path) -> Topology:
    """Key cores by package and core (core_id repeats in every package)."""
    topo = sysfs_topology(root)
    if topo is None:
        raise TopologyError(f"{root}: no devices/system/cpu/cpu* entries; is this a sysfs tree?")
    return topo
