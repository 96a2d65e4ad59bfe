"""The configuration model: frozen, keyword-only dataclasses.

Validation lives in ``__post_init__`` so a ``Config`` built in code is checked
exactly like one loaded from TOML; ``load_config`` only adds the file name and
line to the error, and checks the few facts about the machine a config names
(the command on PATH, the working directory, the lscpu dump).
"""

from __future__ import annotations

import difflib
import grp
import ipaddress
import math
import os
import pwd
import re
import shutil
import signal
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args
from urllib.parse import urlsplit

from topology import CpuListError, parse_cpulist

from .errors import SupervisorError

LogFormat = Literal["console", "json"]
Color = Literal["auto", "always", "never"]
Strategy = Literal["nodes", "cores", "all", "gpus", "l3", "none"]
Numa = Literal["auto", "bind", "preferred", "off"]
Restart = Literal["never", "on-failure", "always"]
RestartScope = Literal["replica", "group"]
OmpBind = Literal["close", "spread", "none"]
Family = Literal["inet", "inet6", "unix"]
ProbeKind = Literal["started", "notify", "line", "tcp", "http"]

PLACEHOLDERS = (
    "group", "name", "index", "replicas", "node_rank", "nodes", "rank", "world_size", "fd:NAME",
)  # fmt: skip
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_NAME_RE = re.compile(_NAME)
_PLACEHOLDER_RE = re.compile(
    rf"\{{(group|name|index|replicas|node_rank|nodes|rank|world_size|fd:{_NAME})\}}"
)
_FD_RE = re.compile(rf"\{{fd:({_NAME})\}}")
FIRST_LISTEN_FD = 3  # the systemd convention: passed sockets start right after stderr
_UNIX_PATH_MAX = 107  # sun_path holds 108 bytes with the terminating NUL
_ENV_NAME_RE = re.compile(r"[^=\0]+")


class ConfigError(SupervisorError, ValueError):
    """A bad configuration: one line naming the file, the key and what is wrong."""


class _FieldError(ConfigError):
    """A problem found by a dataclass that does not know its file or position.

    ``Config.from_dict`` catches it and rewrites it with the file, the full
    dotted key and its line; built in code it reads ``key: problem``.
    """

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key
        self.problem = problem


def expand_placeholders(text: str, values: Mapping[str, str]) -> str:
    """Replace exactly the placeholders listed in ``PLACEHOLDERS`` that ``values`` holds.

    Not ``str.format``: any other brace (``{0}``, ``{{x}}``, JSON in an env
    value, a regex ``\\d{3}``) is the user's literal text, and so is a
    placeholder that ``values`` lacks (the config refuses ``{fd:X}`` for a
    socket the group does not name before it gets here).
    """
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def placeholder_values(
    group: str,
    index: int,
    replicas: int,
    *,
    node_rank: int = 0,
    nodes: int = 1,
    sockets: tuple[str, ...] | list[str] = (),
) -> dict[str, str]:
    """The values every placeholder takes for one replica.

    ``{rank}`` is unique across the job (``node_rank * replicas + index``) and
    ``{fd:NAME}`` is the fd a replica receives the group's socket NAME on:
    3, 4, ... in the order of the group's ``sockets``.
    """
    values = {
        "group": group,
        "name": f"{group}_{index}",
        "index": str(index),
        "replicas": str(replicas),
        "node_rank": str(node_rank),
        "nodes": str(nodes),
        "rank": str(node_rank * replicas + index),
        "world_size": str(nodes * replicas),
    }
    for position, socket_name in enumerate(sockets):
        values[f"fd:{socket_name}"] = str(FIRST_LISTEN_FD + position)
    return values


# -- field checks: each raises _FieldError(key, problem) ---------------------------


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple | dict) and not value:
        return f"an empty {_type_name(value)}"
    name = _type_name(value)
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def _type_name(value: object) -> str:
    names = {
        dict: "table",
        list: "array",
        tuple: "array",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "float",
    }
    return names.get(type(value), type(value).__name__)


def _check_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _FieldError(key, f"must be an integer >= {minimum}, got {_describe(value)}")
    return value


def _check_number(key: str, value: object, *, positive: bool = False) -> float:
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        want = "> 0" if positive else ">= 0"
        raise _FieldError(key, f"must be a number of seconds {want}, got {_describe(value)}")
    return number


