"""Read CPUs, cores, packages, last-level caches and NUMA nodes from a sysfs tree.

Reads are per core, per package and per cache domain where the kernel offers sibling
lists, not per CPU: each read costs microseconds and a big machine has thousands of
CPUs. Files are opened relative to one open ``devices/system/cpu`` directory, so the
kernel walks three path components per read instead of the whole path.

Quirks of real kernels handled here (docs/placement.md lists them with their rules):
lists ending in ``\\n\\0``; only the hex masks (``thread_siblings``, ``node*/cpumap``);
``physical_package_id`` of -1; no sibling lists at all; no node 0; overlapping nodes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Hashable
from operator import lt
from pathlib import Path

from .cpulist import parse_cpulist
from .errors import CpuListError, TopologyError
from .model import Topology, build_columns

_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
# Most files hold a short line; a small first read is measurably cheaper than a big one.
_SMALL = 256
# Some 5.15 kernels end lists with "\n\0": strip NULs with the whitespace.
_BLANK = b" \t\n\0"

# Reads ``path`` (relative to the directory the reader was made for): None when missing.
Reader = Callable[[str], bytes | None]

# The files naming a CPU set, best first: a ``*_list`` file, else its hex mask twin.
_CORE_FILES = ("core_cpus_list", "thread_siblings_list", "core_cpus", "thread_siblings")
_PACKAGE_FILES = ("package_cpus_list", "core_siblings_list", "package_cpus", "core_siblings")
_MASKS = frozenset(
    {"core_cpus", "thread_siblings", "package_cpus", "core_siblings", "cpumap", "shared_cpu_map"}
)


def _error(base: str, path: str, exc: OSError) -> TopologyError:
    return TopologyError(f"{os.path.join(base, path)}: cannot read ({exc.strerror or exc})")


def _rest(fd: int, first: bytes) -> bytes:
    """``first`` filled the small buffer: read on to the end (long lists come a page at
    a time from bin attributes, so a short read proves nothing; only an empty one does)."""
    parts = [first]
    while chunk := os.read(fd, 65536):
        parts.append(chunk)
    return b"".join(parts)


def _reader(base: str, dir_fd: int) -> Reader:
    """A reader of files under ``base`` (open as ``dir_fd``); errors name the full path."""

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
    return data.strip(_BLANK).decode("ascii", "replace")


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
    text = data.strip(_BLANK)
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


def _mask(data: bytes, base: str, path: str) -> tuple[int, ...]:
    """A hex CPU mask as the kernel prints it: 32-bit words, most significant first."""
    text = _text(data)
    ids: list[int] = []
    bit = 0
    for word in reversed(text.split(",")):
        try:
            value = int(word, 16) if word.strip() else -1
        except ValueError:
            value = -1
        if value < 0:
            raise TopologyError(f"{os.path.join(base, path)}: {text!r} is not a hex CPU mask")
        while value:
            low = value & -value
            ids.append(bit + low.bit_length() - 1)
            value ^= low
        bit += 32
    return tuple(ids)


def _cpu_set(
    read: Reader, base: str, directory: str, names: tuple[str, ...]
) -> tuple[int, ...] | None:
    """The first of ``names`` under ``directory`` that exists, as a CPU list or (names in
    ``_MASKS``) a hex mask; None when none exists."""
    for name in names:
        path = f"{directory}/{name}"
        data = read(path)
        if data is None:
            continue
        if name in _MASKS:
            return _mask(data, base, path)
        return _ids(data) or _slow_list(data, base, path)
    return None


def _numbered(directory: Path | str, prefix: str) -> list[int]:
    """Numbers of entries like ``cpu12`` or ``node3``; skips ``cpufreq`` and kin."""
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    found = re.findall(rf"^{prefix}([0-9]+)$", "\n".join(names), re.MULTILINE)
    return sorted(map(int, found))


def cpu_dirs(root: Path) -> list[int]:
    return _numbered(root / "devices/system/cpu", "cpu")


def node_of_cpus(root: Path) -> dict[int, int]:
    """CPU id -> NUMA node from ``node*/cpulist`` (else ``node*/cpumap``) of the online
    nodes; empty without NUMA support. A CPU in two nodes' lists stays in the lowest."""
    base = f"{root}/devices/system/node"
    numbers = _numbered(base, "node")
    if not numbers:
        return {}
    try:
        dir_fd = os.open(base, _FLAGS | os.O_DIRECTORY)
    except OSError as exc:
        raise TopologyError(f"{base}: cannot read ({exc.strerror or exc})") from None
    nodes: dict[int, int] = {}
    try:
        read = _reader(base, dir_fd)
        online = _cpu_set(read, base, ".", ("online",))
        for node in numbers:
            if online is not None and node not in online:
                continue
            for cpu in _cpu_set(read, base, f"node{node}", ("cpulist", "cpumap")) or ():
                nodes.setdefault(cpu, node)
    finally:
        os.close(dir_fd)
    return nodes


