"""Real kernels' sysfs quirks, each written by ``topology.testing.write_sysfs`` and read back.

Every case once made ``detect()`` fail or put CPUs in the wrong core, package or node.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import Topology, wrapper_argv
from topology.testing import hex_mask, synthetic, write_sysfs

CPU = "devices/system/cpu"
# 2 sockets x 2 nodes x 5 cores x SMT2 = 40 CPUs: masks take two 32-bit words.
MACHINE = synthetic(sockets=2, cores_per_socket=10, threads_per_core=2, nodes_per_socket=2)


def _same(read: Topology, topo: Topology) -> None:
    assert read.cpus == topo.cpus
    assert read.nodes == topo.nodes


def test_lists_ending_in_newline_nul_regression(tmp_path: Path) -> None:
    """A 5.15 kernel ends list files with "\\n\\0"; detect() failed on them."""
    write_sysfs(MACHINE, tmp_path, end="\n\0")
    assert (tmp_path / CPU / "cpu0/topology/core_cpus_list").read_bytes() == b"0,20\n\0"
    assert (tmp_path / CPU / "online").read_bytes().endswith(b"\n\0")
    _same(Topology.from_sysfs(tmp_path), MACHINE)
    topo = Topology.detect(
        sysfs_root=tmp_path, proc_root=tmp_path / "proc", cgroup_root=tmp_path, affinity=range(40)
    )
    assert [p.cpus for p in topo.places("nodes")] == [
        (0, 1, 2, 3, 4), (5, 6, 7, 8, 9), (10, 11, 12, 13, 14), (15, 16, 17, 18, 19)
    ]


@pytest.mark.parametrize("end", ["\n", "\n\0"], ids=["newline", "newline-nul"])
def test_hex_masks_only_regression(tmp_path: Path, end: str) -> None:
    """Kernels with only ``thread_siblings``, ``core_siblings`` and ``node*/cpumap``: every
    CPU used to land in node 0 and in a core of its own."""
    write_sysfs(MACHINE, tmp_path, masks=True, end=end)
    topology = tmp_path / CPU / "cpu1/topology"
    assert (topology / "thread_siblings").read_text() == "00000000,00200002" + end
    assert not (topology / "thread_siblings_list").exists()
    assert not (tmp_path / "devices/system/node/node3/cpulist").exists()
    read = Topology.from_sysfs(tmp_path)
    _same(read, MACHINE)
    assert read.nodes == (0, 1, 2, 3)


def test_hex_mask_format() -> None:
    assert hex_mask([0, 1], 2) == "00000003"
    assert hex_mask([0, 33], 40) == "00000002,00000001"
    assert hex_mask([], 64) == "00000000,00000000"


def test_bad_hex_mask_is_named(tmp_path: Path) -> None:
    write_sysfs(synthetic(cores_per_socket=2, threads_per_core=2), tmp_path, masks=True)
    (tmp_path / CPU / "cpu0/topology/thread_siblings").write_text("zz\n")
    with pytest.raises(ValueError, match=r"cpu0/topology/thread_siblings: 'zz' is not a hex"):
        Topology.from_sysfs(tmp_path)


@pytest.mark.parametrize("kernel_lists", [True, False], ids=["with-lists", "no-lists"])
def test_package_id_minus_one_never_merges_packages_regression(
    tmp_path: Path, kernel_lists: bool
) -> None:
    """s390 and POWER LPARs say -1: all packages became package 0, and with core_id alone
    their cores merged. With package lists, packages come from the lists; without, each
    CPU is a package (and a core) of its own."""
    write_sysfs(MACHINE, tmp_path, unknown_packages=True, kernel_lists=kernel_lists)
    assert (tmp_path / CPU / "cpu5/topology/physical_package_id").read_text() == "-1\n"
    read = Topology.from_sysfs(tmp_path)
    if kernel_lists:
        assert read.cpus == MACHINE.cpus
        return
    assert len({c.core for c in read.cpus}) == len(read.cpus)
    assert len({c.socket for c in read.cpus}) == len(read.cpus)
    assert [c.node for c in read.cpus] == [c.node for c in MACHINE.cpus]


def test_known_package_ids_keep_theirs_and_unknown_ones_come_after(tmp_path: Path) -> None:
    write_sysfs(MACHINE, tmp_path, kernel_lists=False)
    for cpu in (0, 20):  # core 0 of package 0 says -1 and has no list: its own package
        (tmp_path / CPU / f"cpu{cpu}/topology/physical_package_id").write_text("-1\n")
    read = Topology.from_sysfs(tmp_path)
    assert (read.cpus[0].socket, read.cpus[20].socket) == (2, 3)
    assert {c.socket for c in read.cpus if c.id not in (0, 20)} == {0, 1}
    assert read.cpus[0].core != read.cpus[20].core  # never merged on core_id 0


def test_no_sibling_lists_key_cores_by_package_die_and_core_id(tmp_path: Path) -> None:
    """core_id restarts in every die of a package: (package, core_id) alone merged cores."""
    topo = synthetic(sockets=1, cores_per_socket=4)
    write_sysfs(topo, tmp_path, kernel_lists=False)
    for cpu, (die, core_id) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        directory = tmp_path / CPU / f"cpu{cpu}/topology"
        (directory / "die_id").write_text(f"{die}\n")
        (directory / "core_id").write_text(f"{core_id}\n")
    read = Topology.from_sysfs(tmp_path)
    assert [c.core for c in read.cpus] == [0, 1, 2, 3]
    (tmp_path / CPU / "cpu2/topology/die_id").write_text("0\n")  # same die, same core_id
    assert Topology.from_sysfs(tmp_path).cpus[2].core == 0


def test_node_zero_absent_is_never_invented_regression(tmp_path: Path) -> None:
    """Node 0 offline: CPUs went to an invented node 0, and --membind=0 named it."""
    topo = synthetic(sockets=2, cores_per_socket=2)
    write_sysfs(topo, tmp_path, nodes={1: [2, 3]})
    read = Topology.from_sysfs(tmp_path)
    assert [c.node for c in read.cpus] == [None, None, 1, 1]
    assert read.nodes == (1,) and read.mems_allowed == {1}
    places = read.places("nodes")
    assert [(p.cpus, p.nodes) for p in places] == [((0, 1), ()), ((2, 3), (1,))]
    assert [wrapper_argv(p, memory="bind", numactl="numactl") for p in places] == [
        ["numactl", "--physcpubind=0-1", "--"],
        ["numactl", "--physcpubind=2-3", "--membind=1", "--"],
    ]
    assert [p.nodes for p in read.places("all")] == [(1,)]
    assert [p.cpus for p in read.places("cores", nodes="1")] == [(2,), (3,)]


def test_offline_node_is_not_read(tmp_path: Path) -> None:
    """A node directory the ``node/online`` list leaves out gives no CPU a node."""
    topo = synthetic(sockets=2, cores_per_socket=2)
    write_sysfs(topo, tmp_path)
    (tmp_path / "devices/system/node/online").write_text("1\n")
    assert [c.node for c in Topology.from_sysfs(tmp_path).cpus] == [None, None, 1, 1]


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ({0: [0, 1, 2], 1: [2, 3]}, [0, 0, 0, 1]),
        ({1: [0, 1, 2, 3], 0: [0, 1]}, [0, 0, 1, 1]),
    ],
    ids=["0-then-1", "1-written-first"],
)
def test_overlapping_node_lists_lowest_node_wins_regression(
    tmp_path: Path, nodes: dict[int, list[int]], expected: list[int]
) -> None:
    """The last node read used to win; now a CPU in two lists stays in the lowest node."""
    write_sysfs(synthetic(cores_per_socket=4), tmp_path, nodes=nodes)
    assert [c.node for c in Topology.from_sysfs(tmp_path).cpus] == expected
