"""The allowed set under fake trees: affinity, cgroup v1/v2 cpusets, Mems_allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import Topology, TopologyError
from topology.testing import synthetic, write_sysfs

STATUS = "Name:\tpython\nCpus_allowed_list:\t0-15\nMems_allowed_list:\t{mems}\n"


def _trees(tmp_path: Path, cgroup: str, mems: str = "0-1") -> tuple[Path, Path, Path]:
    sysfs, proc, cgroups = tmp_path / "sys", tmp_path / "proc", tmp_path / "cgroup"
    write_sysfs(synthetic(sockets=2, cores_per_socket=4, threads_per_core=2, offline=[15]), sysfs)
    (proc / "self").mkdir(parents=True)
    (proc / "self/cgroup").write_text(cgroup)
    (proc / "self/status").write_text(STATUS.format(mems=mems))
    cgroups.mkdir()
    return sysfs, proc, cgroups


def _detect(trees: tuple[Path, Path, Path], affinity: range | set[int] = range(64)) -> Topology:
    sysfs, proc, cgroups = trees
    return Topology.detect(sysfs_root=sysfs, proc_root=proc, cgroup_root=cgroups, affinity=affinity)


def test_cgroup_v2_cpuset(tmp_path: Path) -> None:
    trees = _trees(tmp_path, "0::/system.slice/job.scope\n", mems="1")
    job = trees[2] / "system.slice/job.scope"
    job.mkdir(parents=True)
    (job / "cpuset.cpus.effective").write_text("4-7,12-15\n")
    topo = _detect(trees)
    assert topo.allowed == {4, 5, 6, 7, 12, 13, 14}  # 15 is offline
    assert topo.mems_allowed == {1}
    assert [p.cpus for p in topo.places("nodes", smt=0)] == [(4, 5, 6, 7, 12, 13, 14)]


def test_cgroup_v1_cpuset_falls_back_to_parent(tmp_path: Path) -> None:
    trees = _trees(tmp_path, "4:memory:/x\n3:cpuset:/docker/abc\n0::/\n")
    (trees[2] / "cpuset").mkdir()
    (trees[2] / "cpuset/cpuset.effective_cpus").write_text("0-2\n")  # container sees its root
    topo = _detect(trees, affinity={1, 2, 3})
    assert topo.allowed == {1, 2}


def test_cgroup_v1_cpus_file(tmp_path: Path) -> None:
    trees = _trees(tmp_path, "3:cpuset:/job\n")
    (trees[2] / "cpuset/job").mkdir(parents=True)
    (trees[2] / "cpuset/job/cpuset.cpus").write_text("8-9\n")
    assert _detect(trees).allowed == {8, 9}


def test_no_cgroup_means_affinity_and_online(tmp_path: Path) -> None:
    trees = _trees(tmp_path, "0::/\n")
    assert _detect(trees).allowed == set(range(15))
    with pytest.raises(TopologyError, match="no CPU is both online and allowed"):
        _detect(trees, affinity={15})
