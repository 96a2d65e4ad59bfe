"""The config model and loader: defaults, validation in code and from TOML, messages."""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path

import pytest

from supervisor.config import (
    Config,
    ConfigError,
    GroupConfig,
    SupervisorSettings,
    TopologySettings,
    expand_placeholders,
    load_config,
    placeholder_values,
    scan_key_lines,
)

WriteConfig = Callable[..., Path]

MINIMAL = '[[group]]\nname = "engine"\ncommand = ["sh", "-c", "true"]\n'


def test_defaults_match_the_contract(write_config: WriteConfig) -> None:
    config = load_config(write_config(MINIMAL))
    assert config.supervisor == SupervisorSettings(
        shutdown_timeout=10.0, log_format="console", color="auto"
    )
    assert config.topology == TopologySettings(
        strategy="none", smt=1, cpus="", nodes="", reserved_cpus=0, numa="auto", lscpu=""
    )
    (group,) = config.groups
    assert group == GroupConfig(
        name="engine",
        command=("sh", "-c", "true"),
        replicas=1,
        env={},
        cwd=".",
        restart="on-failure",
        restart_scope="replica",
        max_restarts=3,
        restart_window=60.0,
        backoff=0.5,
        stop_signal="SIGTERM",
        bind=True,
        user=None,
        group=None,
        umask=None,
    )
    assert isinstance(group.command, tuple)
    assert config.base_dir == write_config(MINIMAL).parent.resolve()


def test_every_key_is_read(write_config: WriteConfig, tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    path = write_config(
        """
[supervisor]
shutdown_timeout = 3
log_format = "json"
color = "never"

[topology]
strategy = "cores"
smt = 0
cpus = "0-3|4-7"
nodes = "0,1"
reserved_cpus = 1
numa = "preferred"

[[group]]
name = "engine"
command = ["sh", "-c", "echo {index}"]
replicas = 2
env = { A = "1", B = "{name}" }
cwd = "work"
restart = "always"
restart_scope = "group"
max_restarts = 0
restart_window = 5
backoff = 0
stop_signal = "INT"
bind = false
umask = 0o022
"""
    )
    config = load_config(path)
    assert config.supervisor.shutdown_timeout == 3.0
    assert isinstance(config.supervisor.shutdown_timeout, float)
    assert config.topology.cpus == "0-3|4-7" and config.topology.numa == "preferred"
    (group,) = config.groups
    assert group.env == {"A": "1", "B": "{name}"}
    assert group.stop_signal == "SIGINT"
    assert group.restart_window == 5.0 and group.backoff == 0.0
    assert group.umask == 0o022 and group.bind is False


@pytest.mark.parametrize(
    ("given", "canonical"),
    [("SIGTERM", "SIGTERM"), ("TERM", "SIGTERM"), ("sigusr1", "SIGUSR1"), ("HUP", "SIGHUP")],
)
def test_stop_signal_names(given: str, canonical: str) -> None:
    group = GroupConfig(name="g", command=("x",), stop_signal=given)
    assert group.stop_signal == canonical
    assert signal.Signals[group.stop_signal]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "replicas: must be an integer >= 1, got 0"),
        ({"replicas": True}, "replicas: must be an integer >= 1, got true (a boolean)"),
        ({"command": ()}, "command: must be a non-empty array"),
        ({"command": ("",)}, "command[0]: the program must not be an empty string"),
        ({"name": ""}, "name: must start with a letter or digit"),
        ({"restart": "sometimes"}, 'restart: must be one of "never" | "on-failure" | "always"'),
        ({"max_restarts": -1}, "max_restarts: must be an integer >= 0, got -1"),
        ({"backoff": -1.0}, "backoff: must be a number of seconds >= 0, got -1.0"),
        ({"restart_window": 0.0}, "restart_window: must be a number of seconds > 0"),
        ({"stop_signal": "SIGNOPE"}, "stop_signal: must be a signal name"),
        ({"env": {"A": 1}}, "env.A: must be a string"),
        ({"umask": 0o1000}, "umask: must be an integer from 0 to 0o777, got 0o1000"),
        ({"user": "placevisor-no-such-user"}, "user: no such user"),
        ({"group": "placevisor-no-such-group"}, "group: no such group"),
        ({"bind": 1}, "bind: must be true or false, got 1"),
    ],
)
def test_group_built_in_code_is_validated(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "engine", "command": ("sh",)}
    with pytest.raises(ConfigError) as info:
        GroupConfig(**(base | kwargs))  # type: ignore[arg-type]
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("kind", "kwargs", "message"),
    [
        (SupervisorSettings, {"shutdown_timeout": -1}, "shutdown_timeout: must be a number"),
        (SupervisorSettings, {"log_format": "text"}, "log_format: must be one of"),
        (SupervisorSettings, {"color": "yes"}, "color: must be one of"),
        (TopologySettings, {"strategy": "sockets"}, "strategy: must be one of"),
        (TopologySettings, {"numa": "interleave"}, "numa: must be one of"),
        (TopologySettings, {"smt": -1}, "smt: must be an integer >= 0"),
        (TopologySettings, {"cpus": "0-"}, "cpus: bad CPU list"),
        (TopologySettings, {"cpus": "0-3||8"}, "cpus: empty CPU list between '|'"),
        (TopologySettings, {"nodes": "auto"}, "nodes: bad CPU list"),
        (TopologySettings, {"reserved_cpus": -1}, "reserved_cpus: must be an integer >= 0"),
    ],
)
def test_settings_built_in_code_are_validated(
    kind: type, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match="^" + message.replace("|", r"\|")):
        kind(**kwargs)


