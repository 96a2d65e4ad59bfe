"""CPU, core and NUMA topology, the place planner and the binding renderer.

Stands alone: it never imports ``supervisor``.
"""

from .binding import omp_env, wrapper_argv
from .cpulist import format_cpulist, parse_cpulist
from .errors import CpuListError, TopologyError
from .model import Cpu, Place, Topology

__all__ = [
    "Cpu",
    "CpuListError",
    "Place",
    "Topology",
    "TopologyError",
    "format_cpulist",
    "omp_env",
    "parse_cpulist",
    "wrapper_argv",
]
