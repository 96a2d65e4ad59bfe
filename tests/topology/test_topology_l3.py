"""``strategy = "l3"``: one place per last-level-cache domain, from sysfs or an lscpu dump."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from topology import Topology, TopologyError, parse_cpulist
from topology.cli import main
from topology.testing import lscpu_json, synthetic, write_sysfs

# An EPYC with 8 CCDs: 64 cores, SMT2 (thread 2 of core c is CPU c + 64), 8 cores per L3,
# NPS4 (2 CCDs per NUMA node).
EPYC = synthetic(
    cores_per_socket=64, threads_per_core=2, nodes_per_socket=4, cores_per_llc=8
)


def _cpus(topo: Topology, **kwargs: object) -> list[tuple[int, ...]]:
    return [p.cpus for p in topo.places("l3", **kwargs)]  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def epyc_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sysfs(EPYC, tmp_path_factory.mktemp("epyc"))


@pytest.fixture
def epyc(epyc_tree: Path) -> Topology:
    return Topology.from_sysfs(epyc_tree)


def test_epyc_ccds_from_sysfs(epyc: Topology, epyc_tree: Path) -> None:
    index3 = epyc_tree / "devices/system/cpu/cpu9/cache/index3"
    assert (index3 / "shared_cpu_list").read_text() == "8-15,72-79\n"
    assert epyc.cpus == EPYC.cpus
    assert _cpus(epyc) == [tuple(range(8 * n, 8 * n + 8)) for n in range(8)]
    smt = epyc.places("l3", smt=0)
    assert smt[1].cpus == (*range(8, 16), *range(72, 80))
    assert smt[1].cores[0] == (8, 72)
    assert [p.nodes for p in smt] == [(0,), (0,), (1,), (1,), (2,), (2,), (3,), (3,)]


def test_l3_follows_the_other_strategies_rules(epyc: Topology) -> None:
    narrowed = epyc.restrict(set(range(4, 20)) | {68})
    assert _cpus(narrowed) == [(4, 5, 6, 7), tuple(range(8, 16)), (16, 17, 18, 19)]
    assert narrowed.places("l3", smt=0)[0].cpus == (4, 5, 6, 7, 68)
    assert _cpus(epyc, cpus="0-11|16-19") == [tuple(range(8)), (8, 9, 10, 11), (16, 17, 18, 19)]
    assert _cpus(epyc, nodes="3") == [tuple(range(48, 56)), tuple(range(56, 64))]
    warnings: list[str] = []
    assert len(narrowed.places("l3", cpus="0-15", warnings=warnings)) == 2
    assert warnings and warnings[0].startswith("cpus: 0-3 are not allowed here")
    with pytest.raises(TopologyError, match="reserved_cpus = 8"):
        epyc.places("l3", reserved=8)


@pytest.mark.parametrize("llc_level", [3, 2], ids=["l3-per-cluster", "l2-last-level"])
def test_arm_clusters(tmp_path: Path, llc_level: int) -> None:
    """Arm: clusters of 4 cores share the last level, an L3 or (no L3) an L2."""
    arm = synthetic(sockets=1, cores_per_socket=16, cores_per_llc=4)
    write_sysfs(arm, tmp_path, llc_level=llc_level)
    cache = tmp_path / "devices/system/cpu/cpu5/cache"
    assert (cache / f"index{llc_level}/level").read_text() == f"{llc_level}\n"
    assert not (cache / "index3").exists() or llc_level == 3
    read = Topology.from_sysfs(tmp_path)
    assert _cpus(read) == [(0, 1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11), (12, 13, 14, 15)]


def test_cache_masks_only(tmp_path: Path) -> None:
    write_sysfs(EPYC, tmp_path, masks=True, end="\n\0")
    assert (tmp_path / "devices/system/cpu/cpu0/cache/index3/shared_cpu_map").exists()
    assert Topology.from_sysfs(tmp_path).cpus == EPYC.cpus


def test_lscpu_dump_with_cache_column() -> None:
    dump = lscpu_json(EPYC)
    assert dump["cpus"][65]["l1d:l1i:l2:l3"] == "1:1:1:0"  # type: ignore[index]
    assert _cpus(Topology.from_lscpu_json(dump), smt=0) == _cpus(EPYC, smt=0)
    csv = "# CPU,Core,Socket,Node,,L1d,L1i,L2,L3\n0,0,0,0,,0,0,0,0\n1,1,0,0,,1,1,1,1\n"
    assert _cpus(Topology.from_lscpu_csv(csv)) == [(0,), (1,)]


def test_no_cache_information_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="the dump has no cache information"):
        Topology.from_lscpu_json(lscpu_json(synthetic())).places("l3")
    write_sysfs(synthetic(), tmp_path)
    with pytest.raises(TopologyError, match=r"sysfs shows no cpuN/cache/index\*"):
        Topology.from_sysfs(tmp_path).places("l3")


def test_cli_shows_l3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_sysfs(synthetic(cores_per_socket=4, cores_per_llc=2), tmp_path)
    assert main(["--sysfs", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["places"]["l3"] == [{"cpus": [0, 1], "nodes": [0]}, {"cpus": [2, 3], "nodes": [0]}]
    assert [c["llc"] for c in out["cpus"]] == [0, 0, 1, 1]
    assert main(["--sysfs", str(tmp_path)]) == 0
    assert "l3 (2): 0-1 | 2-3" in capsys.readouterr().out


def _expected_domains(sysfs: Path, allowed: frozenset[int]) -> list[tuple[int, ...]]:
    """What /sys says, read here independently: each CPU's highest data/unified level."""
    domains: set[tuple[int, ...]] = set()
    for cpu in sorted(allowed):
        best: tuple[int, str] = (0, "")
        for index in (sysfs / f"cpu{cpu}/cache").glob("index*"):
            if (index / "type").read_text().strip() != "Instruction":
                best = max(best, (int((index / "level").read_text()), index.name))
        shared = (sysfs / f"cpu{cpu}/cache/{best[1]}/shared_cpu_list").read_text()
        domains.add(tuple(c for c in parse_cpulist(shared) if c in allowed))
    return sorted(domains)


@pytest.mark.skipif(
    not Path("/sys/devices/system/cpu/cpu0/cache/index0").exists(), reason="no sysfs caches"
)
def test_this_machine_equals_sys() -> None:
    topo = Topology.detect()
    expected = _expected_domains(Path("/sys/devices/system/cpu"), topo.allowed)
    assert _cpus(topo, smt=0) == expected
    assert set(topo.allowed) <= os.sched_getaffinity(0)
