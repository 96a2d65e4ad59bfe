"""The planner: properties over synthetic machines, the seed's bugs, filters and GPUs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import Place, Topology, TopologyError
from topology.testing import synthetic, write_sysfs


@st.composite
def machines(draw: st.DrawFn) -> Topology:
    sockets = draw(st.integers(1, 3))
    cores = draw(st.integers(1, 6))
    nodes = draw(st.sampled_from([n for n in (1, 2, 3) if cores % n == 0]))
    threads = draw(st.integers(1, 4))
    topo = synthetic(
        sockets=sockets,
        cores_per_socket=cores,
        threads_per_core=threads,
        nodes_per_socket=nodes,
        sibling=draw(st.sampled_from(["offset", "adjacent"])),
        sparse=draw(st.booleans()),
    )
    ids = [c.id for c in topo.cpus]
    allowed = draw(st.sets(st.sampled_from(ids), min_size=1))
    return topo.restrict(allowed)


@settings(max_examples=200, deadline=None)
@given(machines(), st.sampled_from(["nodes", "cores", "all"]), st.integers(0, 4))
def test_places_properties(topo: Topology, strategy: str, smt: int) -> None:
    places = topo.places(strategy, smt=smt)
    seen: list[int] = [cpu for p in places for cpu in p.cpus]
    assert len(seen) == len(set(seen)), "places overlap"
    assert set(seen) <= topo.allowed
    assert [p.cpus[0] for p in places] == sorted(p.cpus[0] for p in places)
    by_id = {c.id: c for c in topo.cpus}
    per_core: dict[int, list[int]] = {}
    for cpu in seen:
        per_core.setdefault(by_id[cpu].core, []).append(cpu)
    for core, kept in per_core.items():
        allowed_threads = sorted(c.id for c in topo.cpus if c.core == core and c.id in topo.allowed)
        want = allowed_threads if smt == 0 else allowed_threads[:smt]
        assert sorted(kept) == want  # the k lowest-numbered allowed threads of each core
    for p in places:
        assert list(p.cpus) == sorted(p.cpus) and list(p.nodes) == sorted(p.nodes)
        assert p.nodes == tuple(sorted({by_id[c].node for c in p.cpus}))
        assert sorted(c for core in p.cores for c in core) == list(p.cpus)
    assert topo.places(strategy, smt=smt) == places  # stable


def test_smt2_on_smt4_keeps_two_per_core_regression() -> None:
    """vLLM's smt = 2 kept every hardware thread."""
    topo = synthetic(sockets=1, cores_per_socket=4, threads_per_core=4)
    place = topo.places("all", smt=2)[0]
    assert place.cores == ((0, 4), (1, 5), (2, 6), (3, 7))
    assert len(topo.places("all", smt=0)[0].cpus) == 16


def test_adjacent_siblings() -> None:
    topo = synthetic(cores_per_socket=2, threads_per_core=2, sibling="adjacent")
    assert [p.cpus for p in topo.places("cores", smt=0)] == [(0, 1), (2, 3)]
    assert topo.places("all")[0].cpus == (0, 2)


def test_node_filter_and_reserved() -> None:
    topo = synthetic(sockets=2, cores_per_socket=4, nodes_per_socket=2)
    assert [p.cpus for p in topo.places("nodes", nodes="1,3")] == [(2, 3), (6, 7)]
    assert [p.nodes for p in topo.places("cores", nodes="2")] == [(2,), (2,)]
    with pytest.raises(TopologyError, match="node 7 not on this machine"):
        topo.places("nodes", nodes="7")
    with pytest.raises(TopologyError, match=r"place 0 \(CPUs 0-1"):
        topo.places("nodes", reserved=2)
    assert topo.places("nodes", reserved=1)[0].cpus == (0, 1)