def _online(read: Reader, base: str, ids: list[int]) -> set[int]:
    """The ``online`` list, else each ``cpuN/online`` (cpu0 often has none: online)."""
    listed = _cpu_set(read, base, ".", ("online",))
    if listed is not None:
        return set(listed)
    return {cpu for cpu in ids if (read(f"cpu{cpu}/online") or b"").strip(_BLANK) != b"0"}


def _packages(read: Reader, base: str, ids: list[int]) -> dict[int, int]:
    """CPU -> package: one id and one list per package, per CPU only without lists.

    A ``physical_package_id`` of -1 (s390, POWER LPARs) or none is unknown: such a CPU's
    package is the one its package list names, else its own; these packages get
    numbers after the highest known id, so distinct packages are never merged."""
    package: dict[int, int] = {}
    for cpu in ids:
        if cpu in package:
            continue
        topo = f"cpu{cpu}/topology"
        found = _int(read, base, f"{topo}/physical_package_id")
        same = _cpu_set(read, base, topo, _PACKAGE_FILES) or ()
        if found is None or found < 0:  # unknown: key it by its lowest CPU, below zero
            found = -1 - (same[0] if cpu in same else cpu)
        for other in same:
            package.setdefault(other, found)
        package[cpu] = found
    unknown = sorted({p for p in package.values() if p < 0}, reverse=True)
    if unknown:
        top = max((p for p in package.values() if p >= 0), default=-1) + 1
        number = {key: top + n for n, key in enumerate(unknown)}
        package = {cpu: number.get(p, p) for cpu, p in package.items()}
    return package


def _core_id(read: Reader, base: str, cpu: int, package: int) -> Hashable:
    """A core key from ``core_id``, within its package and die (ids repeat across both)."""
    core_id = _int(read, base, f"cpu{cpu}/topology/core_id")
    if core_id is None or core_id < 0:
        return ("cpu", cpu)
    die = _int(read, base, f"cpu{cpu}/topology/die_id")
    return ("core", package, -1 if die is None else die, core_id)


def _cores(
    read: Reader,
    base: str,
    dir_fd: int,
    ids: list[int],
    package: dict[int, int],
    online: set[int],
) -> dict[int, Hashable]:
    """CPU -> core key: the lowest CPU of its sibling list, read once per core (online CPUs
    only: an offline CPU's list may be just itself), else ("core", package, die, core_id),
    else ("cpu", id): the CPU alone.

    The first file of a core is read inline: this loop is the reader's hot path."""
    core: dict[int, Hashable] = {}
    open_, read_, close = os.open, os.read, os.close
    for cpu in ids:
        if cpu in core:
            continue
        if cpu in online:
            path = f"cpu{cpu}/topology/core_cpus_list"
            try:
                fd = open_(path, _FLAGS, dir_fd=dir_fd)
            except (FileNotFoundError, NotADirectoryError):
                fd = -1
            except OSError as exc:
                raise _error(base, path, exc) from None
            siblings: tuple[int, ...] | None
            if fd >= 0:
                try:
                    data = read_(fd, _SMALL)
                    if len(data) == _SMALL:
                        data = _rest(fd, data)
                except OSError as exc:
                    raise _error(base, path, exc) from None
                finally:
                    close(fd)
                first, comma, second = data.rstrip(_BLANK).partition(b",")  # "5,2053": SMT2
                if comma and first.isdigit() and second.isdigit():
                    a, b = int(first), int(second)
                    if a < b and (a == cpu or b == cpu):
                        core[a] = core[b] = a
                        continue
                siblings = _ids(data) or _slow_list(data, base, path)
            else:
                siblings = _cpu_set(read, base, f"cpu{cpu}/topology", _CORE_FILES[1:])
            if siblings and cpu in siblings:
                key = siblings[0]
                for other in siblings:
                    core[other] = key
                continue
        core[cpu] = _core_id(read, base, cpu, package[cpu])
    return core


