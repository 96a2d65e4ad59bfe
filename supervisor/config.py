"""The configuration model: frozen, keyword-only dataclasses.

Validation lives in ``__post_init__`` so a ``Config`` built in code is checked
exactly like one loaded from TOML; ``load_config`` only adds the file name and
line to the error, and checks the few facts about the machine a config names
(the command on PATH, the working directory, the lscpu dump).
"""

from __future__ import annotations

import difflib
import grp
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

from topology import CpuListError, parse_cpulist

from .errors import SupervisorError

LogFormat = Literal["console", "json"]
Color = Literal["auto", "always", "never"]
Strategy = Literal["nodes", "cores", "all", "gpus", "none"]
Numa = Literal["auto", "bind", "preferred", "off"]
Restart = Literal["never", "on-failure", "always"]
RestartScope = Literal["replica", "group"]

PLACEHOLDERS = ("group", "name", "index", "replicas")
_PLACEHOLDER_RE = re.compile(r"\{(group|name|index|replicas)\}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
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
    """Replace exactly ``{group}``, ``{name}``, ``{index}``, ``{replicas}``.

    Not ``str.format``: any other brace (``{0}``, ``{{x}}``, JSON in an env
    value) is the user's literal text.
    """
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def placeholder_values(group: str, index: int, replicas: int) -> dict[str, str]:
    """The values the four placeholders take for one replica."""
    return {
        "group": group,
        "name": f"{group}_{index}",
        "index": str(index),
        "replicas": str(replicas),
    }


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

    def __post_init__(self) -> None:
        name = _check_str("name", self.name)
        if not _NAME_RE.fullmatch(name):
            raise _FieldError(
                "name",
                "must start with a letter or digit and hold only letters, digits, '_', '.', '-',"
                f" got {_describe(name)}",
            )
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
    base_dir: Path = field(default_factory=Path.cwd)
    source: str = "<config>"
    key_lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.groups, list | tuple) or not self.groups:
            raise self.error("group", 'at least one [[group]] with "name" and "command" is needed')
        object.__setattr__(self, "groups", tuple(self.groups))
        seen: dict[str, int] = {}
        for i, group in enumerate(self.groups):
            if not isinstance(group, GroupConfig):
                raise self.error(f"group[{i}]", f"must be a GroupConfig, got {_describe(group)}")
            if group.name in seen:
                raise self.error(
                    f"group[{i}].name",
                    f"duplicate group name {group.name!r} (group[{seen[group.name]}] has it too)",
                )
            seen[group.name] = i
        if not isinstance(self.supervisor, SupervisorSettings):
            raise self.error("supervisor", "must be a SupervisorSettings")
        if not isinstance(self.topology, TopologySettings):
            raise self.error("topology", "must be a TopologySettings")
        object.__setattr__(self, "base_dir", Path(self.base_dir))

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
        _reject_unknown(source, "", data, {"supervisor", "topology", "group"}, lines)
        tables: dict[str, object] = {}
        for name, kind in (("supervisor", SupervisorSettings), ("topology", TopologySettings)):
            table = data.get(name, {})
            if not isinstance(table, Mapping):
                raise ConfigError(_format_error(source, name, _table_problem(table), lines))
            _reject_unknown(source, f"{name}.", table, _field_names(kind), lines)
            with located(f"{name}."):
                tables[name] = kind(**table)
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
        what = "table" if isinstance(table[key], Mapping) and not prefix else "key"
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


def _format_error(source: str, key: str, problem: str, lines: Mapping[str, int]) -> str:
    line = _line_of(key, lines)
    where = f"{key} (line {line})" if line else key
    return f"{source}: {where}: {problem}"


def _line_of(key: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``key`` or, failing that, of the closest enclosing key."""
    probe = key
    while probe:
        if probe in lines:
            return lines[probe]
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
        values = placeholder_values(group.name, 0, group.replicas)
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