def _check_choice(key: str, value: object, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        listed = " | ".join(f'"{c}"' for c in choices)
        raise _FieldError(key, f"must be one of {listed}, got {_describe(value)}")


def _check_str(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise _FieldError(key, f"must be a string, got {_describe(value)}")
    return value


def _check_name(value: object) -> None:
    """A group's or a socket's name: it shows in replica names, fd names and URLs."""
    name = _check_str("name", value)
    if not _NAME_RE.fullmatch(name):
        raise _FieldError(
            "name",
            "must start with a letter or digit and hold only letters, digits, '_', '.', '-',"
            f" got {_describe(name)}",
        )


def _check_bool(key: str, value: object) -> None:
    if not isinstance(value, bool):
        raise _FieldError(key, f"must be true or false, got {_describe(value)}")


def _signal_name(value: object) -> str:
    """Canonical ``SIGTERM`` form of a signal name given as ``TERM``/``sigterm``."""
    if isinstance(value, str):
        name = value.strip().upper()
        name = name if name.startswith("SIG") else "SIG" + name
        if name in signal.Signals.__members__:
            return signal.Signals[name].name
    raise _FieldError(
        "stop_signal", f'must be a signal name such as "SIGTERM" or "INT", got {_describe(value)}'
    )


def _check_cpulist(key: str, value: object, *, split: bool) -> None:
    text = _check_str(key, value)
    if not text.strip():
        return
    for part in text.split("|") if split else [text]:
        if not part.strip():
            raise _FieldError(key, f"empty CPU list between '|' in {text!r}")
        try:
            parse_cpulist(part)
        except CpuListError as exc:
            raise _FieldError(key, f'{exc} (write e.g. "0-3,8")') from None


def _check_names(key: str, value: object, what: str) -> tuple[str, ...]:
    """An array of distinct names (groups, sockets), returned as a tuple."""
    if not isinstance(value, list | tuple):
        raise _FieldError(
            key, f'must be an array of {what} names such as ["x"], got {_describe(value)}'
        )
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise _FieldError(f"{key}[{i}]", f"must be a {what} name, got {_describe(item)}")
        if item in seen:
            raise _FieldError(f"{key}[{i}]", f"{item!r} is named twice")
        seen.add(item)
    return tuple(value)


# -- addresses and probes: parsed into small values the effectful code consumes ------


@dataclass(frozen=True, kw_only=True, slots=True)
class ListenAddress:
    """Where a socket listens or a probe connects: a TCP host and port, or a unix path.

    ``family`` is ``inet6`` only for a bracketed IPv6 literal; a host name is
    looked up for IPv4 (write ``[::1]:PORT`` for IPv6). A relative unix path
    is relative to the config's directory: see ``under``.
    """

    family: Family
    host: str = ""
    port: int = 0
    path: str = ""

    def __str__(self) -> str:
        if self.family == "unix":
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.family == "inet6" else self.host
        return f"{host}:{self.port}"

    def under(self, base_dir: Path | str) -> ListenAddress:
        """The same address with a relative unix path made absolute under ``base_dir``."""
        if self.family != "unix" or os.path.isabs(self.path):
            return self
        return ListenAddress(family="unix", path=str(Path(base_dir) / self.path))


def parse_host_port(text: str, *, min_port: int = 1) -> ListenAddress:
    """``HOST:PORT`` or ``[IPV6]:PORT``; ValueError says what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f'{text!r} is not HOST:PORT (e.g. "127.0.0.1:8000" or "[::1]:8000")')
    family: Family = "inet"
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address") from None
        family = "inet6"
    elif ":" in host:
        raise ValueError(f'write an IPv6 address in brackets: "[{host}]:{port_text}"')
    elif not re.fullmatch(r"[A-Za-z0-9_.-]+", host):
        raise ValueError(f"{text!r} has no valid host before the port")
    if not port_text.isdigit() or not min_port <= int(port_text) <= 65535:
        raise ValueError(f"port {port_text!r} in {text!r} must be an integer {min_port}-65535")
    return ListenAddress(family=family, host=host, port=int(port_text))


def parse_listen(text: str) -> ListenAddress:
    """A ``[[socket]]`` address: ``HOST:PORT``, ``[IPV6]:PORT`` (port 0: any free port),
    or ``unix:PATH``."""
    if text.startswith("unix:"):
        path = text[len("unix:") :]
        if not path or "\0" in path:
            raise ValueError('"unix:" needs a path, e.g. "unix:/run/app.sock"')
        if len(os.fsencode(path)) > _UNIX_PATH_MAX:
            raise ValueError(f"unix socket path is longer than {_UNIX_PATH_MAX} bytes")
        return ListenAddress(family="unix", path=path)
    return parse_host_port(text, min_port=0)


@dataclass(frozen=True, kw_only=True, slots=True)
class ProbeSpec:
    """A parsed ``ready`` or ``health`` value (after placeholders are expanded).

    ``started``: ready once started (``ready = ""``); ``notify``: READY=1 on
    NOTIFY_SOCKET; ``line``: ``pattern`` searched in each output line;
    ``tcp``: a connect to ``address``; ``http``: GET ``url`` answers 2xx.
    """

    kind: ProbeKind
    pattern: str = ""
    address: ListenAddress | None = None
    url: str = ""


def parse_probe(text: str, *, health: bool = False) -> ProbeSpec:
    """Parse one ``ready`` (or, with ``health``, ``health``) value; ValueError says why not."""
    if text == "":
        return ProbeSpec(kind="started")
    kind, sep, rest = text.partition(":")
    forms = (
        '"tcp:HOST:PORT" or "http:URL"'
        if health
        else ('"notify", "line:REGEX", "tcp:HOST:PORT" or "http:URL"')
    )
    if health and (text == "notify" or kind == "line"):
        raise ValueError(
            f"{text!r} is a readiness form only; liveness is {forms} (see watchdog for notify)"
        )
    if text == "notify":
        return ProbeSpec(kind="notify")
    if kind == "line" and sep:
        try:
            re.compile(rest)
        except re.error as exc:
            raise ValueError(f"line: regex {rest!r} does not compile: {exc}") from None
        return ProbeSpec(kind="line", pattern=rest)
    if kind == "tcp" and sep:
        return ProbeSpec(kind="tcp", address=parse_host_port(rest))
    if kind == "http" and sep:
        return ProbeSpec(kind="http", url=_check_url(rest))
    raise ValueError(f"{text!r} is not a probe; use {forms}")


def _check_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"http: URL {url!r} is malformed: {exc}") from None
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(
            f"http: needs an http:// URL with a host, got {url!r} "
            '(e.g. "http:http://127.0.0.1:8000/health")'
        )
    if port == 0:
        raise ValueError(f"http: URL {url!r} has port 0")
    return url


# -- the model ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class SupervisorSettings:
    """The ``[supervisor]`` table: how the supervisor itself behaves."""

    shutdown_timeout: float = 10.0
    log_format: LogFormat = "console"
    color: Color = "auto"

    def __post_init__(self) -> None:
        timeout = _check_number("shutdown_timeout", self.shutdown_timeout)
        object.__setattr__(self, "shutdown_timeout", timeout)
        _check_choice("log_format", self.log_format, get_args(LogFormat))
        _check_choice("color", self.color, get_args(Color))


@dataclass(frozen=True, kw_only=True, slots=True)
class TopologySettings:
    """The ``[topology]`` table: what a place is and how replicas are bound to it."""

    strategy: Strategy = "none"
    smt: int = 1
    cpus: str = ""
    nodes: str = ""
    reserved_cpus: int = 0
    numa: Numa = "auto"
    lscpu: str = ""

    def __post_init__(self) -> None:
        _check_choice("strategy", self.strategy, get_args(Strategy))
        if isinstance(self.smt, bool) or not isinstance(self.smt, int) or self.smt < 0:
            raise _FieldError(
                "smt", f"must be an integer >= 0 (0 = every thread), got {_describe(self.smt)}"
            )
        _check_cpulist("cpus", self.cpus, split=True)
        _check_cpulist("nodes", self.nodes, split=False)
        _check_int("reserved_cpus", self.reserved_cpus, 0)
        _check_choice("numa", self.numa, get_args(Numa))
        _check_str("lscpu", self.lscpu)


@dataclass(frozen=True, kw_only=True, slots=True)
class ControlSettings:
    """The ``[control]`` table: the unix socket ``ctl`` talks to, and an optional TCP port.

    ``socket``: "auto" (a per-config path, see ``envplan.control_socket_path``),
    "" (none) or a path (relative to the config's directory). ``listen``:
    "HOST:PORT" for the read-only endpoints, "" for none.
    """

    socket: str = "auto"
    listen: str = ""

    def __post_init__(self) -> None:
        if "\0" in _check_str("socket", self.socket):
            raise _FieldError("socket", "must not contain a NUL character")
        if _check_str("listen", self.listen).startswith("unix:"):
            raise _FieldError(
                "listen", 'takes a TCP "HOST:PORT"; the unix socket is control.socket'
            )
        if self.listen:
            try:
                parse_host_port(self.listen)
            except ValueError as exc:
                raise _FieldError("listen", str(exc)) from None

    @property
    def listen_address(self) -> ListenAddress | None:
        """The parsed ``listen``, or None when there is no TCP listener."""
        return parse_host_port(self.listen) if self.listen else None


@dataclass(frozen=True, kw_only=True, slots=True)
class SocketConfig:
    """One ``[[socket]]``: bound once by the supervisor and passed to replicas as an fd."""

    name: str
    listen: str
    backlog: int = 1024
    reuse_port: bool = False

    def __post_init__(self) -> None:
        _check_name(self.name)
        listen = _check_str("listen", self.listen)
        try:
            parse_listen(listen)
        except ValueError as exc:
            raise _FieldError("listen", str(exc)) from None
        _check_int("backlog", self.backlog, 1)
        _check_bool("reuse_port", self.reuse_port)

    @property
    def address(self) -> ListenAddress:
        """The parsed ``listen`` (a relative unix path as written: see ``ListenAddress.under``)."""
        return parse_listen(self.listen)


@dataclass(frozen=True, kw_only=True, slots=True)
class GroupConfig:
    """One ``[[group]]``: a command run as ``replicas`` identical, placed processes."""

    name: str
    command: tuple[str, ...]
    replicas: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str = "."
    restart: Restart = "on-failure"
    restart_scope: RestartScope = "replica"
    max_restarts: int = 3
    restart_window: float = 60.0
    backoff: float = 0.5
    stop_signal: str = "SIGTERM"
    bind: bool = True
    user: str | None = None
    group: str | None = None
    umask: int | None = None
    sockets: tuple[str, ...] = ()
    ready: str = ""
    ready_timeout: float = 60.0
    health: str = ""
    health_interval: float = 10.0
    health_failures: int = 3
    watchdog: float = 0.0
    after: tuple[str, ...] = ()
    omp_bind: OmpBind = "close"

    def __post_init__(self) -> None:
        _check_name(self.name)
        self._check_command()
        _check_int("replicas", self.replicas, 1)
        self._check_env()
        if not _check_str("cwd", self.cwd):
            raise _FieldError("cwd", 'must not be empty (use "." for the config\'s directory)')
        _check_choice("restart", self.restart, get_args(Restart))
        _check_choice("restart_scope", self.restart_scope, get_args(RestartScope))
        _check_int("max_restarts", self.max_restarts, 0)
        window = _check_number("restart_window", self.restart_window, positive=True)
        object.__setattr__(self, "restart_window", window)
        object.__setattr__(self, "backoff", _check_number("backoff", self.backoff))
        object.__setattr__(self, "stop_signal", _signal_name(self.stop_signal))
        _check_bool("bind", self.bind)
        self._check_identity()
        if self.umask is not None and (
            isinstance(self.umask, bool)
            or not isinstance(self.umask, int)
            or not 0 <= self.umask <= 0o777
        ):
            shown = oct(self.umask) if type(self.umask) is int else _describe(self.umask)
            raise _FieldError("umask", f"must be an integer from 0 to 0o777, got {shown}")
        object.__setattr__(self, "sockets", _check_names("sockets", self.sockets, "[[socket]]"))
        object.__setattr__(self, "after", _check_names("after", self.after, "group"))
        if self.name in self.after:
            raise _FieldError("after", f"group {self.name!r} cannot come after itself")
        _check_str("ready", self.ready)
        _check_str("health", self.health)
        self._check_fd_placeholders()
        self._check_probes()
        _check_choice("omp_bind", self.omp_bind, get_args(OmpBind))

    def _check_probes(self) -> None:
        timeout = _check_number("ready_timeout", self.ready_timeout, positive=True)
        object.__setattr__(self, "ready_timeout", timeout)
        interval = _check_number("health_interval", self.health_interval, positive=True)
        object.__setattr__(self, "health_interval", interval)
        _check_int("health_failures", self.health_failures, 1)
        watchdog = _check_number("watchdog", self.watchdog)
        object.__setattr__(self, "watchdog", watchdog)
        # Placeholders may build the value (a port per index): check the first and last replica.
        for index in sorted({0, self.replicas - 1}):
            values = placeholder_values(self.name, index, self.replicas, sockets=self.sockets)
            for key, health in (("ready", False), ("health", True)):
                text = getattr(self, key)
                expanded = expand_placeholders(text, values)
                try:
                    parse_probe(expanded, health=health)
                except ValueError as exc:
                    shown = f"for {values['name']}: {exc}" if expanded != text else str(exc)
                    raise _FieldError(key, shown) from None
        if watchdog > 0 and self.ready != "notify":
            raise _FieldError(
                "watchdog",
                f'needs ready = "notify" (WATCHDOG=1 comes over NOTIFY_SOCKET), '
                f"got ready = {self.ready!r}",
            )

    def _check_fd_placeholders(self) -> None:
        """``{fd:X}`` must name one of the group's own sockets."""
        texts = [(f"command[{i}]", arg) for i, arg in enumerate(self.command)]
        texts += [(f"env.{k}", v) for k, v in self.env.items()]
        texts += [("ready", self.ready), ("health", self.health)]
        for key, text in texts:
            for match in _FD_RE.finditer(text):
                if match.group(1) not in self.sockets:
                    named = ", ".join(self.sockets) if self.sockets else "none"
                    raise _FieldError(
                        key,
                        f"{match.group(0)} names a socket this group does not take "
                        f"(its sockets: {named}); add {match.group(1)!r} to sockets",
                    )

    def _check_command(self) -> None:
        command = self.command
        if not isinstance(command, list | tuple) or not command:
            raise _FieldError(
                "command",
                f'must be a non-empty array of strings such as ["python", "app.py"], '
                f"got {_describe(command)}",
            )
        for i, arg in enumerate(command):
            if not isinstance(arg, str):
                raise _FieldError(f"command[{i}]", f"must be a string, got {_describe(arg)}")
            if "\0" in arg:
                raise _FieldError(f"command[{i}]", "must not contain a NUL character")
        if not command[0]:
            raise _FieldError("command[0]", "the program must not be an empty string")
        object.__setattr__(self, "command", tuple(command))

    def _check_env(self) -> None:
        if not isinstance(self.env, Mapping):
            raise _FieldError("env", f"must be a table of strings, got {_describe(self.env)}")
        env: dict[str, str] = {}
        for key, value in self.env.items():
            if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
                raise _FieldError(f"env.{key}", "a variable name must be non-empty, without '='")
            if not isinstance(value, str) or "\0" in value:
                raise _FieldError(
                    f"env.{key}",
                    f'must be a string (quote numbers: "4"), got {_describe(value)}',
                )
            env[key] = value
        object.__setattr__(self, "env", env)

    def _check_identity(self) -> None:
        lookups: tuple[tuple[str, Callable[[str], object]], ...] = (
            ("user", pwd.getpwnam),
            ("group", grp.getgrnam),
        )
        for key, lookup in lookups:
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, str) or not value:
                raise _FieldError(key, f"must be a non-empty name, got {_describe(value)}")
            try:
                lookup(value)
            except KeyError:
                raise _FieldError(key, f"no such {key} {value!r} on this machine") from None
            if os.geteuid() != 0:
                raise _FieldError(
                    key, f"switching to {key} {value!r} needs the supervisor to run as root"
                )


@dataclass(frozen=True, kw_only=True, slots=True)
class Config:
    """A whole configuration file: settings plus groups in the order they start."""

    groups: tuple[GroupConfig, ...]
    supervisor: SupervisorSettings = field(default_factory=SupervisorSettings)
    topology: TopologySettings = field(default_factory=TopologySettings)
    control: ControlSettings = field(default_factory=ControlSettings)
    sockets: tuple[SocketConfig, ...] = ()
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<config>"
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, list | tuple) or not self.groups:
            raise self.error("group", 'at least one [[group]] with "name" and "command" is needed')
        object.__setattr__(self, "groups", tuple(self.groups))
        self._named("group", self.groups, GroupConfig)
        if not isinstance(self.supervisor, SupervisorSettings):
            raise self.error("supervisor", "must be a SupervisorSettings")
        if not isinstance(self.topology, TopologySettings):
            raise self.error("topology", "must be a TopologySettings")
        if not isinstance(self.control, ControlSettings):
            raise self.error("control", "must be a ControlSettings")
        object.__setattr__(self, "base_dir", Path(self.base_dir))
        self._check_sockets()
        self._check_after()

    def _named(
        self, key: str, items: tuple[Any, ...], kind: type[GroupConfig] | type[SocketConfig]
    ) -> dict[str, int]:
        """Each item is a ``kind`` with a name no other one has: name -> position."""
        seen: dict[str, int] = {}
        for i, item in enumerate(items):
            if not isinstance(item, kind):
                raise self.error(f"{key}[{i}]", f"must be a {kind.__name__}, got {_describe(item)}")
            if item.name in seen:
                raise self.error(
                    f"{key}[{i}].name",
                    f"duplicate {key} name {item.name!r} ({key}[{seen[item.name]}] has it too)",
                )
            seen[item.name] = i
        return seen

    def _check_sockets(self) -> None:
        if not isinstance(self.sockets, list | tuple):
            raise self.error(
                "socket", f"must be an array of [[socket]], got {_describe(self.sockets)}"
            )
        object.__setattr__(self, "sockets", tuple(self.sockets))
        names = self._named("socket", self.sockets, SocketConfig)
        for i, group in enumerate(self.groups):
            for j, name in enumerate(group.sockets):
                if name not in names:
                    raise self.error(
                        f"group[{i}].sockets[{j}]",
                        f"no [[socket]] named {name!r}{_known(name, set(names), 'sockets')}",
                    )

    def _check_after(self) -> None:
        """Every ``after`` names a group, and the start order has no cycle."""
        index = {group.name: i for i, group in enumerate(self.groups)}
        for i, group in enumerate(self.groups):
            for j, name in enumerate(group.after):
                if name not in index:
                    raise self.error(
                        f"group[{i}].after[{j}]",
                        f"no group named {name!r}{_known(name, set(index), 'groups')}",
                    )
        cycle = _find_cycle({group.name: group.after for group in self.groups})
        if cycle:
            raise self.error(
                f"group[{index[cycle[0]]}].after", "start order cycle: " + " -> ".join(cycle)
            )

    def group_named(self, name: str) -> GroupConfig:
        """The group called ``name``; KeyError when there is none."""
        for group in self.groups:
            if group.name == name:
                return group
        raise KeyError(name)

    def socket_named(self, name: str) -> SocketConfig:
        """The ``[[socket]]`` called ``name``; KeyError when there is none."""
        for sock in self.sockets:
            if sock.name == name:
                return sock
        raise KeyError(name)

    def error(self, key: str, problem: str) -> ConfigError:
        """A ConfigError for ``key`` in this config, with the file and line when known."""
        return ConfigError(_format_error(self.source, key, problem, self.key_lines))

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str,
        base_dir: Path | str,
        key_lines: Mapping[str, int] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Build and check a Config from parsed TOML data.

        Besides the model's own checks it refuses unknown keys and verifies what
        the file names on this machine: the program, each ``cwd`` and the lscpu
        dump. ``environ`` (default ``os.environ``) gives the PATH searched.
        """
        lines = dict(key_lines or {})
        base = Path(base_dir)

        @contextmanager
        def located(prefix: str) -> Iterator[None]:
            try:
                yield
            except _FieldError as exc:
                raise ConfigError(
                    _format_error(source, f"{prefix}{exc.key}", exc.problem, lines)
                ) from None

        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: the document must be a table, got {_describe(data)}")
        _reject_unknown(
            source, "", data, {"supervisor", "topology", "control", "socket", "group"}, lines
        )
        tables: dict[str, object] = {}
        settings: tuple[tuple[str, type], ...] = (
            ("supervisor", SupervisorSettings),
            ("topology", TopologySettings),
            ("control", ControlSettings),
        )
        for name, kind in settings:
            table = data.get(name, {})
            if not isinstance(table, Mapping):
                raise ConfigError(_format_error(source, name, _table_problem(table), lines))
            _reject_unknown(source, f"{name}.", table, _field_names(kind), lines)
            with located(f"{name}."):
                tables[name] = kind(**table)
        raw_sockets = data.get("socket", [])
        if not isinstance(raw_sockets, list) or not all(
            isinstance(s, Mapping) for s in raw_sockets
        ):
            raise ConfigError(
                _format_error(
                    source,
                    "socket",
                    f"must be an array of tables written [[socket]], got {_describe(raw_sockets)}",
                    lines,
                )
            )
        sockets = []
        for i, raw in enumerate(raw_sockets):
            _reject_unknown(source, f"socket[{i}].", raw, _field_names(SocketConfig), lines)
            for required in ("name", "listen"):
                if required not in raw:
                    raise ConfigError(
                        _format_error(source, f"socket[{i}]", f'missing "{required}"', lines)
                    )
            with located(f"socket[{i}]."):
                sockets.append(SocketConfig(**raw))
        raw_groups = data.get("group")
        if raw_groups is None:
            raise ConfigError(
                f'{source}: group: at least one [[group]] with "name" and "command" is needed'
            )
        if not isinstance(raw_groups, list) or not all(isinstance(g, Mapping) for g in raw_groups):
            raise ConfigError(
                _format_error(
                    source,
                    "group",
                    f"must be an array of tables written [[group]], got {_describe(raw_groups)}",
                    lines,
                )
            )
        groups = []
        allowed = _field_names(GroupConfig)
        for i, raw in enumerate(raw_groups):
            prefix = f"group[{i}]."
            _reject_unknown(source, prefix, raw, allowed, lines)
            for required in ("name", "command"):
                if required not in raw:
                    raise ConfigError(
                        _format_error(source, f"group[{i}]", f'missing "{required}"', lines)
                    )
            with located(prefix):
                groups.append(GroupConfig(**raw))
        config = cls(
            groups=tuple(groups),
            supervisor=tables["supervisor"],  # type: ignore[arg-type]
            topology=tables["topology"],  # type: ignore[arg-type]
            control=tables["control"],  # type: ignore[arg-type]
            sockets=tuple(sockets),
            base_dir=base,
            source=source,
            key_lines=lines,
        )
        _check_machine(config, os.environ if environ is None else environ)
        return config


def _field_names(kind: type) -> set[str]:
    return {f.name for f in fields(kind)}


def _table_problem(value: object) -> str:
    return f"must be a table, got {_describe(value)}"


def _reject_unknown(
    source: str,
    prefix: str,
    table: Mapping[str, Any],
    allowed: set[str],
    lines: Mapping[str, int],
) -> None:
    """Refuse keys the model does not know, suggesting the closest one."""
    for key in table:
        if key in allowed:
            continue
        value = table[key]
        is_table = isinstance(value, Mapping) or (
            isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)
        )
        what = "table" if is_table and not prefix else "key"
        problem = f"unknown {what}"
        close = _closest(str(key), allowed)
        if close:
            problem += f' (did you mean "{close}"?)'
        else:
            problem += "; known: " + ", ".join(sorted(allowed))
        raise ConfigError(_format_error(source, f"{prefix}{key}", problem, lines))


def _closest(word: str, candidates: set[str]) -> str | None:
    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.75)
    return found[0] if found else None


def _known(word: str, names: set[str], what: str) -> str:
    """The "did you mean" or "known: ..." tail of an unknown-name message."""
    close = _closest(word, names)
    if close:
        return f' (did you mean "{close}"?)'
    return f"; known {what}: " + (", ".join(sorted(names)) if names else "none")


def _find_cycle(edges: Mapping[str, tuple[str, ...]]) -> list[str]:
    """The first cycle in a dependency graph, as ``[a, b, a]``; ``[]`` when acyclic.

    Depth first from each node in order, so the cycle reported is stable.
    """
    done: set[str] = set()
    for start in edges:
        if start in done:
            continue
        path: list[str] = [start]
        stack: list[Iterator[str]] = [iter(edges.get(start, ()))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path.pop())
                continue
            if nxt in path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                path.append(nxt)
                stack.append(iter(edges.get(nxt, ())))
    return []


def _format_error(source: str, key: str, problem: str, lines: Mapping[str, int]) -> str:
    line = _line_of(key, lines)
    where = f"{key} (line {line})" if line else key
    return f"{source}: {where}: {problem}"


def _line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key`` or, failing that, of the closest enclosing key."""
    probe = key
    while probe:
        for candidate in (probe, f"{probe}[0]"):  # an array of tables: its first header
            if candidate in lines:
                return lines[candidate]
        cut = max(probe.rfind("."), probe.rfind("["))
        if cut <= 0:
            return None
        probe = probe[:cut]
    return None


def _check_machine(config: Config, environ: Mapping[str, str]) -> None:
    """The only look at the machine a config gets: program, working dirs, lscpu dump."""
    lscpu = config.topology.lscpu
    if lscpu and not (config.base_dir / lscpu).is_file():
        raise config.error(
            "topology.lscpu", f"no such file {lscpu!r} (a path relative to the config's directory)"
        )
    for i, group in enumerate(config.groups):
        cwd = config.base_dir / group.cwd
        if not cwd.is_dir():
            raise config.error(
                f"group[{i}].cwd",
                f"no such directory {group.cwd!r} (a path relative to the config's directory)",
            )
        values = placeholder_values(group.name, 0, group.replicas, sockets=group.sockets)
        program = expand_placeholders(group.command[0], values)
        path = expand_placeholders(group.env.get("PATH", environ.get("PATH", os.defpath)), values)
        problem = _find_program(program, cwd, path)
        if problem:
            raise config.error(f"group[{i}].command", problem)


def _find_program(program: str, cwd: Path, path: str) -> str | None:
    """None when ``program`` can be executed, else why not."""
    if "/" in program:
        target = cwd / program
        if not target.exists():
            return f"program {program!r} does not exist"
        if target.is_dir() or not os.access(target, os.X_OK):
            return f"program {program!r} is not an executable file (chmod +x?)"
        return None
    entries = [str(cwd / entry) if entry else str(cwd) for entry in path.split(os.pathsep)]
    if shutil.which(program, path=os.pathsep.join(entries)) is None:
        return f"program {program!r} not found on PATH (give its path, or add its dir to PATH)"
    return None


# -- TOML ---------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, parse and check a TOML config; every problem is one ConfigError line."""
    source = os.fspath(path)
    try:
        raw = Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: not UTF-8 ({exc.reason})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    base_dir = Path(source).resolve().parent
    return Config.from_dict(data, source=source, base_dir=base_dir, key_lines=scan_key_lines(text))


_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_BARE = r"[A-Za-z0-9_-]+"
_KEY_PART = rf"(?:{_BARE}|\"[^\"]*\"|'[^']*')"
_ASSIGN_RE = re.compile(rf"^\s*({_KEY_PART}(?:\s*\.\s*{_KEY_PART})*)\s*=")


def _split_dotted(key: str) -> list[str]:
    return [part.strip().strip("\"'") for part in re.findall(_KEY_PART, key)]


def scan_key_lines(text: str) -> dict[str, int]:
    """Map dotted keys (``group[1].replicas``) to the line assigning them.

    tomllib reports no positions, so this is a best-effort scan of headers and
    ``key =`` lines; multi-line strings may confuse it, which only costs the
    ``(line N)`` in a message.
    """
    lines: dict[str, int] = {}
    table: list[str] = []
    counts: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER_RE.match(line)
        if header:
            parts = _split_dotted(header.group(2))
            if header.group(1) == "[[":
                name = ".".join(parts)
                index = counts.get(name, -1) + 1
                counts[name] = index
                parts[-1] = f"{parts[-1]}[{index}]"
            elif parts and parts[0] in counts:
                parts[0] = f"{parts[0]}[{counts[parts[0]]}]"
            table = parts
            lines.setdefault(".".join(table), number)
            continue
        assign = _ASSIGN_RE.match(line)
        if assign:
            key = ".".join([*table, *_split_dotted(assign.group(1))])
            lines.setdefault(key, number)
    return lines
