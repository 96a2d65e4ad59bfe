"""Render a place as what a child needs: OpenMP env vars and a numactl/taskset wrapper."""

from __future__ import annotations

from .cpulist import format_cpulist
from .errors import TopologyError
from .model import Place

MEMORY_POLICIES = ("bind", "preferred", "off")


def omp_env(place: Place, reserved: int = 0) -> dict[str, str]:
    """One OpenMP place per core, so each thread is pinned instead of floating over the set."""
    threads = len(place.cpus) - reserved
    if reserved < 0 or threads < 1:
        raise TopologyError(
            f"reserved_cpus = {reserved} with a place of {len(place.cpus)} CPUs "
            f"({place.cpulist}): OMP_NUM_THREADS would be {threads}"
        )
    places = ",".join("{" + ",".join(map(str, core)) + "}" for core in place.cores)
    return {"OMP_NUM_THREADS": str(threads), "OMP_PLACES": places, "OMP_PROC_BIND": "close"}


def wrapper_argv(place: Place, *, memory: str, numactl: str | None) -> list[str]:
    """The argv prefix that pins a child from its first instruction; the command follows it.

    numactl's prefix ends with ``--``; util-linux taskset's must not (``taskset -c CPUS
    COMMAND``: it runs the first word after the list, and would run ``--``). A place with
    no NUMA node gets no memory option: nothing binds to a node sysfs does not show."""
    if memory not in MEMORY_POLICIES:
        raise TopologyError(f"memory policy {memory!r} is unknown; use one of bind, preferred, off")
    if numactl is None:
        if memory != "off":
            raise TopologyError(
                f"numa = {memory!r} needs numactl, which is not on PATH; install it "
                "(apt-get install numactl / dnf install numactl) or set numa = \"off\""
            )
        return ["taskset", "-c", place.cpulist]
    argv = [numactl, f"--physcpubind={place.cpulist}"]
    if memory == "bind" and place.nodes:
        argv.append(f"--membind={format_cpulist(place.nodes)}")
    elif memory == "preferred" and place.nodes:
        argv.append(f"--preferred={place.nodes[0]}")
    argv.append("--")
    return argv
