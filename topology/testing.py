"""Synthetic machines and fake sysfs trees, for tests here and in users' code.

``write_sysfs`` can also write the quirks of real kernels' trees (lists ending in
``\\n\\0``, hex masks only, package id -1, no sibling lists, missing or overlapping
nodes), so a reader can be checked against each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from .cpulist import format_cpulist
from .errors import TopologyError
from .model import RawCpu, Topology, build


def synthetic(
    sockets: int = 1,
    cores_per_socket: int = 4,
    threads_per_core: int = 1,
    nodes_per_socket: int = 1,
    sibling: str = "offset",
    sparse: bool = False,
    offline: Iterable[int] = (),
    cores_per_llc: int = 0,
) -> Topology:
    """A regular machine. ``offset``: thread t of core c is CPU c + t*ncores (Intel on
    Linux); ``adjacent``: c*threads + t (AMD, Arm). ``sparse`` doubles every id.
    ``cores_per_llc``: cores sharing one last-level cache (0: no cache data); it must
    divide ``cores_per_socket``."""
    if sibling not in ("offset", "adjacent"):
        raise TopologyError(f"sibling {sibling!r}: use 'offset' or 'adjacent'")
    if min(sockets, cores_per_socket, threads_per_core, nodes_per_socket) < 1:
        raise TopologyError("synthetic machine sizes must be at least 1")
    if cores_per_llc < 0 or (cores_per_llc and cores_per_socket % cores_per_llc):
        raise TopologyError("cores_per_llc must be 0 or divide cores_per_socket")
    ncores = sockets * cores_per_socket
    down = set(offline)
    raws = []
    for core in range(ncores):
        socket, local = divmod(core, cores_per_socket)
        node = socket * nodes_per_socket + local * nodes_per_socket // cores_per_socket
        llc = core // cores_per_llc if cores_per_llc else None
        for thread in range(threads_per_core):
            offset = core + thread * ncores
            cpu = offset if sibling == "offset" else core * threads_per_core + thread
            cpu = cpu * 2 if sparse else cpu
            raws.append(RawCpu(cpu, core, socket, node, cpu not in down, llc))
    return build(raws, "synthetic")


# The hex mask each list file has as its twin (older kernels have only these).
_MASK_NAMES = {
    "thread_siblings_list": "thread_siblings",
    "core_siblings_list": "core_siblings",
    "cpulist": "cpumap",
    "shared_cpu_list": "shared_cpu_map",
}


def lscpu_json(topo: Topology) -> dict[str, object]:
    """The ``lscpu -Je`` dump of a topology (numeric fields, as util-linux >= 2.38 prints);
    with cache data, the ``l1d:l1i:l2:l3`` column too (L1 and L2 per core)."""
    cpus: list[dict[str, object]] = []
    for c in topo.cpus:
        entry: dict[str, object] = {
            "cpu": c.id, "node": c.node, "socket": c.socket, "core": c.core, "online": c.online
        }
        if c.llc is not None:
            entry["l1d:l1i:l2:l3"] = f"{c.core}:{c.core}:{c.core}:{c.llc}"
        cpus.append(entry)
    return {"cpus": cpus}


def hex_mask(cpus: Iterable[int], width: int) -> str:
    """A CPU set as the kernel's hex mask: 32-bit words, most significant first, enough
    words for ``width`` CPUs (``00000000,00000003``)."""
    value = sum(1 << cpu for cpu in set(cpus))
    words = max(1, (width + 31) // 32)
    text = f"{value:0{words * 8}x}"
    return ",".join(text[n : n + 8] for n in range(0, len(text), 8))


def write_sysfs(
    topo: Topology,
    root: str | Path,
    *,
    gpus: Iterable[tuple[str, str, int]] = (),
    kernel_lists: bool = True,
    end: str = "\n",
    masks: bool = False,
    unknown_packages: bool = False,
    nodes: Mapping[int, Iterable[int]] | None = None,
    llc_level: int = 3,
) -> Path:
    """Write ``topo`` as a sysfs tree under ``root``; core_id restarts in every package, as
    on real machines. ``gpus`` are (pci_address, vendor like "0x10de", numa_node).

    Quirks of real kernels, one keyword each:
    ``kernel_lists=False`` leaves out the ``online``/``present`` and sibling lists;
    ``end`` ends every list file (``"\\n\\0"``, as some 5.15 kernels do);
    ``masks=True`` writes only the hex masks (``thread_siblings``, ``core_siblings``,
    ``node*/cpumap``, ``shared_cpu_map``), no ``*_list`` files;
    ``unknown_packages=True`` writes ``physical_package_id`` -1 (s390, POWER);
    ``nodes`` replaces the node directories (leave node 0 out, or overlap lists);
    ``llc_level`` 2 makes L2 the last level (Arm clusters); caches are written for CPUs
    whose ``llc`` is set."""
    base = Path(root)
    width = max(c.id for c in topo.cpus) + 1

    def cpuset(path: Path, name: str, cpus: Iterable[int]) -> None:
        if masks:
            (path / _MASK_NAMES[name]).write_text(hex_mask(cpus, width) + end)
        else:
            (path / name).write_text(format_cpulist(cpus) + end)

    cores: dict[int, list[int]] = {}
    packages: dict[int, list[int]] = {}
    llcs: dict[int, list[int]] = {}
    for cpu in topo.cpus:
        packages.setdefault(cpu.socket, []).append(cpu.id)
        if cpu.online:
            cores.setdefault(cpu.core, []).append(cpu.id)
            if cpu.llc is not None:
                llcs.setdefault(cpu.llc, []).append(cpu.id)
    local: dict[tuple[int, int], int] = {}
    per_socket: dict[int, int] = {}
    for cpu in topo.cpus:
        if (cpu.socket, cpu.core) not in local:
            local[cpu.socket, cpu.core] = per_socket.get(cpu.socket, 0)
            per_socket[cpu.socket] = local[cpu.socket, cpu.core] + 1
        core_id = local[cpu.socket, cpu.core]
        directory = base / f"devices/system/cpu/cpu{cpu.id}"
        (directory / "topology").mkdir(parents=True, exist_ok=True)
        (directory / "topology/core_id").write_text(f"{core_id}\n")
        package_id = -1 if unknown_packages else cpu.socket
        (directory / "topology/physical_package_id").write_text(f"{package_id}\n")
        if cpu.id != 0:
            (directory / "online").write_text("1\n" if cpu.online else "0\n")
        if kernel_lists and cpu.online:
            if masks:  # kernels with only the old mask names
                cpuset(directory / "topology", "thread_siblings_list", cores[cpu.core])
                cpuset(directory / "topology", "core_siblings_list", packages[cpu.socket])
            else:
                cpuset(directory / "topology", "core_cpus_list", cores[cpu.core])
                cpuset(directory / "topology", "package_cpus_list", packages[cpu.socket])
        if cpu.online and cpu.llc is not None:
            _write_caches(directory / "cache", cores[cpu.core], llcs[cpu.llc], llc_level, cpuset)
    if kernel_lists:
        everything = format_cpulist(c.id for c in topo.cpus) + end
        (base / "devices/system/cpu/online").write_text(format_cpulist(topo.online) + end)
        (base / "devices/system/cpu/present").write_text(everything)
        (base / "devices/system/cpu/possible").write_text(everything)
    if nodes is None:
        by_node: dict[int, list[int]] = {}
        for cpu in topo.cpus:
            if cpu.node is not None:
                by_node.setdefault(cpu.node, []).append(cpu.id)
        nodes = by_node
    for node, ids in nodes.items():
        directory = base / f"devices/system/node/node{node}"
        directory.mkdir(parents=True, exist_ok=True)
        cpuset(directory, "cpulist", ids)
    for address, vendor, numa_node in gpus:
        directory = base / "bus/pci/devices" / address
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "class").write_text("0x030200\n")
        (directory / "vendor").write_text(f"{vendor}\n")
        (directory / "numa_node").write_text(f"{numa_node}\n")
    return base


def _write_caches(
    directory: Path,
    core: list[int],
    llc: list[int],
    llc_level: int,
    cpuset: Callable[[Path, str, Iterable[int]], None],
) -> None:
    """index0/1: L1 data and instruction per core; then L2 per core and L3 per domain, or
    (``llc_level`` 2) L2 per domain."""
    levels = [(1, "Data", core), (1, "Instruction", core)]
    levels += [(2, "Unified", core), (3, "Unified", llc)] if llc_level == 3 else [
        (2, "Unified", llc)
    ]
    for index, (level, kind, shared) in enumerate(levels):
        path = directory / f"index{index}"
        path.mkdir(parents=True, exist_ok=True)
        (path / "level").write_text(f"{level}\n")
        (path / "type").write_text(f"{kind}\n")
        cpuset(path, "shared_cpu_list", shared)
