"""Random TOML-ish data: ConfigError or a valid Config, never another exception."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.config import Config, ConfigError, GroupConfig, load_config
from supervisor.plan import build_plan
from topology.testing import synthetic

MACHINE = synthetic(sockets=2, cores_per_socket=2, threads_per_core=2)

KEYS = [
    "name", "command", "replicas", "env", "cwd", "restart", "restart_scope", "max_restarts",
    "restart_window", "backoff", "stop_signal", "bind", "user", "group", "umask",
    "strategy", "smt", "cpus", "nodes", "reserved_cpus", "numa", "lscpu",
    "shutdown_timeout", "log_format", "color", "supervisor", "topology", "bogus",
    "sockets", "ready", "ready_timeout", "health", "health_interval", "health_failures",
    "watchdog", "after", "omp_bind", "socket", "control", "listen", "backlog", "reuse_port",
]  # fmt: skip

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["sh", "", "0-3", "0-", "auto", "SIGTERM", "TERM", "none", "nodes", "{x}"]),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=12,
)
GOOD: dict[str, st.SearchStrategy[Any]] = {
    "replicas": st.integers(0, 3),
    "env": st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(["1", "{name}", 2])),
    "cwd": st.sampled_from([".", "/", "nowhere"]),
    "restart": st.sampled_from(["never", "on-failure", "always", "x"]),
    "restart_scope": st.sampled_from(["replica", "group"]),
    "max_restarts": st.integers(-1, 5),
    "restart_window": st.floats(-1, 100),
    "backoff": st.floats(-1, 5) | st.integers(0, 3),
    "stop_signal": st.sampled_from(["SIGTERM", "INT", "usr1", "NOPE"]),
    "bind": st.booleans(),
    "umask": st.integers(-1, 0o1000),
    "strategy": st.sampled_from(["nodes", "cores", "all", "gpus", "l3", "none"]),
    "smt": st.integers(-1, 4),
    "cpus": st.sampled_from(["", "0-3", "0-3|4-7", "0-", "1,,2"]),
    "nodes": st.sampled_from(["", "0", "0,1", "x"]),
    "reserved_cpus": st.integers(-1, 4),
    "numa": st.sampled_from(["auto", "bind", "preferred", "off", "on"]),
    "shutdown_timeout": st.floats(-1, 30) | st.integers(0, 30),
    "log_format": st.sampled_from(["console", "json", "text"]),
    "color": st.sampled_from(["auto", "always", "never", True]),
    "sockets": st.sampled_from([[], ["http"], ["http", "http"], ["nope"], "http"]),
    "ready": st.sampled_from(
        ["", "notify", "line:up {name}", "line:(", "tcp:127.0.0.1:80{index}", "http:x", "tcp:"]
    ),
    "ready_timeout": st.floats(-1, 100),
    "health": st.sampled_from(["", "tcp:[::1]:9000", "http:http://h/{fd:http}", "notify"]),
    "health_failures": st.integers(-1, 4),
    "watchdog": st.floats(-1, 5),
    "after": st.sampled_from([[], ["a"], ["b"], ["c-1"], ["zz"], "a"]),
    "omp_bind": st.sampled_from(["close", "spread", "none", "master"]),
}
GROUP_KEYS = [*list(GOOD)[:10], "sockets", "ready", "ready_timeout", "health",
              "health_failures", "watchdog", "after", "omp_bind"]  # fmt: skip
SOCKET = st.fixed_dictionaries(
    {"name": st.sampled_from(["http", "admin", "bad name"])},
    optional={
        "listen": st.sampled_from(["127.0.0.1:0", "[::]:8000", "unix:app.sock", "x", "unix:"]),
        "backlog": st.integers(-1, 2048),
        "reuse_port": st.booleans() | values,
    },
)
near_valid_group = st.fixed_dictionaries(
    {"name": st.sampled_from(["a", "b", "c-1"]), "command": st.just(["sh", "-c", "{index}"])},
    optional={key: GOOD[key] | values for key in GROUP_KEYS},
)
near_valid = st.fixed_dictionaries(
    {"group": st.lists(near_valid_group, min_size=1, max_size=3)},
    optional={
        "supervisor": st.fixed_dictionaries(
            {}, optional={k: GOOD[k] for k in ("shutdown_timeout", "log_format", "color")}
        ),
        "topology": st.fixed_dictionaries(
            {},
            optional={
                k: GOOD[k] for k in ("strategy", "smt", "cpus", "nodes", "reserved_cpus", "numa")
            },
        ),
        "socket": st.lists(SOCKET, max_size=2) | values,
        "control": st.fixed_dictionaries(
            {},
            optional={
                "socket": st.sampled_from(["auto", "", "ctl.sock"]) | values,
                "listen": st.sampled_from(["", "127.0.0.1:9100", "[::1]:0", "h:x"]) | values,
            },
        ),
    },
)
groups = st.lists(st.dictionaries(st.sampled_from(KEYS), values, max_size=6), max_size=3)
noise = st.fixed_dictionaries(
    {},
    optional={
        "group": groups | values,
        "supervisor": st.dictionaries(st.sampled_from(KEYS), values, max_size=3) | values,
        "topology": st.dictionaries(st.sampled_from(KEYS), values, max_size=4) | values,
        "bogus": values,
    },
)
documents = near_valid | noise


def check(data: Any, base: Path) -> None:
    try:
        config = Config.from_dict(data, source="fuzz.toml", base_dir=base)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("fuzz.toml: ") and "\n" not in message
    else:
        assert config.groups and all(isinstance(g, GroupConfig) for g in config.groups)
        try:
            plan = build_plan(
                config,
                topology=MACHINE,
                environ={"PLACEVISOR_X": "1"},
                which=lambda name: "/usr/bin/" + name,
                probe=lambda args: None,
            )
        except ConfigError as exc:
            assert str(exc).startswith("fuzz.toml: ") and "\n" not in str(exc)
        else:
            assert len(plan.replicas) == sum(g.replicas for g in config.groups)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_from_dict_never_crashes(data: dict[str, Any]) -> None:
    check(data, Path("/"))


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='[]{}="\n .,0123abcgrouptenam-', max_size=80))
def test_load_config_never_crashes(text: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        path.write_text(text)
        try:
            load_config(path)
        except ConfigError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(str(path))


def test_near_valid_groups_do_load() -> None:
    """The fuzz strategy is not all noise: its minimal example is a valid Config."""
    example = {"group": [{"name": "a", "command": ["sh", "-c", "{index}"]}]}
    check(example, Path("/"))
    assert Config.from_dict(example, source="fuzz.toml", base_dir="/").groups[0].name == "a"