def test_filter_that_leaves_nothing_is_an_error() -> None:
    topo = synthetic(sockets=2, cores_per_socket=2).restrict({0, 1})
    with pytest.raises(TopologyError, match="no places"):
        topo.places("nodes", nodes="1")
    assert topo.places("none") == ()


def test_cpu_masks_are_cut_on_their_own() -> None:
    topo = synthetic(sockets=2, cores_per_socket=4)
    assert [p.cpus for p in topo.places("all", cpus="0-2|5-7")] == [(0, 1, 2), (5, 6, 7)]
    assert [p.cpus for p in topo.places("nodes", cpus="2-5")] == [(2, 3), (4, 5)]
    with pytest.raises(TopologyError, match="CPU 3 is in lists 1 and 2"):
        topo.places("all", cpus="0-3|3-4")


def test_cpu_masks_are_narrowed_to_the_allowed_cpus() -> None:
    """One config moves between cpusets: disallowed or absent CPUs are dropped, one warning."""
    topo = synthetic(sockets=2, cores_per_socket=8).restrict(range(12))
    warnings: list[str] = []
    places = topo.places("all", cpus="0-3|8-15,20-23", warnings=warnings)
    assert [p.cpus for p in places] == [(0, 1, 2, 3), (8, 9, 10, 11)]
    assert warnings == [
        "cpus: 12-15,20-23 are not allowed here (offline, absent, or outside this process's "
        "affinity or cpuset); placing on 0-3|8-11 only"
    ]
    with pytest.raises(TopologyError, match=r"list 3 \('20-23'\) has no CPU allowed here"):
        topo.places("all", cpus="0-3|8-11|20-23")
    quiet: list[str] = []
    assert len(topo.places("cores", cpus="0-1", warnings=quiet)) == 2 and quiet == []
    topo.places("all", cpus="0-3|8-15")  # no list given: narrowed all the same


def test_one_dropped_cpu_is_named_in_the_singular() -> None:
    warnings: list[str] = []
    synthetic(cores_per_socket=4, offline=[3]).places("all", cpus="2-3", warnings=warnings)
    assert warnings[0].startswith("cpus: 3 is not allowed here")
    assert warnings[0].endswith("placing on 2 only")


@pytest.mark.parametrize("mask", ["", "auto", "0-1,", "0-1|"])
def test_empty_or_auto_mask_is_a_clear_error_regression(mask: str) -> None:
    """vLLM crashed on an empty or ``auto`` mask; an explicit but empty mask is an error."""
    topo = synthetic()
    if mask == "":
        assert topo.places("all", cpus=mask)[0].cpus == (0, 1, 2, 3)  # "" means all allowed
        return
    with pytest.raises(TopologyError, match="bad CPU list"):
        topo.places("all", cpus=mask)


def test_bad_arguments() -> None:
    topo = synthetic()
    with pytest.raises(TopologyError, match="unknown"):
        topo.places("sockets")
    with pytest.raises(TopologyError, match="smt"):
        topo.places("all", smt=-1)


def _best_plan_time(topo: Topology) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        topo.places("nodes", smt=0)
        topo.places("cores", smt=0)
        best = min(best, time.perf_counter() - start)
    return best


def test_planning_is_not_quadratic_regression() -> None:
    """vLLM took 1.3 s for 4,096 CPUs; 4x the CPUs must cost well under 16x the time."""
    small = synthetic(sockets=2, cores_per_socket=256, threads_per_core=2, nodes_per_socket=2)
    big = synthetic(sockets=8, cores_per_socket=256, threads_per_core=2, nodes_per_socket=2)
    assert len(big.cpus) == 4096
    ratio = _best_plan_time(big) / _best_plan_time(small)
    assert ratio < 10, f"4x CPUs took {ratio:.1f}x the time"
    assert _best_plan_time(big) < 0.5


# A machine with 4 GPUs on 2 nodes: 2 sockets x 5 cores x 2 threads, node = socket.
GPUS = [
    ("0000:17:00.0", "0x10de", 0),
    ("0000:31:00.0", "0x10de", 0),
    ("0000:b1:00.0", "0x10de", 1),
    ("0000:ca:00.0", "0x10de", 1),
]


