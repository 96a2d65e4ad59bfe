"""Every real dump loads, and its places are what we work out by hand for that machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from topology import Topology, TopologyError

DATA = Path(__file__).parent / "data"
Expected = dict[str, list[list[int]]]


def places(topo: Topology, strategy: str, smt: int) -> list[list[int]]:
    return [list(p.cpus) for p in topo.places(strategy, smt=smt)]


def singles(cpus: range | list[int]) -> list[list[int]]:
    return [[c] for c in cpus]


EVENS = list(range(0, 49, 2))
CASES: list[tuple[str, Expected, Expected]] = [
    (
        "vllm_mock_lscpu_x86_multi_numa_2node_8cpu.json",  # 2 nodes, no SMT
        {"nodes": [[0, 1, 2, 3], [4, 5, 6, 7]], "cores": singles(range(8)),
         "all": [list(range(8))]},
        {"nodes": [[0, 1, 2, 3], [4, 5, 6, 7]], "cores": singles(range(8)),
         "all": [list(range(8))]},
    ),
    (
        "vllm_mock_lscpu_s390x_1node_4books_25cpu.json",  # even ids only
        {"nodes": [EVENS], "cores": singles(EVENS), "all": [EVENS]},
        {"nodes": [EVENS], "cores": singles(EVENS), "all": [EVENS]},
    ),
    (
        "ubicloud_lscpu-Jye_2socket_2numa_6core_12thread_string-fields_unsorted.json",
        {"nodes": [[0, 2, 6], [4, 8, 10]], "cores": singles([0, 2, 4, 6, 8, 10]),
         "all": [[0, 2, 4, 6, 8, 10]]},
        {"nodes": [[0, 1, 2, 3, 6, 7], [4, 5, 8, 9, 10, 11]],
         "cores": [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]], "all": [list(range(12))]},
    ),
    (
        "ubicloud_lscpu-Jye_2socket_2numa_4core_8thread_numeric-fields.json",
        {"nodes": [[0, 2], [4, 6]], "cores": singles([0, 2, 4, 6]), "all": [[0, 2, 4, 6]]},
        {"nodes": [[0, 1, 2, 3], [4, 5, 6, 7]], "cores": [[0, 1], [2, 3], [4, 5], [6, 7]],
         "all": [list(range(8))]},
    ),
    (
        "ubicloud_lscpu-Jye_1socket_2core_4thread_no-node-field.json",  # node missing -> 0
        {"nodes": [[0, 2]], "cores": [[0], [2]], "all": [[0, 2]]},
        {"nodes": [[0, 1, 2, 3]], "cores": [[0, 1], [2, 3]], "all": [[0, 1, 2, 3]]},
    ),
    (
        "util-linux-issue3430_lscpu-e-node-J_bare-dash_INVALID-JSON.txt",  # only "node": -
        {"nodes": [[0, 1, 2, 3]], "cores": singles(range(4)), "all": [[0, 1, 2, 3]]},
        {"nodes": [[0, 1, 2, 3]], "cores": singles(range(4)), "all": [[0, 1, 2, 3]]},
    ),
    (
        "netutils_xeon-x5650_2socket_12cpu_noSMT_interleaved_lscpu_and_lscpu-p.txt",
        {"nodes": [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]], "cores": singles(range(12)),
         "all": [list(range(12))]},
        {"nodes": [[0, 2, 4, 6, 8, 10], [1, 3, 5, 7, 9, 11]], "cores": singles(range(12)),
         "all": [list(range(12))]},
    ),
    (
        "netutils_xeon-e5-2687wv4_2socket_24core_HT_48cpu_lscpu_and_lscpu-p.txt",  # HT: c, c+24
        {"nodes": [list(range(12)), list(range(12, 24))], "cores": singles(range(24)),
         "all": [list(range(24))]},
        {"nodes": [[*range(12), *range(24, 36)], [*range(12, 24), *range(36, 48)]],
         "cores": [[c, c + 24] for c in range(24)], "all": [list(range(48))]},
    ),
]


@pytest.mark.parametrize(("name", "smt1", "smt0"), CASES, ids=[c[0][:40] for c in CASES])
def test_dump_places(name: str, smt1: Expected, smt0: Expected) -> None:
    topo = Topology.from_file(DATA / name)
    for strategy, expected in smt1.items():
        assert places(topo, strategy, 1) == expected, strategy
    for strategy, expected in smt0.items():
        assert places(topo, strategy, 0) == expected, strategy


def test_every_dump_is_covered() -> None:
    dumps = {p.name for p in DATA.iterdir() if p.suffix in (".json", ".txt")}
    lstopo = {n for n in dumps if n.startswith("hwloc_")}
    assert dumps - lstopo == {c[0] for c in CASES}


def test_ht_dump_places_know_their_cores() -> None:
    topo = Topology.from_file(DATA / CASES[-1][0])
    first = topo.places("nodes", smt=0)[0]
    assert first.nodes == (0,)
    assert first.cores[:2] == ((0, 24), (1, 25))


def test_json_dumps_also_load_from_text_and_bytes() -> None:
    name = "ubicloud_lscpu-Jye_2socket_2numa_4core_8thread_numeric-fields.json"
    text = (DATA / name).read_text()
    assert Topology.from_lscpu_json(text).cpus == Topology.from_lscpu_json(text.encode()).cpus


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("hwloc_*")))
def test_lstopo_text_is_refused_with_one_clear_error(name: str) -> None:
    with pytest.raises(TopologyError) as info:
        Topology.from_file(DATA / name)
    message = str(info.value)
    assert "\n" not in message
    assert name in message and "lscpu -Je" in message
