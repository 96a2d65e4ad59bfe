"""The launch plan: what each replica runs, with which environment, where.

A spawn is a value. ``build_plan`` turns a Config and a Topology into argv,
environment, cwd, CPUs and nodes for every replica, touching nothing; the
only effects it may cause go through the injected ``which`` and ``probe``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from topology import Place, Topology, TopologyError, format_cpulist, omp_env, wrapper_argv

from .allocator import PlaceAllocator
from .config import (
    Config,
    ConfigError,
    GroupConfig,
    ProbeSpec,
    expand_placeholders,
    parse_probe,
    placeholder_values,
)
from .envplan import (
    Launcher,
    control_socket_path,
    detect_launcher,
    placement_env,
    strip_launcher,
)
from .sdnotify import MANAGER_VARS
from .sockets import listen_env

Probe = Callable[[Sequence[str]], str | None]
Memory = Literal["bind", "preferred", "off"]

PRIVATE_PREFIX = "PLACEVISOR_"
_INSTALL_NUMACTL = "install numactl (apt-get install numactl, dnf install numactl, apk add numactl)"


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicaPlan:
    """How to start one replica: the spawner executes exactly this."""

    name: str
    group: str
    index: int
    argv: tuple[str, ...]  # wrapper (numactl/taskset) included
    env: Mapping[str, str]  # the child's complete environment
    env_added: Mapping[str, str]  # only what the supervisor adds or sets
    cwd: str  # absolute
    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    place: Place | None = None
    removed_env: tuple[str, ...] = ()  # inherited variables taken out (placement hygiene)
    sockets: tuple[str, ...] = ()  # [[socket]] names, passed as fds 3, 4, ...
    ready: ProbeSpec = field(default_factory=lambda: ProbeSpec(kind="started"))
    health: ProbeSpec | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class LaunchPlan:
    """Every replica in start order, plus what the planner had to give up on.

    ``planner`` plans replicas the static plan does not hold yet (scale-up,
    reload); it carries the places and the wrapper decided once, up front.
    """

    replicas: tuple[ReplicaPlan, ...]
    warnings: tuple[str, ...] = ()
    planner: Planner | None = None
    launcher: Launcher = field(default_factory=Launcher)
    control_socket: str | None = None

    def group(self, name: str) -> tuple[ReplicaPlan, ...]:
        """The replicas of group ``name`` in index order."""
        return tuple(r for r in self.replicas if r.group == name)


def build_plan(
    config: Config,
    *,
    topology: Topology | None = None,
    environ: Mapping[str, str],
    which: Callable[[str], str | None] = shutil.which,
    probe: Probe | None = None,
    node_rank: int | None = None,
    nodes: int | None = None,
) -> LaunchPlan:
    """Plan every replica of ``config``.

    ``environ`` is the environment replicas inherit (copied, never changed);
    ``topology`` is used unless the config names an lscpu dump, and detected
    when neither is given; ``probe(args)`` says whether ``numactl ARGS true``
    works (None) or why not, and is asked only for ``numa = "auto"`` on a
    live (not dumped) topology with more than one node.
    Raises ConfigError, topology problems included (as ``<file>: topology: ...``).
    """
    planner = Planner(
        config,
        topology=topology,
        environ=environ,
        which=which,
        probe=probe,
        node_rank=node_rank,
        nodes=nodes,
    )
    allocator = PlaceAllocator(planner.places)
    replicas = []
    for i, group in enumerate(config.groups):
        if planner.binds(group) and group.replicas > allocator.free_count():
            raise config.error(
                f"group[{i}].replicas",
                _shortage(config, group.replicas, allocator, planner.places),
            )
        for index in range(group.replicas):
            place = allocator.take(f"{group.name}_{index}") if planner.binds(group) else None
            replicas.append(planner.replica(group, index, group.replicas, place))
    return LaunchPlan(
        replicas=tuple(replicas),
        warnings=tuple(planner.warnings),
        planner=planner,
        launcher=planner.launcher,
        control_socket=control_socket_path(
            config,
            node_rank=planner.launcher.known_node_rank,
            environ=environ,
            euid=os.geteuid(),
        ),
    )


class Planner:
    """The decisions made once per config: places, wrapper, memory policy.

    Planning one replica is then pure and cheap, so the engine can plan a
    scale-up or a reload's new replicas inside its loop.
    """

    def __init__(
        self,
        config: Config,
        *,
        topology: Topology | None = None,
        environ: Mapping[str, str],
        which: Callable[[str], str | None] = shutil.which,
        probe: Probe | None = None,
        node_rank: int | None = None,
        nodes: int | None = None,
    ) -> None:
        self.config = config
        self.launcher = detect_launcher(environ, node_rank=node_rank, nodes=nodes)
        # The launcher's per-task variables describe this supervisor, not its replicas.
        # Nor do the service manager's: a replica never inherits systemd's
        # NOTIFY_SOCKET or LISTEN_FDS (it gets its own, when configured).
        self.inherited = strip_launcher(
            {
                k: v
                for k, v in environ.items()
                if not k.startswith(PRIVATE_PREFIX) and k not in MANAGER_VARS
            }
        )
        warnings: list[str] = []
        found = _places(config, topology, self.inherited, warnings)
        self.places: tuple[Place, ...] = found.places
        # A dump describes another machine: probing this kernel would say nothing about it.
        live_probe = None if config.topology.lscpu else probe
        bound = any(g.bind for g in config.groups) and bool(found.places)
        self._wrap = _wrapper(
            config, bound, found.places, which, live_probe, warnings, found.multi_node
        )
        self.warnings = warnings
        self._cwds: dict[str, str] = {}

    def binds(self, group: GroupConfig) -> bool:
        return group.bind and self.config.topology.strategy != "none"

    def replica(
        self, group: GroupConfig, index: int, replicas: int, place: Place | None
    ) -> ReplicaPlan:
        """How replica ``index`` of ``group`` runs on ``place`` (None: unbound)."""
        config = self.config
        launcher = self.launcher
        cwd = self._cwds.get(group.cwd)
        if cwd is None:  # resolved once per directory, not once per replica
            cwd = self._cwds[group.cwd] = str((config.base_dir / group.cwd).resolve())
        values = placeholder_values(
            group.name,
            index,
            replicas,
            node_rank=launcher.node_rank,
            nodes=launcher.nodes,
            sockets=group.sockets,
        )
        group_env = {k: expand_placeholders(v, values) for k, v in group.env.items()}
        own = {
            "SUPERVISOR_GROUP": group.name,
            "SUPERVISOR_NAME": values["name"],
            "SUPERVISOR_INDEX": values["index"],
            "SUPERVISOR_REPLICAS": values["replicas"],
            "SUPERVISOR_NODE_RANK": values["node_rank"],
            "SUPERVISOR_RANK": values["rank"],
            "SUPERVISOR_WORLD_SIZE": values["world_size"],
            **listen_env(group.sockets),
        }
        command = tuple(expand_placeholders(arg, values) for arg in group.command)
        prefix: tuple[str, ...] = ()
        removed: tuple[str, ...] = ()
        if place is not None:
            hygiene = placement_env(
                self.inherited,
                omp_env(place, config.topology.reserved_cpus),
                group_env,
                omp_bind=group.omp_bind,
                place_cpus=len(place.cpus),
                replica=group.name,
            )
            for warning in hygiene.warnings:
                if warning not in self.warnings:
                    self.warnings.append(warning)
            added = hygiene.added | own
            removed = hygiene.removed
            env = hygiene.apply(self.inherited) | own
            prefix = tuple(self._wrap(place))
        else:
            added = group_env | own
            env = self.inherited | added
        ready = (
            self._probe(group, group.ready, values, "ready", health=False)
            if group.ready
            else _STARTED
        )
        health = (
            self._probe(group, group.health, values, "health", health=True)
            if group.health
            else None
        )
        return ReplicaPlan(
            name=values["name"],
            group=group.name,
            index=index,
            argv=prefix + command,
            env=env,
            env_added=added,
            cwd=cwd,
            cpus=place.cpus if place else (),
            nodes=place.nodes if place else (),
            place=place,
            removed_env=removed,
            sockets=tuple(group.sockets),
            ready=ready,
            health=health,
        )

    def _probe(
        self, group: GroupConfig, text: str, values: Mapping[str, str], key: str, *, health: bool
    ) -> ProbeSpec:
        try:
            return parse_probe(expand_placeholders(text, values), health=health)
        except ValueError as exc:
            names = [g.name for g in self.config.groups]
            position = names.index(group.name) if group.name in names else 0
            raise self.config.error(
                f"group[{position}].{key}", f"for {values['name']}: {exc}"
            ) from None


@dataclass(frozen=True, slots=True)
class _Places:
    places: tuple[Place, ...]
    multi_node: bool


_STARTED = ProbeSpec(kind="started")

#: fds the supervisor holds for each replica: two pipe read ends and a pidfd.
FDS_PER_REPLICA = 3
#: fds the supervisor needs besides: its loop, log, guard, control socket, clients.
FDS_BASE = 64


def fd_problem(config: Config, hard_limit: int) -> str | None:
    """Why the fd hard limit cannot hold this config's replicas, or None."""
    replicas = sum(g.replicas for g in config.groups)
    needed = FDS_BASE + FDS_PER_REPLICA * replicas + len(config.sockets)
    if hard_limit < 0 or needed <= hard_limit:  # RLIM_INFINITY is -1
        return None
    return (
        f"{replicas} replicas need about {needed} open files in the supervisor but the hard "
        f"limit is {hard_limit}; raise it (ulimit -Hn, LimitNOFILE= in a systemd unit) "
        "or run fewer replicas"
    )


