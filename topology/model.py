"""The machine model: CPUs with their core, socket and NUMA node, and what may be used."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from itertools import compress, count, pairwise, repeat
from operator import itemgetter
from pathlib import Path
from typing import NamedTuple

from .cpulist import format_cpulist
from .errors import TopologyError


class Cpu(NamedTuple):
    """One hardware thread; ``core`` and ``llc`` are machine-wide indices.

    ``node`` is None when sysfs shows the CPU in no NUMA node (never guessed as 0);
    ``llc`` is its last-level-cache domain, None when the source has no cache data.
    A NamedTuple rather than a frozen dataclass: a 4,096-CPU machine builds
    4,096 of them on every detect(), and tuples are made at C speed.
    """

    id: int
    core: int
    socket: int
    node: int | None
    online: bool = True
    llc: int | None = None


@dataclass(frozen=True, slots=True)
class Place:
    """A set of CPUs one bound worker owns; ``cores`` groups them for ``OMP_PLACES``.

    ``nodes`` may be empty: its CPUs are in no NUMA node sysfs shows, so no memory is bound.
    """

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
        return tuple(sorted({cpu.node for cpu in self.cpus if cpu.node is not None}))

    @property
    def online(self) -> frozenset[int]:
        return frozenset([cpu[0] for cpu in self.cpus if cpu[4]])

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
        warnings: list[str] | None = None,
    ) -> tuple[Place, ...]:
        """Cut the allowed CPUs into disjoint places; see the contract's [topology] keys.

        CPUs in ``cpus`` that may not be used here are dropped; one message naming them is
        appended to ``warnings`` when given (a list left empty is still an error).
        """
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
            warnings=warnings,
        )


class RawCpu(NamedTuple):
    """A reader's view of a CPU before cores and caches get machine-wide indices."""

    id: int
    core_key: Hashable
    socket: int
    node: int | None
    online: bool
    llc_key: Hashable | None = None


def _numbers(keys: list[Hashable]) -> list[int]:
    """Number keys 0, 1, ... in order of first appearance, in C-level loops: each key first
    maps to the position it first appears at, then those positions are renumbered."""
    first: dict[Hashable, int] = {}
    positions = list(map(first.setdefault, keys, count()))
    renumber = {position: n for n, position in enumerate(first.values())}
    return list(map(renumber.__getitem__, positions))


def build_columns(
    ids: list[int],
    core_keys: list[Hashable],
    sockets: list[int],
    nodes: list[int | None],
    online: list[bool],
    llc_keys: list[Hashable | None],
    source: str,
) -> Topology:
    """A topology from per-CPU columns with ``ids`` ascending and unique (sysfs gives them
    so): cores and caches are numbered by their lowest CPU id."""
    if not ids:
        raise TopologyError(f"{source}: no CPUs found")
    cores = _numbers(core_keys)
    if llc_keys.count(None) != len(llc_keys):
        numbered = _numbers([key for key in llc_keys if key is not None])
        it = iter(numbered)
        llcs: list[int | None] = [None if key is None else next(it) for key in llc_keys]
    else:
        llcs = [None] * len(ids)
    columns = zip(ids, cores, sockets, nodes, online, llcs, strict=True)
    cpus = tuple(map(tuple.__new__, repeat(Cpu), columns))
    up = frozenset(compress(ids, online))
    mems = frozenset([node for node in set(nodes) if node is not None])
    return Topology(cpus, up, mems, source)


def build(raw: Iterable[RawCpu], source: str) -> Topology:
    """Sort by id and check ids are unique; every reader ends here or in build_columns."""
    ordered = sorted(raw, key=itemgetter(0))
    if not ordered:
        raise TopologyError(f"{source}: no CPUs found")
    ids = [r[0] for r in ordered]
    if len(set(ids)) != len(ids):
        twice = next(a for a, b in pairwise(ids) if a == b)
        raise TopologyError(f"{source}: CPU {twice} is listed twice")
    return build_columns(
        ids,
        [r[1] for r in ordered],
        [r[2] for r in ordered],
        [r[3] for r in ordered],
        [r[4] for r in ordered],
        [r[5] for r in ordered],
        source,
    )
