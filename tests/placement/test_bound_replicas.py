"""Placement on this machine, with the real numactl and a real OpenMP runtime.

A bound replica's CPU set must hold from its first instruction (the wrapper
execs it), and an OpenMP program must see one place per core of its place.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from supervisor import Config, GroupConfig, Supervisor, TopologySettings, build_plan
from supervisor.numaprobe import NumactlProbe
from tests.helpers import PY, REPO
from topology import Topology

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent


def _plan(cfg: Config):  # type: ignore[no-untyped-def]
    return build_plan(cfg, environ=dict(os.environ), probe=NumactlProbe())


def test_numactl_is_installed() -> None:
    # The placement tests below need the real tool: install it, never skip.
    assert shutil.which("numactl"), "numactl is missing: apt-get install -y numactl"


async def test_bound_replica_affinity_from_first_line(no_leaks: None) -> None:
    topo = Topology.detect()
    cores = topo.places("cores")
    code = "import os; print(sorted(os.sched_getaffinity(0)), os.environ['OMP_PLACES'], flush=True)"
    cfg = Config(
        groups=(
            GroupConfig(name="b", command=(PY, "-c", code), replicas=len(cores), restart="never"),
        ),
        topology=TopologySettings(strategy="cores"),
        base_dir=REPO,
    )
    plan = _plan(cfg)
    assert all(r.argv[0] == "numactl" for r in plan.replicas)
    out = io.BytesIO()
    async with Supervisor(cfg, plan=plan, stdout=out, stderr=io.BytesIO()) as sup:
        assert await sup.wait() == 0
    text = out.getvalue().decode()
    for replica, place in zip(plan.replicas, cores, strict=True):
        first = re.search(rf"^\({replica.name} pid=\d+\) (.*)$", text, re.M)
        assert first, text
        assert first.group(1).startswith(str(list(place.cpus)))
        assert replica.cpus == place.cpus


@pytest.fixture(scope="module")
def omp_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    exe = tmp_path_factory.mktemp("omp") / "omp_places"
    subprocess.run(
        ["gcc", "-O1", "-fopenmp", str(HERE / "omp_places.c"), "-o", str(exe)],
        check=True,
        timeout=120,
    )
    return exe


@pytest.mark.parametrize("strategy", ["all", "cores"])
async def test_openmp_sees_exactly_the_planned_places(
    omp_binary: Path, strategy: str, no_leaks: None
) -> None:
    topo = Topology.detect()
    places = topo.places(strategy)
    cfg = Config(
        groups=(
            GroupConfig(
                name="omp", command=(str(omp_binary),), replicas=len(places), restart="never"
            ),
        ),
        topology=TopologySettings(strategy=strategy),  # type: ignore[arg-type]
        base_dir=REPO,
    )
    out = io.BytesIO()
    async with Supervisor(cfg, stdout=out, stderr=io.BytesIO()) as sup:
        assert await sup.wait() == 0
    text = out.getvalue().decode()
    for i, place in enumerate(places):
        lines = [
            line.split(") ", 1)[1]
            for line in text.splitlines()
            if line.startswith(f"(omp_{i} pid=")
        ]
        cores = place.cores
        assert lines[0] == f"places {len(cores)} threads {len(place.cpus)}"
        for p, core in enumerate(cores):
            assert f"place {p}: {' '.join(map(str, core))}" in lines
        threads = [line for line in lines if line.startswith("thread ")]
        assert len(threads) == len(place.cpus)
        for line in threads:
            _, tid, _, pnum, _, cpu = line.split()
            # OMP_PROC_BIND=close puts thread t on place t: one thread per core.
            assert int(pnum) == int(tid) % len(cores)
            assert int(cpu) in cores[int(pnum)]
