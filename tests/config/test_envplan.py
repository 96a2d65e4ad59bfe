"""Golden tests of the pure environment decisions: placement hygiene, launchers, socket path."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from supervisor.config import Config, ConfigError, ControlSettings, GroupConfig
from supervisor.envplan import (
    BLAS_THREAD_VARS,
    LAUNCHER_TASK_VARS,
    OVERRIDE_VARS,
    Launcher,
    PlacementEnv,
    control_socket_path,
    detect_launcher,
    placement_env,
    strip_launcher,
)

DERIVED = {"OMP_NUM_THREADS": "4", "OMP_PLACES": "{0},{1},{2},{3}", "OMP_PROC_BIND": "close"}
BLAS4 = dict.fromkeys(BLAS_THREAD_VARS, "4")


def plan(
    inherited: dict[str, str] | None = None,
    group_env: dict[str, str] | None = None,
    omp_bind: str = "close",
    place_cpus: int = 4,
) -> PlacementEnv:
    return placement_env(
        inherited or {},
        DERIVED,
        group_env or {},
        omp_bind=omp_bind,
        place_cpus=place_cpus,
        replica="engine_0",
    )


# -- placement hygiene ----------------------------------------------------------------


def test_clean_environment_gets_omp_and_blas_threads() -> None:
    result = plan({"PATH": "/bin"})
    assert result.added == DERIVED | BLAS4
    assert result.removed == () and result.warnings == ()
    assert result.apply({"PATH": "/bin"}) == {"PATH": "/bin"} | DERIVED | BLAS4


@pytest.mark.parametrize("var", OVERRIDE_VARS)
def test_each_override_variable_is_removed_with_a_warning(var: str) -> None:
    inherited = {"PATH": "/bin", var: "granularity=fine,compact,1,0"}
    result = plan(inherited)
    assert result.removed == (var,)
    (warning,) = result.warnings
    assert warning == (
        f"engine_0: removed inherited {var}='granularity=fine,compact,1,0', which would "
        "override the place's CPU binding in OpenMP/BLAS runtimes "
        "(set it in the group's env to keep it)"
    )
    child = result.apply(inherited)
    assert var not in child and child["PATH"] == "/bin"


def test_every_override_variable_at_once_in_a_stable_order() -> None:
    inherited = dict.fromkeys(reversed(OVERRIDE_VARS), "x")
    result = plan(inherited)
    assert result.removed == OVERRIDE_VARS
    assert [w.split()[3].split("=")[0] for w in result.warnings] == list(OVERRIDE_VARS)


def test_inherited_blas_threads_are_replaced_not_removed() -> None:
    inherited = {"MKL_NUM_THREADS": "8", "OPENBLAS_NUM_THREADS": "8"}
    result = plan(inherited)
    assert result.removed == ()
    child = result.apply(inherited)
    assert child["MKL_NUM_THREADS"] == "4" and child["OPENBLAS_NUM_THREADS"] == "4"


def test_group_env_wins_over_everything_derived() -> None:
    group_env = {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "1", "OMP_PROC_BIND": "master"}
    result = plan({"OMP_NUM_THREADS": "16"}, group_env)
    assert result.added["OMP_NUM_THREADS"] == "2"
    assert result.added["MKL_NUM_THREADS"] == "1"
    assert result.added["OMP_PROC_BIND"] == "master"
    # the other BLAS pools still follow the derived count: only what the group names is its own
    assert result.added["OPENBLAS_NUM_THREADS"] == "4"
    assert result.warnings == ()


def test_group_env_keeps_an_override_variable_it_sets_itself() -> None:
    inherited = {"KMP_AFFINITY": "verbose", "GOMP_CPU_AFFINITY": "0-3"}
    result = plan(inherited, {"KMP_AFFINITY": "granularity=core"})
    assert result.removed == ("GOMP_CPU_AFFINITY",)
    assert result.apply(inherited)["KMP_AFFINITY"] == "granularity=core"
    assert len(result.warnings) == 1 and "GOMP_CPU_AFFINITY" in result.warnings[0]


@pytest.mark.parametrize(
    ("group_env", "warned"),
    [
        ({"OMP_NUM_THREADS": "8"}, True),
        ({"MKL_NUM_THREADS": "5"}, True),
        ({"TORCH_NUM_THREADS": "16"}, True),
        ({"OMP_NUM_THREADS": "8,2"}, True),  # nested OpenMP: the outer level counts
        ({"OMP_NUM_THREADS": "4"}, False),
        ({"OMP_NUM_THREADS": "auto"}, False),
        ({"NOT_THREADS": "99"}, False),
    ],
)
def test_warning_when_group_asks_for_more_threads_than_cpus(
    group_env: dict[str, str], warned: bool
) -> None:
    result = plan({}, group_env)
    if warned:
        ((key, value),) = group_env.items()
        assert result.warnings == (
            f"engine_0: env {key}={value} asks for more threads than the 4 CPUs of its place; "
            "they will share CPUs",
        )
    else:
        assert result.warnings == ()


def test_spread_sets_proc_bind_spread() -> None:
    result = plan({}, omp_bind="spread")
    assert result.added == DERIVED | {"OMP_PROC_BIND": "spread"} | BLAS4


def test_none_drops_places_and_proc_bind_and_removes_inherited_ones() -> None:
    inherited = {"OMP_PLACES": "cores", "OMP_PROC_BIND": "true", "KMP_AFFINITY": "compact"}
    result = plan(inherited, omp_bind="none")
    assert result.added == {"OMP_NUM_THREADS": "4"} | BLAS4
    assert result.removed == ("KMP_AFFINITY", "OMP_PLACES", "OMP_PROC_BIND")
    assert len(result.warnings) == 3
    assert result.apply(inherited) == {"OMP_NUM_THREADS": "4"} | BLAS4


def test_none_keeps_the_groups_own_binding() -> None:
    result = plan({"OMP_PROC_BIND": "true"}, {"OMP_PROC_BIND": "spread"}, omp_bind="none")
    assert result.removed == ()
    assert result.added["OMP_PROC_BIND"] == "spread"


def test_close_keeps_inherited_places_out_by_overwriting() -> None:
    inherited = {"OMP_PLACES": "cores"}
    assert plan(inherited).removed == ()
    assert plan(inherited).apply(inherited)["OMP_PLACES"] == DERIVED["OMP_PLACES"]


def test_unknown_omp_bind_is_refused() -> None:
    with pytest.raises(ValueError, match="omp_bind"):
        plan({}, omp_bind="master")


# -- launchers ------------------------------------------------------------------------

SLURM = {
    "SLURM_PROCID": "1",
    "SLURM_NTASKS": "2",
    "SLURM_LOCALID": "1",
    "SLURM_NODEID": "0",
    "SLURM_CPU_BIND": "quiet,mask_cpu:0x2",
    "SLURM_CPU_BIND_LIST": "0x2",
    "SLURM_CPU_BIND_TYPE": "mask_cpu:",
    "SLURM_CPUS_PER_TASK": "1",
    "SLURM_JOB_ID": "7",
}
TORCHRUN = {
    "GROUP_RANK": "2",
    "WORLD_SIZE": "8",
    "LOCAL_WORLD_SIZE": "2",
    "RANK": "5",
    "LOCAL_RANK": "1",
}


def test_strip_launcher_removes_per_task_variables_only() -> None:
    env = SLURM | TORCHRUN | {"PATH": "/bin", "SLURMD_NODENAME": "n1"}
    stripped = strip_launcher(env)
    assert stripped == {
        "PATH": "/bin",
        "SLURMD_NODENAME": "n1",
        "SLURM_NTASKS": "2",
        "SLURM_NODEID": "0",
        "SLURM_JOB_ID": "7",
        "GROUP_RANK": "2",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "2",
    }
    assert not set(LAUNCHER_TASK_VARS) & set(stripped)
    assert env["RANK"] == "5"  # the input is not changed


@pytest.mark.parametrize(
    ("environ", "kwargs", "expected"),
    [
        ({}, {}, Launcher(node_rank=0, nodes=1, source="default (single node)")),
        ({"PATH": "/bin"}, {"nodes": 1}, Launcher(node_rank=0, nodes=1, source="--nodes")),
        (SLURM, {}, Launcher(node_rank=1, nodes=2, source="SLURM_PROCID/SLURM_NTASKS")),
        (
            TORCHRUN,
            {},
            Launcher(node_rank=2, nodes=4, source="GROUP_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE"),
        ),
        (
            {"JOB_COMPLETION_INDEX": "3"},
            {"nodes": 4},
            Launcher(node_rank=3, nodes=4, source="JOB_COMPLETION_INDEX/--nodes"),
        ),
        # the command line wins over every launcher
        (
            SLURM | TORCHRUN,
            {"node_rank": 0, "nodes": 3},
            Launcher(node_rank=0, nodes=3, source="--node-rank/--nodes"),
        ),
        # each number from the first source that has it
        (SLURM, {"nodes": 5}, Launcher(node_rank=1, nodes=5, source="SLURM_PROCID/--nodes")),
        (
            SLURM,
            {"node_rank": 0},
            Launcher(node_rank=0, nodes=2, source="--node-rank/SLURM_NTASKS"),
        ),
        # Slurm comes before torchrun, torchrun before a Kubernetes index
        (
            SLURM | TORCHRUN | {"JOB_COMPLETION_INDEX": "0"},
            {},
            Launcher(node_rank=1, nodes=2, source="SLURM_PROCID/SLURM_NTASKS"),
        ),
        (
            TORCHRUN | {"JOB_COMPLETION_INDEX": "0"},
            {},
            Launcher(node_rank=2, nodes=4, source="GROUP_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE"),
        ),
        # an empty variable counts as unset
        ({"SLURM_PROCID": "", "GROUP_RANK": ""}, {}, Launcher()),
    ],
)
def test_launcher_precedence(
    environ: dict[str, str], kwargs: dict[str, int], expected: Launcher
) -> None:
    assert detect_launcher(environ, **kwargs) == expected


def test_known_node_rank() -> None:
    assert detect_launcher({}).known_node_rank is None
    assert detect_launcher({}, node_rank=0, nodes=1).known_node_rank == 0
    assert detect_launcher(SLURM).known_node_rank == 1


@pytest.mark.parametrize(
    ("environ", "kwargs", "message"),
    [
        ({}, {"node_rank": 2, "nodes": 2}, "--node-rank/--nodes: node rank 2 must be below the "
         "number of nodes 2"),
        ({}, {"node_rank": -1, "nodes": 2}, "--node-rank: must be an integer >= 0, got -1"),
        ({}, {"node_rank": 0, "nodes": 0}, "--nodes: must be an integer >= 1, got 0"),
        ({}, {"node_rank": 1}, "--node-rank: the node rank is 1 but the number of nodes is "
         "unknown; pass --nodes N"),
        ({}, {"nodes": 4}, "--nodes: 4 nodes but no node rank; pass --node-rank K"),
        ({"SLURM_PROCID": "x", "SLURM_NTASKS": "2"}, {},
         "launcher: SLURM_PROCID='x' must be an integer >= 0"),
        ({"SLURM_PROCID": "-1", "SLURM_NTASKS": "2"}, {},
         "launcher: SLURM_PROCID='-1' must be an integer >= 0"),
        ({"SLURM_PROCID": "0", "SLURM_NTASKS": "0"}, {},
         "launcher: SLURM_NTASKS='0' must be an integer >= 1"),
        ({"SLURM_PROCID": "3", "SLURM_NTASKS": "2"}, {},
         "SLURM_PROCID/SLURM_NTASKS: node rank 3 must be below the number of nodes 2"),
        ({"SLURM_PROCID": "0"}, {}, "SLURM_PROCID: the node rank is 0 but the number of nodes "
         "is unknown; pass --nodes N"),
        (TORCHRUN | {"LOCAL_WORLD_SIZE": "3"}, {}, "WORLD_SIZE/LOCAL_WORLD_SIZE: 8 is not a "
         "multiple of 3, so the number of nodes is unclear; pass --nodes N"),
        ({"JOB_COMPLETION_INDEX": "2"}, {}, "JOB_COMPLETION_INDEX: the node rank is 2 but the "
         "number of nodes is unknown; pass --nodes N (the Job's completions)"),
        ({"JOB_COMPLETION_INDEX": "4"}, {"nodes": 4}, "JOB_COMPLETION_INDEX/--nodes: node rank "
         "4 must be below the number of nodes 4"),
    ],
)  # fmt: skip
def test_launcher_nonsense_is_one_line(
    environ: dict[str, str], kwargs: dict[str, int], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        detect_launcher(environ, **kwargs)
    assert str(info.value) == message


# -- the control socket path ----------------------------------------------------------


def control_config(tmp_path: Path, socket: str = "auto", name: str = "api.toml") -> Config:
    return Config(
        groups=(GroupConfig(name="g", command=("sh",)),),
        control=ControlSettings(socket=socket),
        base_dir=tmp_path,
        source=name,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:8]


def test_auto_socket_under_xdg_runtime_dir(tmp_path: Path) -> None:
    config = control_config(tmp_path)
    found = control_socket_path(
        config, node_rank=None, environ={"XDG_RUNTIME_DIR": "/run/user/1000"}, euid=1000
    )
    assert found == f"/run/user/1000/placevisor/api-{digest(tmp_path / 'api.toml')}.sock"
    # XDG wins even for root
    as_root = control_socket_path(
        config, node_rank=None, environ={"XDG_RUNTIME_DIR": "/run/user/0"}, euid=0
    )
    assert as_root is not None and as_root.startswith("/run/user/0/placevisor/api-")


def test_auto_socket_without_xdg(tmp_path: Path) -> None:
    config = control_config(tmp_path)
    name = f"api-{digest(tmp_path / 'api.toml')}.sock"
    assert control_socket_path(config, node_rank=None, environ={}, euid=0) == (
        f"/run/placevisor/{name}"
    )
    assert control_socket_path(config, node_rank=None, environ={}, euid=1234) == (
        f"/tmp/placevisor-1234/{name}"
    )
    # a relative XDG_RUNTIME_DIR is invalid per the XDG spec and ignored
    assert control_socket_path(
        config, node_rank=None, environ={"XDG_RUNTIME_DIR": "run"}, euid=1234
    ) == (f"/tmp/placevisor-1234/{name}")


def test_auto_socket_node_rank_suffix(tmp_path: Path) -> None:
    config = control_config(tmp_path)
    found = control_socket_path(config, node_rank=3, environ={}, euid=0)
    assert found == f"/run/placevisor/api-{digest(tmp_path / 'api.toml')}-n3.sock"


def test_two_configs_never_share_a_socket(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = control_socket_path(control_config(tmp_path / "a"), node_rank=None, environ={}, euid=0)
    two = control_socket_path(control_config(tmp_path / "b"), node_rank=None, environ={}, euid=0)
    assert one != two
    assert one is not None and two is not None
    assert Path(one).name.startswith("api-") and Path(two).name.startswith("api-")


def test_odd_stems_are_made_safe_and_short(tmp_path: Path) -> None:
    code_built = control_config(tmp_path, name="<config>")
    found = control_socket_path(code_built, node_rank=None, environ={}, euid=0)
    assert found is not None and Path(found).name.startswith("config-")
    long = control_config(tmp_path, name="x" * 200 + ".toml")
    found = control_socket_path(long, node_rank=None, environ={}, euid=0)
    assert found is not None and len(Path(found).name) == 32 + 1 + 8 + len(".sock")


def test_explicit_and_disabled_socket(tmp_path: Path) -> None:
    assert control_socket_path(control_config(tmp_path, ""), node_rank=0, environ={}, euid=0) is (
        None
    )
    explicit = control_config(tmp_path, "run/ctl.sock")
    assert control_socket_path(explicit, node_rank=1, environ={}, euid=0) == str(
        tmp_path / "run" / "ctl.sock"
    )
    absolute = control_config(tmp_path, "/srv/ctl.sock")
    assert control_socket_path(absolute, node_rank=None, environ={}, euid=0) == "/srv/ctl.sock"


def test_envplan_imports_stay_light() -> None:
    """The ctl client imports envplan: stdlib and supervisor.config only."""
    import ast

    import supervisor.envplan as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {"__future__", "hashlib", "re", "collections", "dataclasses", "pathlib"}
    local = {name for name in imported if name.split(".")[0] not in stdlib}
    assert local == {"config"}, local
