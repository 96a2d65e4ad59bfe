"""Readers: lscpu JSON in every form, lscpu -p CSV, and sysfs trees, into one model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from topology import Cpu, Topology, TopologyError
from topology.testing import lscpu_json, synthetic, write_sysfs


def test_json_mixed_forms_offline_and_sparse_ids() -> None:
    dump = """{"cpus": [
      {"cpu": "8", "node": "-", "socket": "0", "core": "4", "online": "no"},
      {"cpu": 0, "node": null, "socket": 0, "core": 0, "online": "yes"},
      {"cpu": 2, "socket": 0, "core": 1, "online": false},
      {"cpu": 4, "node": 1, "socket": 1, "core": 2, "online": true, "maxmhz": 1.0}
    ]}"""
    topo = Topology.from_lscpu_json(dump)
    assert topo.cpus == (
        Cpu(0, 0, 0, 0, True),
        Cpu(2, 1, 0, 0, False),
        Cpu(4, 2, 1, 1, True),
        Cpu(8, 3, 0, 0, False),
    )
    assert topo.allowed == {0, 4}
    assert topo.nodes == (0, 1)
    assert [p.cpus for p in topo.places("nodes")] == [(0,), (4,)]


def test_json_bare_dash_is_repaired() -> None:
    dump = '{"cpus": [{"cpu": 0, "node": -, "core": -},{"cpu": 1, "node": -}]}'
    topo = Topology.from_lscpu_json(dump)
    assert [(c.id, c.node) for c in topo.cpus] == [(0, 0), (1, 0)]
    assert len({c.core for c in topo.cpus}) == 2  # no core id: each CPU its own core


def test_json_from_mapping() -> None:
    topo = synthetic(sockets=2, cores_per_socket=2, threads_per_core=2)
    again = Topology.from_lscpu_json(lscpu_json(topo))
    assert again.cpus == topo.cpus


@pytest.mark.parametrize(
    ("dump", "complaint"),
    [
        ("{", "not valid JSON"),
        ("[]", "JSON object"),
        ('{"lscpu": []}', "`lscpu -J` summary"),
        ('{"cpus": [{"cpu": 0}, {"cpu": 0}]}', "CPU 0 is listed twice"),
        ('{"cpus": [{"cpu": "x"}]}', "field 'cpu'"),
        ('{"cpus": [{"cpu": 0, "online": "maybe"}]}', "field 'online'"),
        ('{"cpus": []}', "no CPUs"),
        ('{"cpus": [3]}', "not an object"),
    ],
)
def test_json_refused(dump: str, complaint: str) -> None:
    with pytest.raises(TopologyError, match=complaint):
        Topology.from_lscpu_json(dump)


def test_csv_with_empty_node_and_comments() -> None:
    text = "# comment\n# CPU,Core,Socket,Node,,L1d\n0,0,0,,,0\n1,0,0,,,0\n2,1,0,,,1\n"
    topo = Topology.from_lscpu_csv(text)
    assert [(c.id, c.core, c.node) for c in topo.cpus] == [(0, 0, 0), (1, 0, 0), (2, 1, 0)]


def test_csv_without_header_and_bad_row() -> None:
    assert len(Topology.from_lscpu_csv("0,0,0,0\n1,1,0,0\n").cpus) == 2
    with pytest.raises(TopologyError, match="line 2"):
        Topology.from_lscpu_csv("0,0,0,0\nhello\n")


@pytest.mark.parametrize("kernel_lists", [True, False], ids=["sibling-lists", "core_id-only"])
def test_sysfs_core_id_repeats_per_package(tmp_path: Path, kernel_lists: bool) -> None:
    topo = synthetic(sockets=2, cores_per_socket=3, threads_per_core=2, nodes_per_socket=1)
    write_sysfs(topo, tmp_path, kernel_lists=kernel_lists)
    assert (tmp_path / "devices/system/cpu/cpu3/topology/core_id").read_text() == "0\n"
    read = Topology.from_sysfs(tmp_path)
    assert read.cpus == topo.cpus
    assert not (tmp_path / "devices/system/cpu/cpu0/online").exists()


@pytest.mark.parametrize("kernel_lists", [True, False], ids=["online-list", "per-cpu-online"])
def test_sysfs_offline_and_no_numa(tmp_path: Path, kernel_lists: bool) -> None:
    """Without NUMA in sysfs no CPU is put in an invented node 0: places have no nodes."""
    topo = synthetic(cores_per_socket=2, threads_per_core=2, offline=[2])
    write_sysfs(topo, tmp_path, kernel_lists=kernel_lists)
    for node in (tmp_path / "devices/system/node").iterdir():
        (node / "cpulist").unlink()
    read = Topology.from_sysfs(tmp_path)
    assert read.allowed == {0, 1, 3}
    assert {c.node for c in read.cpus} == {None}
    assert read.nodes == () and read.mems_allowed == frozenset()
    assert [(p.cpus, p.nodes) for p in read.places("cores", smt=0)] == [((0,), ()), ((1, 3), ())]
    assert [p.cpus for p in read.places("nodes", smt=0)] == [(0, 1, 3)]
    # offline CPU 2 stays in core 0 (core_id 0) with CPU 0
    assert [c[:3] for c in read.cpus] == [c[:3] for c in topo.cpus]


def test_sysfs_bad_values_are_named(tmp_path: Path) -> None:
    write_sysfs(synthetic(), tmp_path, kernel_lists=False)
    bad = tmp_path / "devices/system/cpu/cpu1/topology/core_id"
    bad.write_text("zero\n")
    with pytest.raises(TopologyError, match="core_id"):
        Topology.from_sysfs(tmp_path)
    with pytest.raises(TopologyError, match="sysfs tree"):
        Topology.from_sysfs(tmp_path / "nothing")


def test_from_file_tells_json_from_csv(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps(lscpu_json(synthetic())))
    (tmp_path / "b.txt").write_text("0,0,0,0\n1,1,0,0\n")
    assert len(Topology.from_file(tmp_path / "a.json").cpus) == 4
    assert len(Topology.from_file(tmp_path / "b.txt").cpus) == 2
    with pytest.raises(TopologyError, match="cannot read"):
        Topology.from_file(tmp_path / "missing.json")
