"""The sysfs reader: which files it needs, every list syntax, long lists, old kernels."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import Topology, TopologyError
from topology.sysfs import sysfs_topology
from topology.testing import synthetic, write_sysfs

CPU = "devices/system/cpu"


def test_reads_one_list_per_core_and_per_package(tmp_path: Path) -> None:
    """Delete every file a per-CPU reader would need: the result must not change."""
    topo = synthetic(sockets=2, cores_per_socket=4, threads_per_core=2, nodes_per_socket=2)
    write_sysfs(topo, tmp_path)
    cores = {c.core for c in topo.cpus}
    firsts = {min(c.id for c in topo.cpus if c.core == core) for core in cores}
    package_firsts = {min(c.id for c in topo.cpus if c.socket == s) for s in (0, 1)}
    for cpu in topo.cpus:
        directory = tmp_path / CPU / f"cpu{cpu.id}/topology"
        (directory / "core_id").unlink()
        if cpu.id not in package_firsts:
            (directory / "physical_package_id").unlink()
            (directory / "package_cpus_list").unlink()
        if cpu.id not in firsts:
            (directory / "core_cpus_list").unlink()
    assert Topology.from_sysfs(tmp_path).cpus == topo.cpus


@pytest.mark.parametrize(
    "form",
    ["{a},{b}\n", "{a}-{b}\n", " {b} , {a},{a} \n", "{a}-{a},{b}"],
    ids=["comma", "range", "unsorted-duplicates-spaces", "one-id-range"],
)
def test_every_sibling_list_syntax(tmp_path: Path, form: str) -> None:
    """Adjacent numbering so ``a-b`` is also a valid way to write the pair."""
    topo = synthetic(sockets=2, cores_per_socket=3, threads_per_core=2, sibling="adjacent")
    write_sysfs(topo, tmp_path)
    for cpu in topo.cpus:
        a, b = sorted(c.id for c in topo.cpus if c.core == cpu.core)
        (tmp_path / CPU / f"cpu{cpu.id}/topology/core_cpus_list").write_text(form.format(a=a, b=b))
    assert Topology.from_sysfs(tmp_path).cpus == topo.cpus


def test_smt4_lists_and_old_kernel_names(tmp_path: Path) -> None:
    """SMT4 offset lists (``0,4,8,12``) under the pre-5.3 file names."""
    topo = synthetic(sockets=1, cores_per_socket=4, threads_per_core=4)
    write_sysfs(topo, tmp_path)
    for directory in (tmp_path / CPU).glob("cpu*/topology"):
        (directory / "core_cpus_list").rename(directory / "thread_siblings_list")
        (directory / "package_cpus_list").rename(directory / "core_siblings_list")
    (tmp_path / CPU / "cpu1/topology/physical_package_id").unlink()  # covered by cpu0's list
    assert (tmp_path / CPU / "cpu0/topology/thread_siblings_list").read_text() == "0,4,8,12\n"
    assert Topology.from_sysfs(tmp_path).cpus == topo.cpus


def test_lists_longer_than_the_first_read(tmp_path: Path) -> None:
    """Sparse ids make the package and node lists hundreds of bytes, past the reader's
    first small read: a node list cut short would leave the last CPUs on node 0."""
    topo = synthetic(sockets=2, cores_per_socket=150, sparse=True, nodes_per_socket=1)
    write_sysfs(topo, tmp_path)
    listed = (tmp_path / "devices/system/node/node1/cpulist").read_text()
    assert len(listed) > 256
    read = Topology.from_sysfs(tmp_path)
    assert read.cpus == topo.cpus
    assert read.cpus[-1].socket == 1 and read.cpus[-1].node == 1


def test_bad_sibling_list_is_named(tmp_path: Path) -> None:
    write_sysfs(synthetic(cores_per_socket=2, threads_per_core=2), tmp_path)
    (tmp_path / CPU / "cpu0/topology/core_cpus_list").write_text("0,x\n")
    with pytest.raises(TopologyError, match=r"cpu0/topology/core_cpus_list: bad CPU list"):
        Topology.from_sysfs(tmp_path)


def test_no_cpu_entries_means_none(tmp_path: Path) -> None:
    """``detect()`` then falls back to lscpu; ``from_sysfs`` says it is no sysfs tree."""
    (tmp_path / CPU / "cpufreq").mkdir(parents=True)
    assert sysfs_topology(tmp_path) is None
    with pytest.raises(TopologyError, match="sysfs tree"):
        Topology.from_sysfs(tmp_path)