def _places(
    config: Config,
    given: Topology | None,
    environ: Mapping[str, str],
    warnings: list[str] | None = None,
) -> _Places:
    """Compute the places once, from the dump, the given topology or this machine."""
    settings = config.topology
    if settings.strategy == "none":
        return _Places((), False)
    try:
        if settings.lscpu:
            topo = Topology.from_file(config.base_dir / settings.lscpu)
        else:
            topo = given if given is not None else Topology.detect()
        places = topo.places(
            settings.strategy,
            smt=settings.smt,
            cpus=settings.cpus,
            nodes=settings.nodes,
            reserved=0,
            environ=environ,
            warnings=warnings,
        )
    except TopologyError as exc:
        raise ConfigError(f"{config.source}: topology: {exc}") from None
    smallest = min(places, key=lambda p: len(p.cpus), default=None)
    if smallest is not None and settings.reserved_cpus >= len(smallest.cpus):
        raise config.error(
            "topology.reserved_cpus",
            f"{settings.reserved_cpus} reserved CPUs leave no OpenMP thread in a place of "
            f"{len(smallest.cpus)} CPUs ({format_cpulist(smallest.cpus)}); "
            f"set reserved_cpus below {len(smallest.cpus)}",
        )
    return _Places(places, len(topo.nodes) > 1)


