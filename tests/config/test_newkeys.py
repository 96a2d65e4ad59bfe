"""The keys for readiness, start order, shared sockets, control and placement hygiene."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from supervisor.config import (
    Config,
    ConfigError,
    ControlSettings,
    GroupConfig,
    ListenAddress,
    ProbeSpec,
    SocketConfig,
    TopologySettings,
    expand_placeholders,
    load_config,
    parse_listen,
    parse_probe,
    placeholder_values,
)

WriteConfig = Callable[..., Path]
MINIMAL = '[[group]]\nname = "engine"\ncommand = ["sh", "-c", "true"]\n'

API_POOL = """
[control]
socket = "run/ctl.sock"
listen = "127.0.0.1:9100"

[[socket]]
name = "http"
listen = "0.0.0.0:8000"
backlog = 2048
reuse_port = true

[[socket]]
name = "admin"
listen = "unix:run/admin.sock"

[topology]
strategy = "l3"

[[group]]
name = "engine"
command = ["sh", "-c", "exec engine --rank {rank} --of {world_size}"]
ready = "notify"
watchdog = 30
omp_bind = "spread"

[[group]]
name = "api"
command = ["sh", "-c", "exec uvicorn app:app --fd {fd:http} --admin-fd {fd:admin}"]
replicas = 4
sockets = ["http", "admin"]
ready = "http:http://127.0.0.1:8000/ready?r={name}"
ready_timeout = 120
health = "tcp:127.0.0.1:8000"
health_interval = 2.5
health_failures = 5
after = ["engine"]
omp_bind = "none"
bind = false
"""


def test_defaults(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL))
    assert config.control == ControlSettings(socket="auto", listen="")
    assert config.control.listen_address is None
    assert config.sockets == ()
    (group,) = config.groups
    assert (group.sockets, group.ready, group.ready_timeout) == ((), "", 60.0)
    assert (group.health, group.health_interval, group.health_failures) == ("", 10.0, 3)
    assert (group.watchdog, group.after, group.omp_bind) == (0.0, (), "close")


def test_every_new_key_is_read(write_config: WriteConfig) -> None:
    config = load_config(write_config(API_POOL))
    assert config.control == ControlSettings(socket="run/ctl.sock", listen="127.0.0.1:9100")
    assert config.control.listen_address == ListenAddress(
        family="inet", host="127.0.0.1", port=9100
    )
    assert config.topology == TopologySettings(strategy="l3")
    http, admin = config.sockets
    assert http == SocketConfig(name="http", listen="0.0.0.0:8000", backlog=2048, reuse_port=True)
    assert http.address == ListenAddress(family="inet", host="0.0.0.0", port=8000)
    assert admin.address == ListenAddress(family="unix", path="run/admin.sock")
    assert admin.address.under(config.base_dir).path == str(config.base_dir / "run/admin.sock")
    assert config.socket_named("admin") is admin
    engine, api = config.groups
    assert engine.ready == "notify" and engine.watchdog == 30.0 and engine.omp_bind == "spread"
    assert isinstance(engine.watchdog, float)
    assert api.sockets == ("http", "admin") and api.after == ("engine",)
    assert api.ready_timeout == 120.0 and isinstance(api.ready_timeout, float)
    assert (api.health, api.health_interval, api.health_failures) == ("tcp:127.0.0.1:8000", 2.5, 5)
    assert api.omp_bind == "none"
    assert config.group_named("api") is api
    values = placeholder_values("api", 2, api.replicas, node_rank=1, nodes=2, sockets=api.sockets)
    assert [expand_placeholders(arg, values) for arg in api.command] == [
        "sh",
        "-c",
        "exec uvicorn app:app --fd 3 --admin-fd 4",
    ]
    assert expand_placeholders(api.ready, values) == "http:http://127.0.0.1:8000/ready?r=api_2"


def test_lists_become_tuples() -> None:
    group = GroupConfig(
        name="g",
        command=("sh",),
        sockets=["s"],  # type: ignore[arg-type]
        after=["h"],  # type: ignore[arg-type]
    )
    assert group.sockets == ("s",) and group.after == ("h",)
    config = Config(
        groups=(group, GroupConfig(name="h", command=("sh",))),
        sockets=[SocketConfig(name="s", listen="127.0.0.1:0")],  # type: ignore[arg-type]
    )
    assert isinstance(config.sockets, tuple)


# -- placeholders ---------------------------------------------------------------------


def test_new_placeholder_values() -> None:
    values = placeholder_values("engine", 3, 4, node_rank=2, nodes=5, sockets=("http", "grpc"))
    assert values == {
        "group": "engine",
        "name": "engine_3",
        "index": "3",
        "replicas": "4",
        "node_rank": "2",
        "nodes": "5",
        "rank": "11",
        "world_size": "20",
        "fd:http": "3",
        "fd:grpc": "4",
    }
    assert placeholder_values("engine", 1, 2) == {
        "group": "engine",
        "name": "engine_1",
        "index": "1",
        "replicas": "2",
        "node_rank": "0",
        "nodes": "1",
        "rank": "1",
        "world_size": "2",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{rank}/{world_size} on {node_rank}/{nodes}", "11/20 on 2/5"),
        ("--fd {fd:http} --fd {fd:grpc}", "--fd 3 --fd 4"),
        ("{fd:other} {fd:} {fd:http:x} {FD:http}", "{fd:other} {fd:} {fd:http:x} {FD:http}"),
        (r"^\d{3} ready {name}$", r"^\d{3} ready engine_3$"),
        ("{{rank}}", "{11}"),
        ("{node_rank", "{node_rank"),
    ],
)
def test_placeholders_golden(text: str, expected: str) -> None:
    values = placeholder_values("engine", 3, 4, node_rank=2, nodes=5, sockets=("http", "grpc"))
    assert expand_placeholders(text, values) == expected


def reference_expand(text: str, values: dict[str, str]) -> str:
    """A model of placeholder expansion: left to right, exact ``{key}`` only."""
    out, i = [], 0
    while i < len(text):
        for key, value in values.items():
            token = "{" + key + "}"
            if text.startswith(token, i):
                out.append(value)
                i += len(token)
                break
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


PIECES = ["{", "}", "{{", "}}", "rank", "fd:", "http", "name", "nodes", "x", ":", " ", "0"]


@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_placeholders_never_touch_other_braces(text: str) -> None:
    values = placeholder_values("g", 1, 2, node_rank=1, nodes=3, sockets=("http",))
    assert expand_placeholders(text, values) == reference_expand(text, values)
    if not any("{" + key + "}" in text for key in values):
        assert expand_placeholders(text, values) == text


# -- probes and addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8000", ListenAddress(family="inet", host="127.0.0.1", port=8000)),
        ("localhost:1", ListenAddress(family="inet", host="localhost", port=1)),
        ("0.0.0.0:0", ListenAddress(family="inet", host="0.0.0.0", port=0)),
        ("[::]:8000", ListenAddress(family="inet6", host="::", port=8000)),
        ("[fe80::1%eth0]:65535", ListenAddress(family="inet6", host="fe80::1%eth0", port=65535)),
        ("unix:/run/app.sock", ListenAddress(family="unix", path="/run/app.sock")),
        ("unix:rel/app.sock", ListenAddress(family="unix", path="rel/app.sock")),
    ],
)
def test_listen_forms(text: str, expected: ListenAddress) -> None:
    assert parse_listen(text) == expected
    assert str(expected) == text


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("8000", "is not HOST:PORT"),
        (":8000", "has no valid host"),
        ("127.0.0.1:65536", "must be an integer 0-65535"),
        ("127.0.0.1:-1", "must be an integer 0-65535"),
        ("127.0.0.1:http", "must be an integer 0-65535"),
        ("::1:80", 'write an IPv6 address in brackets: "[::1]:80"'),
        ("[1.2.3.4]:80", "is not an IPv6 address"),
        ("unix:", '"unix:" needs a path'),
        ("unix:/" + "a" * 107, "longer than 107 bytes"),
    ],
)
def test_bad_listen(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_listen(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ProbeSpec(kind="started")),
        ("notify", ProbeSpec(kind="notify")),
        ("line:Uvicorn running on", ProbeSpec(kind="line", pattern="Uvicorn running on")),
        ("line:", ProbeSpec(kind="line", pattern="")),
        (
            "tcp:[::1]:8000",
            ProbeSpec(kind="tcp", address=ListenAddress(family="inet6", host="::1", port=8000)),
        ),
        ("http:http://h:1/x?y=1", ProbeSpec(kind="http", url="http://h:1/x?y=1")),
    ],
)
def test_probe_forms(text: str, expected: ProbeSpec) -> None:
    assert parse_probe(text) == expected


@pytest.mark.parametrize(
    ("text", "health", "problem"),
    [
        ("notify", True, "readiness form only"),
        ("line:x", True, "readiness form only"),
        ("tcp:127.0.0.1:0", False, "must be an integer 1-65535"),
        ("http:https://h/", False, "needs an http:// URL"),
        ("http:http:///x", False, "needs an http:// URL with a host"),
        ("http:http://h:0/", False, "has port 0"),
        ("http:http://h:x/", False, "is malformed"),
        ("line:[", False, "does not compile"),
        ("NOTIFY", False, "is not a probe"),
        ("exec:true", True, 'use "tcp:HOST:PORT" or "http:URL"'),
    ],
)
def test_bad_probe(text: str, health: bool, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        parse_probe(text, health=health)


# -- built in code: checked exactly like TOML -------------------------------------------


def make(**kw: Any) -> GroupConfig:
    return GroupConfig(**({"name": "engine", "command": ("sh",)} | kw))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sockets": "http"}, "sockets: must be an array of [[socket]] names"),
        ({"sockets": ("a", "a")}, "sockets[1]: 'a' is named twice"),
        ({"sockets": ("",)}, "sockets[0]: must be a [[socket]] name, got ''"),
        ({"after": ("engine",)}, "after: group 'engine' cannot come after itself"),
        ({"after": (1,)}, "after[0]: must be a group name, got 1"),
        ({"ready": "bogus"}, "ready: 'bogus' is not a probe"),
        ({"ready": 5}, "ready: must be a string, got 5"),
        ({"health": "line:up"}, "health: 'line:up' is a readiness form only"),
        ({"ready_timeout": 0}, "ready_timeout: must be a number of seconds > 0, got 0"),
        ({"health_interval": float("inf")}, "health_interval: must be a number of seconds > 0"),
        ({"health_failures": 0}, "health_failures: must be an integer >= 1, got 0"),
        ({"watchdog": -1}, "watchdog: must be a number of seconds >= 0, got -1"),
        ({"watchdog": 5}, 'watchdog: needs ready = "notify"'),
        ({"omp_bind": "master"}, 'omp_bind: must be one of "close" | "spread" | "none"'),
        ({"command": ("x", "{fd:http}")}, "command[1]: {fd:http} names a socket this group does"),
        ({"env": {"FD": "{fd:h}"}, "sockets": ("g",)}, "env.FD: {fd:h} names a socket"),
        ({"health": "tcp:h:{fd:x}"}, "health: {fd:x} names a socket"),
        ({"replicas": 3, "ready": "tcp:h:6553{index}0"}, "ready: for engine_0: port '655300'"),
        ({"replicas": 3, "ready": "tcp:h:{index}"}, "ready: for engine_0: port '0' in 'h:0'"),
        ({"replicas": 9, "ready": "tcp:h:6553{index}"}, "ready: for engine_8: port '65538'"),
    ],
)
def test_group_new_keys_built_in_code(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(**kwargs)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


def test_watchdog_with_notify_and_fd_with_its_socket_are_fine() -> None:
    assert make(ready="notify", watchdog=0.5).watchdog == 0.5
    group = make(command=("x", "{fd:http}"), sockets=("http",), ready="tcp:h:{index}1")
    assert group.sockets == ("http",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "a b", "listen": "h:1"}, "name: must start with a letter or digit"),
        ({"name": "s", "listen": 8000}, "listen: must be a string, got 8000"),
        ({"name": "s", "listen": "h"}, "listen: 'h' is not HOST:PORT"),
        ({"name": "s", "listen": "h:1", "backlog": 0}, "backlog: must be an integer >= 1"),
        ({"name": "s", "listen": "h:1", "reuse_port": 1}, "reuse_port: must be true or false"),
    ],
)
def test_socket_built_in_code(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        SocketConfig(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"socket": 1}, "socket: must be a string, got 1"),
        ({"socket": "a\0b"}, "socket: must not contain a NUL character"),
        ({"listen": "127.0.0.1"}, "listen: '127.0.0.1' is not HOST:PORT"),
        ({"listen": "127.0.0.1:0"}, "listen: port '0' in '127.0.0.1:0' must be an integer 1-65535"),
        ({"listen": "unix:/x"}, 'listen: takes a TCP "HOST:PORT"'),
    ],
)
def test_control_built_in_code(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        ControlSettings(**kwargs)


def groups(*specs: tuple[str, tuple[str, ...]]) -> tuple[GroupConfig, ...]:
    return tuple(GroupConfig(name=name, command=("sh",), after=after) for name, after in specs)


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        (
            (("engine", ("api",)), ("api", ("engine",))),
            "<config>: group[0].after: start order cycle: engine -> api -> engine",
        ),
        (
            (("a", ()), ("b", ("c",)), ("c", ("d",)), ("d", ("b",))),
            "<config>: group[1].after: start order cycle: b -> c -> d -> b",
        ),
        (
            (("api", ("engin",)), ("engine", ())),
            "<config>: group[0].after[0]: no group named 'engin' (did you mean \"engine\"?)",
        ),
        (
            (("api", ("zzz",)), ("engine", ())),
            "<config>: group[0].after[0]: no group named 'zzz'; known groups: api, engine",
        ),
    ],
)
def test_after_checked_in_code(
    specs: tuple[tuple[str, tuple[str, ...]], ...], message: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Config(groups=groups(*specs))
    assert str(info.value) == message


def test_after_accepts_a_dag_in_any_order() -> None:
    config = Config(
        groups=groups(("api", ("engine", "cache")), ("engine", ("cache",)), ("cache", ()))
    )
    assert [g.after for g in config.groups] == [("engine", "cache"), ("cache",), ()]


def test_sockets_checked_in_code() -> None:
    http = SocketConfig(name="http", listen="127.0.0.1:0")
    with pytest.raises(ConfigError) as info:
        Config(groups=(make(),), sockets=(http, http))
    assert str(info.value) == (
        "<config>: socket[1].name: duplicate socket name 'http' (socket[0] has it too)"
    )
    with pytest.raises(ConfigError) as info:
        Config(groups=(make(sockets=("grpc",)),), sockets=(http,))
    assert str(info.value) == (
        "<config>: group[0].sockets[0]: no [[socket]] named 'grpc'; known sockets: http"
    )
    with pytest.raises(ConfigError) as info:
        Config(groups=(make(sockets=("grpc",)),))
    assert str(info.value).endswith("no [[socket]] named 'grpc'; known sockets: none")
    with pytest.raises(ConfigError, match=r"^<config>: socket\[0\]: must be a SocketConfig"):
        Config(groups=(make(),), sockets=("http",))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^<config>: control: must be a ControlSettings"):
        Config(groups=(make(),), control="auto")  # type: ignore[arg-type]


def test_toml_errors_name_file_key_and_line(write_config: WriteConfig) -> None:
    path = write_config(API_POOL.replace('after = ["engine"]', 'after = ["api"]'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}: group[1].after (line 36): group 'api' cannot come after itself"
    )
    path = write_config(API_POOL.replace("backlog = 2048", "backlog = -2"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: socket[0].backlog (line 9): must be an integer >= 1, got -2"
