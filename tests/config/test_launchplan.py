"""The pure launch planner: golden plans against real lscpu dumps, env rules, policies."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from supervisor.config import Config, ConfigError, GroupConfig, TopologySettings
from supervisor.plan import LaunchPlan, build_plan
from topology import Topology
from topology.testing import synthetic

DATA = Path(__file__).resolve().parent / "data"
UBICLOUD = DATA / "ubicloud_lscpu-Jye_2socket_2numa_6core_12thread_string-fields_unsorted.json"
ENVIRON = {"PATH": "/usr/bin:/bin", "HOME": "/home/u", "PLACEVISOR_TEST_BACKENDS": "trio"}


def on_path(*names: str):  # type: ignore[no-untyped-def]
    """A fake ``which`` that finds only ``names``."""
    return lambda name: f"/usr/bin/{name}" if name in names else None


class FakeProbe:
    """Records every call; refuses with ``reason`` when given one."""

    def __init__(self, reason: str | None = None) -> None:
        self.reason = reason
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: Sequence[str]) -> str | None:
        self.calls.append(tuple(args))
        return self.reason


def make_config(
    *groups: GroupConfig, base_dir: Path = DATA, source: str = "demo.toml", **topo: Any
) -> Config:
    return Config(
        groups=groups,
        topology=TopologySettings(**topo),
        base_dir=base_dir,
        source=source,
    )


def plan_ubicloud(
    *groups: GroupConfig,
    probe: FakeProbe | None = None,
    which: object = None,
    environ: Mapping[str, str] = ENVIRON,
    **topo: Any,
) -> LaunchPlan:
    return build_plan(
        make_config(*groups, **topo),
        topology=Topology.from_file(UBICLOUD),
        environ=environ,
        which=which or on_path("numactl", "taskset"),  # type: ignore[arg-type]
        probe=probe or FakeProbe(),
    )


ENGINE = GroupConfig(
    name="engine", command=("python", "worker.py", "--rank", "{index}"), replicas=2
)


def test_unbound_plan_has_no_wrapper_and_no_omp() -> None:
    plan = plan_ubicloud(ENGINE)  # strategy "none"
    assert [r.name for r in plan.replicas] == ["engine_0", "engine_1"]
    first = plan.replicas[0]
    assert first.argv == ("python", "worker.py", "--rank", "0")
    assert first.cpus == () and first.nodes == ()
    assert first.env_added == {
        "SUPERVISOR_GROUP": "engine",
        "SUPERVISOR_NAME": "engine_0",
        "SUPERVISOR_INDEX": "0",
        "SUPERVISOR_REPLICAS": "2",
        "SUPERVISOR_NODE_RANK": "0",
        "SUPERVISOR_RANK": "0",
        "SUPERVISOR_WORLD_SIZE": "2",
    }
    assert first.cwd == str(DATA)
    assert plan.warnings == ()


def test_golden_nodes_bind_smt_all() -> None:
    plan = plan_ubicloud(ENGINE, strategy="nodes", smt=0, numa="bind")
    zero, one = plan.replicas
    assert zero.argv == (
        "numactl", "--physcpubind=0-3,6-7", "--membind=0", "--",
        "python", "worker.py", "--rank", "0",
    )  # fmt: skip
    assert zero.cpus == (0, 1, 2, 3, 6, 7) and zero.nodes == (0,)
    assert zero.env_added["OMP_NUM_THREADS"] == "6"
    assert zero.env_added["OMP_PLACES"] == "{0,1},{2,3},{6,7}"
    assert zero.env_added["OMP_PROC_BIND"] == "close"
    assert one.argv[:4] == ("numactl", "--physcpubind=4-5,8-11", "--membind=1", "--")
    assert one.env_added["OMP_PLACES"] == "{4,5},{8,9},{10,11}"
    assert one.cpus == (4, 5, 8, 9, 10, 11) and one.nodes == (1,)


def test_golden_nodes_preferred_smt1_reserved() -> None:
    plan = plan_ubicloud(ENGINE, strategy="nodes", numa="preferred", reserved_cpus=1)
    zero, one = plan.replicas
    assert zero.argv[:4] == ("numactl", "--physcpubind=0,2,6", "--preferred=0", "--")
    assert one.argv[:4] == ("numactl", "--physcpubind=4,8,10", "--preferred=1", "--")
    assert zero.env_added["OMP_NUM_THREADS"] == "2"
    assert zero.env_added["OMP_PLACES"] == "{0},{2},{6}"


def test_golden_off_and_taskset() -> None:
    plan = plan_ubicloud(ENGINE, strategy="cores", numa="off")
    assert plan.replicas[0].argv[:3] == ("numactl", "--physcpubind=0", "--")
    assert plan.replicas[1].argv[:3] == ("numactl", "--physcpubind=2", "--")
    plan = plan_ubicloud(ENGINE, strategy="cores", numa="off", which=on_path("taskset"))
    assert plan.replicas[1].argv[:4] == ("taskset", "-c", "2", "python")  # no "--"
    assert plan.warnings == ()


def test_auto_binds_memory_when_probe_allows() -> None:
    probe = FakeProbe()
    plan = plan_ubicloud(ENGINE, strategy="nodes", probe=probe)
    assert plan.replicas[0].argv[:4] == ("numactl", "--physcpubind=0,2,6", "--membind=0", "--")
    assert plan.warnings == ()
    assert probe.calls == [("--membind=0",), ("--membind=1",)]


def test_auto_probes_once_per_distinct_args() -> None:
    probe = FakeProbe()
    group = GroupConfig(name="w", command=("python",), replicas=6)
    plan_ubicloud(group, strategy="cores", probe=probe)
    assert sorted(probe.calls) == [("--membind=0",), ("--membind=1",)]


def test_auto_steps_down_when_probe_refuses() -> None:
    probe = FakeProbe("set_mempolicy: Operation not permitted")
    plan = plan_ubicloud(ENGINE, strategy="nodes", probe=probe)
    assert [r.argv[:3] for r in plan.replicas] == [
        ("numactl", "--physcpubind=0,2,6", "--"),
        ("numactl", "--physcpubind=4,8,10", "--"),
    ]
    (warning,) = plan.warnings
    assert "set_mempolicy: Operation not permitted" in warning
    assert len(probe.calls) == len(set(probe.calls)) == 1


def test_auto_on_one_node_needs_no_probe() -> None:
    probe = FakeProbe("never asked")
    plan = build_plan(
        make_config(ENGINE, strategy="cores"),
        topology=synthetic(cores_per_socket=4),
        environ=ENVIRON,
        which=on_path("numactl"),
        probe=probe,
    )
    assert plan.replicas[0].argv[:3] == ("numactl", "--physcpubind=0", "--")
    assert probe.calls == [] and plan.warnings == ()


def test_auto_without_numactl_falls_back_to_taskset_with_warning() -> None:
    plan = plan_ubicloud(ENGINE, strategy="nodes", which=on_path("taskset"))
    assert plan.replicas[0].argv[:4] == ("taskset", "-c", "0,2,6", "python")
    (warning,) = plan.warnings
    assert "numactl" in warning


@pytest.mark.parametrize("numa", ["bind", "preferred"])
def test_bind_without_numactl_is_a_config_error(numa: str) -> None:
    with pytest.raises(ConfigError) as info:
        plan_ubicloud(ENGINE, strategy="nodes", numa=numa, which=on_path("taskset"))
    message = str(info.value)
    assert message.startswith(f'demo.toml: topology.numa: "{numa}" needs numactl')
    assert "apt-get install numactl" in message and "\n" not in message


def test_no_numactl_matters_only_when_something_is_bound() -> None:
    unbound = GroupConfig(name="u", command=("sh",), bind=False)
    plan = plan_ubicloud(unbound, strategy="nodes", numa="bind", which=on_path())
    assert plan.replicas[0].argv == ("sh",)


def test_bound_groups_take_places_in_config_order() -> None:
    first = GroupConfig(name="first", command=("a",), replicas=2)
    free = GroupConfig(name="free", command=("b",), bind=False)
    second = GroupConfig(name="second", command=("c",), replicas=3)
    plan = plan_ubicloud(first, free, second, strategy="cores", numa="off")
    assert [r.name for r in plan.replicas] == [
        "first_0", "first_1", "free_0", "second_0", "second_1", "second_2",
    ]  # fmt: skip
    assert [r.cpus for r in plan.replicas] == [(0,), (2,), (), (4,), (6,), (8,)]
    assert plan.group("second")[2].cpus == (8,)
    assert "OMP_NUM_THREADS" not in plan.group("free")[0].env_added
    assert plan.group("free")[0].argv == ("b",)


def test_too_many_bound_replicas() -> None:
    group = GroupConfig(name="engine", command=("a",), replicas=3)
    with pytest.raises(ConfigError) as info:
        plan_ubicloud(group, strategy="nodes")
    assert str(info.value) == (
        'demo.toml: group[0].replicas: 3 bound replicas but strategy "nodes" gives only '
        "2 places (CPUs 0,2,6; CPUs 4,8,10); lower replicas, set bind = false, "
        "or pick another strategy"
    )


def test_reserved_cpus_must_leave_a_thread() -> None:
    with pytest.raises(ConfigError, match=r"^demo\.toml: topology\.reserved_cpus: 3 reserved"):
        plan_ubicloud(ENGINE, strategy="nodes", reserved_cpus=3)


def test_topology_error_is_reported_as_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^demo\.toml: topology: "):
        plan_ubicloud(ENGINE, strategy="nodes", nodes="5")


def test_lscpu_dump_in_config_wins_and_is_not_probed() -> None:
    probe = FakeProbe("must not be asked")
    config = make_config(ENGINE, strategy="nodes", lscpu=UBICLOUD.name)
    plan = build_plan(
        config, topology=synthetic(), environ=ENVIRON, which=on_path("numactl"), probe=probe
    )
    assert plan.replicas[1].argv[:4] == ("numactl", "--physcpubind=4,8,10", "--membind=1", "--")
    assert probe.calls == []


def test_env_composition_and_private_vars_dropped() -> None:
    group = GroupConfig(
        name="engine",
        command=("python", "{name}", "{0}", "{{x}}", "{replicas}"),
        replicas=2,
        env={"HOME": "/srv/{group}", "RANK": "{index}", "JSON": '{"a": {index}}'},
    )
    environ = dict(ENVIRON, OMP_NUM_THREADS="99")
    before = dict(environ)
    plan = plan_ubicloud(group, strategy="nodes", environ=environ)
    assert environ == before
    one = plan.replicas[1]
    assert one.argv[-4:] == ("engine_1", "{0}", "{{x}}", "2")
    assert one.env_added["HOME"] == "/srv/engine"
    assert one.env_added["RANK"] == "1"
    assert one.env_added["JSON"] == '{"a": 1}'
    assert one.env["HOME"] == "/srv/engine"
    assert one.env["PATH"] == "/usr/bin:/bin"
    assert one.env["OMP_NUM_THREADS"] == "3"
    assert not any(k.startswith("PLACEVISOR_") for k in one.env)
    assert not any(k.startswith("PLACEVISOR_") for k in one.env_added)
    assert dict(one.env) == {k: v for k, v in ENVIRON.items() if "PLACEVISOR" not in k} | dict(
        one.env_added
    )
    assert plan.replicas[0].env is not plan.replicas[1].env


def test_cwd_is_absolute(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    group = GroupConfig(name="g", command=("sh",), cwd="sub")
    plan = build_plan(make_config(group, base_dir=tmp_path), environ={}, which=on_path())
    assert plan.replicas[0].cwd == str(tmp_path / "sub")


def test_golden_vllm_two_nodes_no_smt() -> None:
    config = make_config(
        ENGINE, strategy="nodes", lscpu="vllm_mock_lscpu_x86_multi_numa_2node_8cpu.json"
    )
    plan = build_plan(config, environ={}, which=on_path("numactl"), probe=FakeProbe("unused"))
    assert [r.argv[:4] for r in plan.replicas] == [
        ("numactl", "--physcpubind=0-3", "--membind=0", "--"),
        ("numactl", "--physcpubind=4-7", "--membind=1", "--"),
    ]
    assert plan.replicas[1].env_added["OMP_PLACES"] == "{4},{5},{6},{7}"
    assert plan.replicas[1].env_added["OMP_NUM_THREADS"] == "4"
