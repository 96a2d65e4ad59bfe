"""The place planner: cut the allowed CPUs into disjoint places, in linear time.

CPUs are grouped with dicts keyed by core and node; nothing scans all CPUs per CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from .cpulist import format_cpulist, parse_cpulist
from .errors import TopologyError
from .gpus import visible_gpus
from .model import Cpu, Place, Topology

STRATEGIES = ("nodes", "cores", "l3", "all", "gpus", "none")

# A core's kept CPUs, keyed by core index, in ascending order of first CPU.
Cores = dict[int, list[int]]


def _place(cores: Iterable[list[int]], by_id: Mapping[int, Cpu], gpu: int | None = None) -> Place:
    """``cores`` come ascending (by first CPU, each ascending), as ``_keep_threads`` makes them."""
    groups = tuple(tuple(c) for c in cores)
    if len(groups) == 1:
        cpus = groups[0]
        node = by_id[cpus[0]].node
        nodes: tuple[int, ...] = () if node is None else (node,)
    else:
        cpus = tuple(sorted(cpu for group in groups for cpu in group))
        found = {by_id[group[0]].node for group in groups}
        nodes = tuple(sorted(n for n in found if n is not None))
    return Place(cpus, nodes, groups, gpu)


def _keep_threads(universe: list[int], by_id: Mapping[int, Cpu], smt: int) -> Cores:
    """Keep at most ``smt`` lowest-numbered threads of each core (0 keeps all)."""
    cores: Cores = {}
    for cpu in sorted(universe):
        kept = cores.setdefault(by_id[cpu].core, [])
        if smt == 0 or len(kept) < smt:
            kept.append(cpu)
    return cores


def _by_node(cores: Cores, by_id: Mapping[int, Cpu]) -> dict[int | None, list[list[int]]]:
    """Cores per NUMA node; CPUs in no node (sysfs shows none) form one group of their own."""
    nodes: dict[int | None, list[list[int]]] = {}
    for threads in cores.values():
        nodes.setdefault(by_id[threads[0]].node, []).append(threads)
    return nodes


def _by_llc(cores: Cores, topo: Topology, by_id: Mapping[int, Cpu]) -> list[list[list[int]]]:
    """Cores per last-level-cache domain; every kept CPU must have one."""
    groups: dict[int, list[list[int]]] = {}
    for threads in cores.values():
        for cpu in threads:
            if by_id[cpu].llc is None:
                where = (
                    "sysfs shows no cpuN/cache/index*/shared_cpu_list for it"
                    if topo.source.startswith("sysfs:")
                    else "the dump has no cache information; make it with `lscpu -Je`, "
                    "whose L1d:L1i:L2:L3 column names each CPU's caches"
                )
                raise TopologyError(
                    f"strategy 'l3': CPU {cpu} has no last-level cache in {topo.source}: {where}"
                )
        groups.setdefault(by_id[threads[0]].llc or 0, []).append(threads)
    return list(groups.values())


def _gpu_places(
    cores: Cores,
    by_id: Mapping[int, Cpu],
    gpu_root: Path,
    environ: Mapping[str, str],
    filtered: bool,
) -> list[Place]:
    """Per node, split its cores into contiguous runs, one per GPU, sizes within one core."""
    gpus = visible_gpus(gpu_root, environ)
    if not gpus:
        raise TopologyError(
            f"strategy 'gpus': no visible NVIDIA/AMD GPU under {gpu_root / 'bus/pci/devices'} "
            "(check CUDA_VISIBLE_DEVICES / HIP_VISIBLE_DEVICES)"
        )
    nodes = _by_node(cores, by_id)
    per_node: dict[int, list[int]] = {}
    for gpu in gpus:
        per_node.setdefault(gpu.node, []).append(gpu.index)
    places = []
    for node, indices in per_node.items():
        node_cores = nodes.get(node, [])
        if not node_cores and filtered:
            continue
        if len(node_cores) < len(indices):
            raise TopologyError(
                f"strategy 'gpus': node {node} has {len(indices)} GPUs but only "
                f"{len(node_cores)} allowed cores; give each GPU CPUs with 'cpus'"
            )
        size, extra = divmod(len(node_cores), len(indices))
        start = 0
        for n, index in enumerate(indices):
            end = start + size + (1 if n < extra else 0)
            places.append(_place(node_cores[start:end], by_id, gpu=index))
            start = end
    return places


def _cut(strategy: str, cores: Cores, topo: Topology, by_id: Mapping[int, Cpu]) -> list[Place]:
    if not cores:
        return []
    if strategy == "all":
        return [_place(cores.values(), by_id)]
    if strategy == "cores":
        return [_place([threads], by_id) for threads in cores.values()]
    if strategy == "l3":
        return [_place(group, by_id) for group in _by_llc(cores, topo, by_id)]
    return [_place(group, by_id) for group in _by_node(cores, by_id).values()]


def _masks(topo: Topology, cpus: str, warnings: list[str] | None) -> list[list[int]]:
    """Parse ``cpus`` ("0-15|16-31") and narrow each list to the allowed CPUs, so one
    config moves between machines and cpusets; one warning names what was dropped.
    A list left empty, or a CPU in two lists, is an error."""
    masks = []
    owner: dict[int, int] = {}
    dropped: set[int] = set()
    for n, text in enumerate(cpus.split("|")):
        mask = parse_cpulist(text)
        for cpu in mask:
            if cpu in owner:
                raise TopologyError(
                    f"cpus {cpus!r}: CPU {cpu} is in lists {owner[cpu] + 1} and {n + 1}; "
                    "places must not overlap"
                )
            owner[cpu] = n
        kept = [cpu for cpu in mask if cpu in topo.allowed]
        if not kept:
            raise TopologyError(
                f"cpus {cpus!r}: list {n + 1} ({text.strip()!r}) has no CPU allowed here "
                f"(offline, absent, or outside this process's affinity or cpuset); "
                f"allowed CPUs are {format_cpulist(topo.allowed) or 'none'}"
            )
        dropped.update(cpu for cpu in mask if cpu not in topo.allowed)
        masks.append(kept)
    if dropped and warnings is not None:
        many = len(dropped) > 1
        warnings.append(
            f"cpus: {format_cpulist(dropped)} {'are' if many else 'is'} not allowed here "
            "(offline, absent, or outside this process's affinity or cpuset); placing on "
            f"{'|'.join(format_cpulist(mask) for mask in masks)} only"
        )
    return masks


def plan(
    topo: Topology,
    strategy: str,
    *,
    smt: int = 1,
    cpus: str = "",
    nodes: str = "",
    reserved: int = 0,
    gpu_root: Path | None = None,
    environ: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> tuple[Place, ...]:
    """Places for ``strategy``, disjoint and in ascending order of first CPU."""
    if strategy not in STRATEGIES:
        raise TopologyError(f"strategy {strategy!r} is unknown; use one of {', '.join(STRATEGIES)}")
    if smt < 0:
        raise TopologyError(f"smt = {smt}: must be 0 (all threads) or a positive count")
    if reserved < 0:
        raise TopologyError(f"reserved_cpus = {reserved}: must be 0 or more")
    if strategy == "none":
        return ()
    by_id = {cpu.id: cpu for cpu in topo.cpus}
    eligible = set(topo.allowed)
    if nodes.strip():
        wanted = set(parse_cpulist(nodes))
        unknown = wanted.difference(topo.nodes)
        if unknown:
            raise TopologyError(
                f"nodes {nodes!r}: node {format_cpulist(unknown)} not on this machine; "
                f"its nodes are {format_cpulist(topo.nodes)}"
            )
        eligible = {cpu for cpu in eligible if by_id[cpu].node in wanted}
    if cpus.strip():
        masks = _masks(topo, cpus, warnings)
        universes = [[cpu for cpu in mask if cpu in eligible] for mask in masks]
    else:
        universes = [sorted(eligible)]
    places: list[Place] = []
    if strategy == "gpus":
        union = [cpu for universe in universes for cpu in universe]
        root = Path("/sys") if gpu_root is None else gpu_root
        env = os.environ if environ is None else environ
        kept = _keep_threads(union, by_id, smt)
        places = _gpu_places(kept, by_id, root, env, filtered=bool(nodes.strip()))
    else:
        for universe in universes:
            places.extend(_cut(strategy, _keep_threads(universe, by_id, smt), topo, by_id))
    if not places:
        raise TopologyError(
            f"strategy {strategy!r} gives no places: no allowed CPU left "
            f"(allowed {format_cpulist(topo.allowed) or 'none'}, nodes {nodes or 'all'!r}, "
            f"cpus {cpus or 'all'!r})"
        )
    places.sort(key=lambda place: place.cpus[0])
    for number, place in enumerate(places):
        if reserved >= len(place.cpus):
            raise TopologyError(
                f"reserved_cpus = {reserved} leaves no thread in place {number} "
                f"(CPUs {place.cpulist}, {len(place.cpus)} CPUs): OMP_NUM_THREADS would be "
                f"{len(place.cpus) - reserved}; lower reserved_cpus or use bigger places"
            )
    return tuple(places)
