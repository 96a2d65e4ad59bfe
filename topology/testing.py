"""Synthetic machines and fake sysfs trees, for tests here and in users' code."""

from __future__ import annotations

from collections.abc import Iterable
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
) -> Topology:
    """A regular machine. ``offset``: thread t of core c is CPU c + t*ncores (Intel on
    Linux); ``adjacent``: c*threads + t (AMD, Arm). ``sparse`` doubles every id."""
    if sibling not in ("offset", "adjacent"):
        raise TopologyError(f"sibling {sibling!r}: use 'offset' or 'adjacent'")
    if min(sockets, cores_per_socket, threads_per_core, nodes_per_socket) < 1:
        raise TopologyError("synthetic machine sizes must be at least 1")
    ncores = sockets * cores_per_socket
    down = set(offline)
    raws = []
    for core in range(ncores):
        socket, local = divmod(core, cores_per_socket)
        node = socket * nodes_per_socket + local * nodes_per_socket // cores_per_socket
        for thread in range(threads_per_core):
            offset = core + thread * ncores
            cpu = offset if sibling == "offset" else core * threads_per_core + thread
            cpu = cpu * 2 if sparse else cpu
            raws.append(RawCpu(cpu, core, socket, node, cpu not in down))
    return build(raws, "synthetic")


def lscpu_json(topo: Topology) -> dict[str, object]:
    """The ``lscpu -Je`` dump of a topology (numeric fields, as util-linux >= 2.38 prints)."""
    return {
        "cpus": [
            {"cpu": c.id, "node": c.node, "socket": c.socket, "core": c.core, "online": c.online}
            for c in topo.cpus
        ]
    }


def write_sysfs(
    topo: Topology,
    root: str | Path,
    *,
    gpus: Iterable[tuple[str, str, int]] = (),
    kernel_lists: bool = True,
) -> Path:
    """Write ``topo`` as a sysfs tree under ``root``; core_id restarts in every package, as
    on real machines. ``gpus`` are (pci_address, vendor like "0x10de", numa_node).
    ``kernel_lists=False`` leaves out the ``online`` and sibling lists, as old kernels do."""
    base = Path(root)
    cores: dict[int, list[int]] = {}
    packages: dict[int, list[int]] = {}
    for cpu in topo.cpus:
        packages.setdefault(cpu.socket, []).append(cpu.id)
        if cpu.online:
            cores.setdefault(cpu.core, []).append(cpu.id)
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
        (directory / "topology/physical_package_id").write_text(f"{cpu.socket}\n")
        if cpu.id != 0:
            (directory / "online").write_text("1\n" if cpu.online else "0\n")
        if kernel_lists and cpu.online:
            (directory / "topology/core_cpus_list").write_text(format_cpulist(cores[cpu.core]))
            package = format_cpulist(packages[cpu.socket])
            (directory / "topology/package_cpus_list").write_text(package)
    if kernel_lists:
        (base / "devices/system/cpu/online").write_text(format_cpulist(topo.online) + "\n")
    by_node: dict[int, list[int]] = {}
    for cpu in topo.cpus:
        by_node.setdefault(cpu.node, []).append(cpu.id)
    for node, ids in by_node.items():
        directory = base / f"devices/system/node/node{node}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpulist").write_text(format_cpulist(ids) + "\n")
    for address, vendor, numa_node in gpus:
        directory = base / "bus/pci/devices" / address
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "class").write_text("0x030200\n")
        (directory / "vendor").write_text(f"{vendor}\n")
        (directory / "numa_node").write_text(f"{numa_node}\n")
    return base
