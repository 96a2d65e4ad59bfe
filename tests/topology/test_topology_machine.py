"""On this very machine: detect() agrees with lscpu, affinity, and taskset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from topology import Topology

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


def test_detect_agrees_with_affinity() -> None:
    topo = Topology.detect()
    assert topo.allowed <= os.sched_getaffinity(0)
    assert topo.allowed == os.sched_getaffinity(0) & topo.online


@pytest.mark.skipif(shutil.which("lscpu") is None, reason="lscpu not installed")
def test_detect_agrees_with_lscpu() -> None:
    done = subprocess.run(["lscpu", "-Je"], capture_output=True, check=True, timeout=30)
    dumped = Topology.from_lscpu_json(done.stdout)
    topo = Topology.detect()
    assert [(c.id, c.node, c.online) for c in topo.cpus] == [
        (c.id, c.node, c.online) for c in dumped.cpus
    ]
    # Same grouping of CPUs into cores, whatever the numbering.
    def cores(t: Topology) -> set[tuple[int, ...]]:
        groups: dict[int, list[int]] = {}
        for c in t.cpus:
            groups.setdefault(c.core, []).append(c.id)
        return {tuple(g) for g in groups.values()}

    assert cores(topo) == cores(dumped)


@pytest.mark.skipif(
    shutil.which("taskset") is None or 1 not in os.sched_getaffinity(0),
    reason="needs taskset and CPU 1",
)
def test_cpu0_never_placed_under_taskset() -> None:
    code = (
        "import json; from topology import Topology; t = Topology.detect(); "
        "print(json.dumps({s: [list(p.cpus) for p in t.places(s, smt=0)] "
        "for s in ('nodes', 'cores', 'all')}))"
    )
    done = subprocess.run(
        ["taskset", "-c", "1", sys.executable, "-c", code],
        capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
    )
    places = json.loads(done.stdout)
    assert places == {"nodes": [[1]], "cores": [[1]], "all": [[1]]}


def test_topology_never_imports_supervisor() -> None:
    code = (
        "import sys, topology.cli, topology.testing, topology.places; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'supervisor'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert done.stdout.strip() == "[]"
