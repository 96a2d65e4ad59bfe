"""Read CPUs, cores, packages and NUMA nodes from a sysfs tree (no subprocess)."""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from .cpulist import parse_cpulist
from .errors import CpuListError, TopologyError
from .model import RawCpu, Topology, build


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise TopologyError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _read_int(path: Path) -> int | None:
    text = _read(path)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError:
        raise TopologyError(f"{path}: {text!r} is not an integer") from None


def _numbered(directory: Path, prefix: str) -> list[tuple[int, Path]]:
    """Entries like ``cpu12`` or ``node3`` as (number, path); skips ``cpufreq`` and kin."""
    try:
        names = [entry.name for entry in directory.iterdir()]
    except OSError:
        return []
    found = []
    for name in names:
        suffix = name[len(prefix):]
        if name.startswith(prefix) and suffix.isdigit():
            found.append((int(suffix), directory / name))
    return sorted(found)


def cpu_dirs(root: Path) -> list[tuple[int, Path]]:
    return _numbered(root / "devices/system/cpu", "cpu")


def node_of_cpus(root: Path) -> dict[int, int]:
    """CPU id -> NUMA node from ``node*/cpulist``; empty without NUMA support."""
    nodes: dict[int, int] = {}
    for node, path in _numbered(root / "devices/system/node", "node"):
        text = _read(path / "cpulist")
        if text is None:
            continue
        try:
            cpus = parse_cpulist(text, allow_empty=True)
        except CpuListError as exc:
            raise TopologyError(f"{path / 'cpulist'}: {exc}") from None
        for cpu in cpus:
            nodes[cpu] = node
    return nodes


def read_sysfs(root: Path) -> Topology:
    """Key cores by (package, core_id), since core_id repeats in every package."""
    dirs = cpu_dirs(root)
    if not dirs:
        raise TopologyError(f"{root}: no devices/system/cpu/cpu* entries; is this a sysfs tree?")
    nodes = node_of_cpus(root)
    raws = []
    for cpu, path in dirs:
        package = _read_int(path / "topology/physical_package_id")
        core_id = _read_int(path / "topology/core_id")
        online = _read(path / "online") != "0"  # cpu0 often has no online file
        socket = package if package is not None and package >= 0 else 0
        key: Hashable = ("core", socket, core_id) if core_id is not None and core_id >= 0 else (
            "cpu", cpu
        )
        raws.append(RawCpu(cpu, key, socket, nodes.get(cpu, 0), online))
    return build(raws, f"sysfs:{root}")