def _shortage(
    config: Config, wanted: int, allocator: PlaceAllocator, places: tuple[Place, ...]
) -> str:
    strategy = config.topology.strategy
    total = len(places)
    free = [p for p in places if allocator.holder(p) is None]
    shown = "; ".join(f"CPUs {p.cpulist}" for p in free[:4]) + ("; ..." if len(free) > 4 else "")
    if total == 0:
        given = f'strategy "{strategy}" gives no place'
    else:
        noun = "place" if total == 1 else "places"
        given = f'strategy "{strategy}" gives only {total} {noun}'
        if len(free) < total:
            given += f", {len(free)} left after the groups before it"
        if free:
            given += f" ({shown})"
    return (
        f"{wanted} bound replicas but {given}; "
        "lower replicas, set bind = false, or pick another strategy"
    )


def _wrapper(
    config: Config,
    bound: bool,
    places: tuple[Place, ...],
    which: Callable[[str], str | None],
    probe: Probe | None,
    warnings: list[str],
    multi_node: bool,
) -> Callable[[Place], list[str]]:
    """Decide the memory policy once and return the per-place wrapper builder."""
    if not bound:
        return lambda place: []
    numa = config.topology.numa
    numactl = "numactl" if which("numactl") is not None else None
    if numactl is None:
        if numa in ("bind", "preferred"):
            raise config.error(
                "topology.numa",
                f'"{numa}" needs numactl, which is not on PATH; {_INSTALL_NUMACTL}, '
                'or set numa = "auto" to bind CPUs with taskset',
            )
        if which("taskset") is None:
            raise config.error(
                "topology.strategy",
                "binding replicas needs numactl or taskset and neither is on PATH; "
                f"{_INSTALL_NUMACTL}, or set bind = false",
            )
        if numa == "auto" and multi_node:
            warnings.append(
                "numactl not found: replicas are bound to CPUs with taskset but their memory "
                f"is not bound to their NUMA node; {_INSTALL_NUMACTL}"
            )
        return lambda place: wrapper_argv(place, memory="off", numactl=None)
    memory: Memory
    if numa == "auto":
        memory = "bind" if multi_node else "off"
        if memory == "bind" and probe is not None:
            refusal = _probe_all(places, probe)
            if refusal is not None:
                memory = "off"
                warnings.append(
                    'numa = "auto": memory binding is not allowed here, binding CPUs only '
                    f"({refusal}); containers need the SYS_NICE capability for set_mempolicy"
                )
    else:
        memory = numa
    return lambda place: wrapper_argv(place, memory=memory, numactl=numactl)


def _probe_all(places: Iterable[Place], probe: Probe) -> str | None:
    """Ask the probe once per distinct node set; the first refusal wins."""
    asked: set[tuple[str, ...]] = set()
    for place in places:
        if not place.nodes:
            continue  # a CPU sysfs puts in no node: nothing to bind its memory to
        args = (f"--membind={format_cpulist(place.nodes)}",)
        if args in asked:
            continue
        asked.add(args)
        refusal = probe(list(args))
        if refusal is not None:
            return refusal
    return None