def _join_offline(
    read: Reader, base: str, core: dict[int, Hashable], package: dict[int, int]
) -> None:
    """Put CPUs keyed by core_id (offline ones) into the core their online siblings share;
    costs one core_id read per core of a package with such CPUs, else nothing."""
    by_core_id: dict[Hashable, list[int]] = {}
    for cpu, key in core.items():
        if isinstance(key, tuple) and key[0] == "core":
            by_core_id.setdefault(key, []).append(cpu)
    if not by_core_id:
        return
    packages = {key[1] for key in by_core_id if isinstance(key, tuple)}
    firsts = {key for key in core.values() if type(key) is int}
    for first in firsts:
        if package.get(first) in packages:
            for cpu in by_core_id.get(_core_id(read, base, first, package[first]), ()):
                core[cpu] = first


def _caches(read: Reader, base: str, ids: list[int], online: set[int]) -> dict[int, Hashable]:
    """CPU -> last-level-cache key: per domain, the highest data or unified level in
    ``cpuN/cache/index*`` and its ``shared_cpu_list``. Empty when the first online CPU has
    no cache directory (then no CPU has one, and 4,096 failed lookups are saved)."""
    llc: dict[int, Hashable] = {}
    looked = False
    for cpu in ids:
        if cpu in llc or cpu not in online:
            continue
        try:
            names = os.listdir(f"{base}/cpu{cpu}/cache")
        except OSError:
            names = []
        if not looked and not names:
            return {}
        looked = True
        best: tuple[int, str] | None = None
        for name in sorted(names):
            if not name.startswith("index"):
                continue
            kind = read(f"cpu{cpu}/cache/{name}/type")
            if kind is not None and _text(kind) == "Instruction":
                continue
            level = _int(read, base, f"cpu{cpu}/cache/{name}/level")
            if level is not None and (best is None or level > best[0]):
                best = (level, name)
        if best is None:
            continue
        directory = f"cpu{cpu}/cache/{best[1]}"
        shared = _cpu_set(read, base, directory, ("shared_cpu_list", "shared_cpu_map")) or ()
        if cpu not in shared:
            shared = (cpu,)
        key = ("llc", best[0], shared[0])
        for other in shared:
            llc.setdefault(other, key)
    return llc


def _present(read: Reader, base: str) -> list[int]:
    """The ``present`` list (one read), else the ``cpuN`` directories (a 4,096-entry
    listing costs milliseconds); a ``cpuN`` directory exists for every present CPU."""
    listed = _cpu_set(read, base, ".", ("present",))
    return list(listed) if listed else _numbered(base, "cpu")


def sysfs_topology(root: Path) -> Topology | None:
    """The machine under ``root``, or None when there is no ``devices/system/cpu/cpu*``."""
    base = f"{root}/devices/system/cpu"
    try:
        dir_fd = os.open(base, _FLAGS | os.O_DIRECTORY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TopologyError(f"{base}: cannot read ({exc.strerror or exc})") from None
    try:
        read = _reader(base, dir_fd)
        ids = _present(read, base)
        if not ids:
            return None
        online = _online(read, base, ids)
        package = _packages(read, base, ids)
        core = _cores(read, base, dir_fd, ids, package, online)
        _join_offline(read, base, core, package)
        llc = _caches(read, base, ids, online)
    finally:
        os.close(dir_fd)
    nodes = node_of_cpus(root)
    return build_columns(
        ids,
        list(map(core.__getitem__, ids)),
        list(map(package.__getitem__, ids)),
        list(map(nodes.get, ids)),
        list(map(online.__contains__, ids)),
        list(map(llc.get, ids)),
        f"sysfs:{root}",
    )


def read_sysfs(root: Path) -> Topology:
    """Key cores by package, die and core (core_id repeats in every package)."""
    topo = sysfs_topology(root)
    if topo is None:
        raise TopologyError(f"{root}: no devices/system/cpu/cpu* entries; is this a sysfs tree?")
    return topo
