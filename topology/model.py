"""The machine model: CPUs with their core, socket and NUMA node, and what may be used."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from .cpulist import format_cpulist
from .errors import TopologyError


class Cpu(NamedTuple):
    """One hardware thread; ``core`` is a machine-wide core index.

    A NamedTuple rather than a frozen dataclass: a 4,096-CPU machine builds
    4,096 of them on every detect(), and tuples are made at C speed.
    """

    id: int
    core: int
    socket: int
    node: int
    online: bool = True


@dataclass(frozen=True, slots=True)
class Place:
    """A set of CPUs one bound worker owns; ``cores`` groups them for ``OMP_PLACES``."""

    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    cores: tuple[tuple[int, ...], ...]
    gpu: int | None = None

    @property
    def cpulist(self) -> str:
        return format_cpulist(self.cpus)


@dataclass(frozen=True, slots=True)
class Topology:
    """A machine: ``cpus`` sorted by id; ``allowed`` is what places may use."""

    cpus: tuple[Cpu, ...]
    allowed: frozenset[int]
    mems_allowed: frozenset[int]
    source: str

    @property
    def nodes(self) -> tuple[int, ...]:
        return tuple(sorted({cpu.node for cpu in self.cpus}))

    @property
    def online(self) -> frozenset[int]:
        return frozenset(cpu.id for cpu in self.cpus if cpu.online)

    def restrict(
        self, allowed: Iterable[int], mems_allowed: Iterable[int] | None = None
    ) -> Topology:
        """The same machine with fewer usable CPUs (never an offline one)."""
        usable = self.online.intersection(allowed)
        mems = self.mems_allowed if mems_allowed is None else frozenset(mems_allowed)
        return Topology(self.cpus, frozenset(usable), mems, self.source)

    @classmethod
    def detect(
        cls,
        *,
        sysfs_root: str | Path = "/sys",
        proc_root: str | Path = "/proc",
        cgroup_root: str | Path = "/sys/fs/cgroup",
        affinity: Iterable[int] | None = None,
    ) -> Topology:
        """This machine, limited to what this process may run on (affinity, cpuset, online)."""
        from .allowed import detect

        return detect(
            sysfs_root=Path(sysfs_root),
            proc_root=Path(proc_root),
            cgroup_root=Path(cgroup_root),
            affinity=affinity,
        )

    @classmethod
    def from_lscpu_json(cls, data: str | bytes | Mapping[str, object]) -> Topology:
        """An ``lscpu -Je`` dump (any util-linux vintage), planned as written."""
        from .lscpu import from_json

        return from_json(data)

    @classmethod
    def from_lscpu_csv(cls, text: str) -> Topology:
        """An ``lscpu -p`` dump, planned as written."""
        from .lscpu import from_csv

        return from_csv(text)

    @classmethod
    def from_sysfs(cls, root: str | Path) -> Topology:
        """A sysfs tree (``root`` is what ``/sys`` is on a live machine), planned as written."""
        from .sysfs import read_sysfs

        return read_sysfs(Path(root))

    @classmethod
    def from_file(cls, path: str | Path) -> Topology:
        """An ``lscpu -Je`` or ``lscpu -p`` dump, told apart by content."""
        from .lscpu import from_file

        return from_file(Path(path))

    def places(
        self,
        strategy: str,
        *,
        smt: int = 1,
        cpus: str = "",
        nodes: str = "",
        reserved: int = 0,
        gpu_root: str | Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> tuple[Place, ...]:
        """Cut the allowed CPUs into disjoint places; see the contract's [topology] keys."""
        from .places import plan

        return plan(
            self,
            strategy,
            smt=smt,
            cpus=cpus,
            nodes=nodes,
            reserved=reserved,
            gpu_root=None if gpu_root is None else Path(gpu_root),
            environ=environ,
        )


class RawCpu(NamedTuple):
    """A reader's view of a CPU before cores get machine-wide indices (a tuple: cheap)."""

    id: int
    core_key: Hashable
    socket: int
    node: int
    online: bool


def build(raw: Iterable[RawCpu], source: str) -> Topology:
    """Number cores by their lowest CPU id and check ids are unique; all readers end here."""
    ordered = sorted(raw, key=lambda r: r.id)
    if not ordered:
        raise TopologyError(f"{source}: no CPUs found")
    core_index: dict[Hashable, int] = {}
    cpus: list[Cpu] = []
    previous = -1
    for r in ordered:
        if r.id == previous:
            raise TopologyError(f"{source}: CPU {r.id} is listed twice")
        previous = r.id
        core = core_index.setdefault(r.core_key, len(core_index))
        cpus.append(Cpu(r.id, core, r.socket, r.node, r.online))
    online = frozenset(c.id for c in cpus if c.online)
    nodes = frozenset(c.node for c in cpus)
    return Topology(tuple(cpus), online, nodes, source)