def test_config_in_code_checks_groups() -> None:
    group = GroupConfig(name="engine", command=("sh",))
    with pytest.raises(ConfigError, match=r"^<config>: group\[1\]\.name: duplicate group name"):
        Config(groups=(group, group))
    with pytest.raises(ConfigError, match=r"^<config>: group: at least one \[\[group\]\]"):
        Config(groups=())
    config = Config(groups=[group])  # type: ignore[arg-type]
    assert config.groups == (group,)


def test_list_command_and_env_are_copied() -> None:
    env = {"A": "1"}
    group = GroupConfig(name="g", command=["sh", "-c"], env=env)  # type: ignore[arg-type]
    env["A"] = "2"
    assert group.command == ("sh", "-c")
    assert group.env == {"A": "1"}


def test_user_needs_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match=r"^user: switching to user 'root' needs the supervisor"):
        GroupConfig(name="g", command=("sh",), user="root")


def test_user_accepted_as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    assert GroupConfig(name="g", command=("sh",), user="root").user == "root"


def test_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as info:
        load_config("missing.toml")
    assert str(info.value) == "missing.toml: cannot read: No such file or directory"


def test_not_utf8(write_config: WriteConfig) -> None:
    path = write_config("")
    path.write_bytes(b'[[group]]\nname = "\xff"\n')
    with pytest.raises(ConfigError, match="invalid TOML: not UTF-8"):
        load_config(path)


def test_cwd_and_program_resolved_against_config_dir(
    write_config: WriteConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "sub" / "bin"
    bin_dir.mkdir(parents=True)
    tool = bin_dir / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.chdir("/")
    config = load_config(
        write_config('[[group]]\nname = "a"\ncommand = ["./bin/tool"]\ncwd = "sub"\n')
    )
    assert config.groups[0].cwd == "sub"
    # the group's own PATH is searched
    load_config(
        write_config(f'[[group]]\nname = "a"\ncommand = ["tool"]\nenv = {{ PATH = "{bin_dir}" }}\n')
    )
    with pytest.raises(ConfigError, match="program 'tool' not found on PATH"):
        load_config(write_config('[[group]]\nname = "a"\ncommand = ["tool"]\n'))


def test_from_dict_matches_load(tmp_path: Path) -> None:
    data = {"group": [{"name": "a", "command": ["sh"], "replicas": 2}]}
    config = Config.from_dict(data, source="inline", base_dir=tmp_path)
    assert config.groups[0].replicas == 2 and config.source == "inline"
    with pytest.raises(ConfigError) as info:
        Config.from_dict(
            {"group": [{"name": "a", "command": ["sh"], "replicas": 0}]},
            source="inline",
            base_dir=tmp_path,
        )
    assert str(info.value) == "inline: group[0].replicas: must be an integer >= 1, got 0"


def test_scan_key_lines() -> None:
    text = """# comment
[supervisor]
shutdown_timeout = 1

[[group]]
name = "a"
env.X = "1"

[[group]]
name = "b"
[group.env]
"Y" = "2"
"""
    lines = scan_key_lines(text)
    assert lines["supervisor"] == 2
    assert lines["supervisor.shutdown_timeout"] == 3
    assert lines["group[0]"] == 5
    assert lines["group[0].env.X"] == 7
    assert lines["group[1].name"] == 10
    assert lines["group[1].env"] == 11
    assert lines["group[1].env.Y"] == 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{group}/{name}/{index}/{replicas}", "engine/engine_1/1/4"),
        ("{0} {} {{x}} {GROUP} {index", "{0} {} {{x}} {GROUP} {index"),
        ("{{index}}", "{1}"),
        ('{"json": {index}}', '{"json": 1}'),
    ],
)
def test_placeholders(text: str, expected: str) -> None:
    assert expand_placeholders(text, placeholder_values("engine", 1, 4)) == expected
