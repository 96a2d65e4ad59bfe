"""Benchmark topology detection + planning on synthetic machines of 256 to 16,384 CPUs.

"detect" here is ``Topology.from_lscpu_json`` of a synthetic ``lscpu -Je`` dump given as
JSON text (parsing included), the path ``--lscpu`` and the lscpu fallback take; the
last columns are ``Topology.detect()`` on a synthetic sysfs tree written to a temp dir
(one sibling-list read per core, so bound by open/read/close), alone and plus the plan.
The sysfs goal (issue 12) is ``detect()`` alone under 20 ms at 4,096 CPUs.
Each run starts after ``gc.collect()``; the collector stays enabled while timing.
"plan" is ``places("nodes")`` plus ``places("cores")``. Best of several runs.

Run: python scripts/bench_topology.py
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from topology import Topology
from topology.testing import lscpu_json, synthetic, write_sysfs

SIZES = (256, 1024, 4096, 16384)
GOAL_S = 0.020


def best(fn: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()  # start each run from a clean heap; GC stays on while timing
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def machine(cpus: int) -> Topology:
    """2 sockets, 2 nodes per socket, SMT2 with Intel-style offset sibling numbering."""
    return synthetic(sockets=2, cores_per_socket=cpus // 4, threads_per_core=2, nodes_per_socket=2)


def _plan(topo: Topology) -> None:
    topo.places("nodes")
    topo.places("cores")


def _detect_and_plan(dump: str) -> None:
    _plan(Topology.from_lscpu_json(dump))


def _detect_sysfs(root: Path, size: int) -> Topology:
    """``detect()`` on the fake tree (no /proc or cgroup there: affinity alone limits)."""
    return Topology.detect(
        sysfs_root=root, proc_root=root / "proc", cgroup_root=root, affinity=range(size)
    )


def _detect_sysfs_and_plan(root: Path, size: int) -> None:
    _plan(_detect_sysfs(root, size))


def main() -> int:
    header = (
        f"{'CPUs':>6} {'detect+plan ms':>15} {'us/CPU':>8} {'vs 256':>7}"
        f" {'(json ms':>9} {'plan ms)':>9} {'sysfs detect ms':>16} {'+plan ms':>9}"
    )
    print(header)
    base = 0.0
    over_goal = False
    sysfs_4096 = 0.0
    for size in SIZES:
        topo = machine(size)
        dump = json.dumps(lscpu_json(topo))

        total = best(partial(_detect_and_plan, dump))
        detect = best(partial(Topology.from_lscpu_json, dump))
        plan = best(partial(_plan, topo))
        with tempfile.TemporaryDirectory() as tmp:
            write_sysfs(topo, tmp)
            sysfs_detect = best(partial(_detect_sysfs, Path(tmp), size), repeat=9)
            sysfs = best(partial(_detect_sysfs_and_plan, Path(tmp), size), repeat=5)
        per_cpu = total / size
        base = base or per_cpu
        over_goal |= size == 4096 and total > GOAL_S
        if size == 4096:
            sysfs_4096 = sysfs_detect
        print(
            f"{size:>6} {total * 1e3:>15.2f} {per_cpu * 1e6:>8.2f} {per_cpu / base:>7.2f}"
            f" {detect * 1e3:>9.2f} {plan * 1e3:>9.2f} {sysfs_detect * 1e3:>16.1f}"
            f" {sysfs * 1e3:>9.1f}"
        )
    print(f"goal: detect+plan under {GOAL_S * 1e3:.0f} ms at 4,096 CPUs (lscpu dump): "
          f"{'MISSED' if over_goal else 'met'}")
    sysfs_missed = sysfs_4096 > GOAL_S
    print(f"goal: Topology.detect() under {GOAL_S * 1e3:.0f} ms on a 4,096-CPU sysfs tree: "
          f"{'MISSED' if sysfs_missed else 'met'} ({sysfs_4096 * 1e3:.1f} ms, "
          f"{sysfs_4096 / GOAL_S:.2f}x the goal)")
    return 1 if over_goal or sysfs_missed else 0


if __name__ == "__main__":
    sys.exit(main())