@pytest.fixture
def gpu_machine(tmp_path: Path) -> tuple[Topology, Path]:
    topo = synthetic(sockets=2, cores_per_socket=5, threads_per_core=2)
    write_sysfs(topo, tmp_path, gpus=[*GPUS, ("0000:00:02.0", "0x8086", 0)])
    (tmp_path / "bus/pci/devices/0000:03:00.0").mkdir()
    (tmp_path / "bus/pci/devices/0000:03:00.0/class").write_text("0x020000\n")  # a NIC
    (tmp_path / "bus/pci/devices/0000:03:00.0/vendor").write_text("0x10de\n")
    return Topology.from_sysfs(tmp_path), tmp_path


def _gpu_places(topo: Topology, root: Path, env: dict[str, str], smt: int = 1) -> list[Place]:
    return list(topo.places("gpus", smt=smt, gpu_root=root, environ=env))


def test_gpus_split_each_node_into_runs(gpu_machine: tuple[Topology, Path]) -> None:
    topo, root = gpu_machine
    places = _gpu_places(topo, root, {})
    assert [(p.cpus, p.nodes, p.gpu) for p in places] == [
        ((0, 1, 2), (0,), 0),
        ((3, 4), (0,), 1),
        ((5, 6, 7), (1,), 2),
        ((8, 9), (1,), 3),
    ]
    assert _gpu_places(topo, root, {}, smt=0)[0].cores == ((0, 10), (1, 11), (2, 12))


def test_gpus_honour_visible_devices(gpu_machine: tuple[Topology, Path]) -> None:
    topo, root = gpu_machine
    places = _gpu_places(topo, root, {"CUDA_VISIBLE_DEVICES": "1,2"})
    assert [(p.cpus, p.gpu) for p in places] == [((0, 1, 2, 3, 4), 1), ((5, 6, 7, 8, 9), 2)]
    with pytest.raises(TopologyError, match="GPU 7 does not exist"):
        _gpu_places(topo, root, {"CUDA_VISIBLE_DEVICES": "7"})
    with pytest.raises(TopologyError, match="no visible"):
        _gpu_places(topo, root, {"CUDA_VISIBLE_DEVICES": "-1"})
    with pytest.raises(TopologyError, match="not a GPU index"):
        _gpu_places(topo, root, {"CUDA_VISIBLE_DEVICES": "GPU-1234"})


def test_gpu_with_unknown_node_is_an_error(tmp_path: Path) -> None:
    topo = synthetic(sockets=2, cores_per_socket=2)
    write_sysfs(topo, tmp_path, gpus=[("0000:17:00.0", "0x1002", -1)])
    with pytest.raises(TopologyError, match=r"AMD GPU 0 \(0000:17:00.0\): NUMA node unknown"):
        topo.places("gpus", gpu_root=tmp_path, environ={})


@settings(max_examples=30, deadline=None)
@given(cores=st.integers(1, 12), gpus=st.integers(1, 6), threads=st.integers(1, 2))
def test_gpu_runs_differ_by_at_most_one_core(
    tmp_path_factory: pytest.TempPathFactory, cores: int, gpus: int, threads: int
) -> None:
    root = tmp_path_factory.mktemp("sys")
    topo = synthetic(cores_per_socket=cores, threads_per_core=threads)
    write_sysfs(topo, root, gpus=[(f"0000:{n:02x}:00.0", "0x10de", 0) for n in range(gpus)])
    if cores < gpus:
        with pytest.raises(TopologyError, match="only"):
            topo.places("gpus", gpu_root=root, environ={})
        return
    places = topo.places("gpus", smt=0, gpu_root=root, environ={})
    sizes = [len(p.cores) for p in places]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == cores
    assert [p.gpu for p in places] == list(range(gpus))
