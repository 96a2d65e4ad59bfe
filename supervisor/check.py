"""``check``: validate a config and show the plan, for people or for machines.

Nothing is started: the output is the plan the ``serve`` command would
execute, so a user can see every argv, CPU set and added variable first.
"""

from __future__ import annotations

import json
import os
import resource
import shlex
import shutil
from collections.abc import Mapping
from typing import Any, TextIO

from topology import TopologyError, format_cpulist

from .config import FIRST_LISTEN_FD, Config, ConfigError, GroupConfig, load_config
from .envplan import Launcher, control_socket_path, detect_launcher
from .numaprobe import NumactlProbe
from .plan import LaunchPlan, build_plan, fd_problem

_UNSET: Any = object()


def _launcher(plan: LaunchPlan, launcher: Launcher | None) -> Launcher:
    """The plan's launcher once plan.py carries one, else the one given, else the default."""
    found = getattr(plan, "launcher", None)
    if isinstance(found, Launcher):
        return found
    return launcher if launcher is not None else Launcher()


def _control_socket(
    plan: LaunchPlan, config: Config, launcher: Launcher, given: str | None
) -> str | None:
    """The plan's control socket once plan.py carries one, else the one given, else derived."""
    found = getattr(plan, "control_socket", _UNSET)
    if found is not _UNSET:
        return found if isinstance(found, str) else None
    if given is not _UNSET:
        return given
    return control_socket_path(
        config, node_rank=launcher.known_node_rank, environ=os.environ, euid=os.geteuid()
    )


def _group_json(group: GroupConfig) -> dict[str, object]:
    return {
        "name": group.name,
        "replicas": group.replicas,
        "ready": group.ready,
        "ready_timeout": group.ready_timeout,
        "health": group.health,
        "health_interval": group.health_interval,
        "health_failures": group.health_failures,
        "watchdog": group.watchdog,
        "after": list(group.after),
        "sockets": list(group.sockets),
        "omp_bind": group.omp_bind,
    }


def _group_line(group: GroupConfig) -> str:
    parts = [
        f"ready {group.ready!r} within {group.ready_timeout:g} s"
        if group.ready
        else "ready once started"
    ]
    if group.health:
        parts.append(
            f"health {group.health!r} every {group.health_interval:g} s, "
            f"{group.health_failures} misses fail"
        )
    if group.watchdog:
        parts.append(f"watchdog {group.watchdog:g} s")
    if group.after:
        parts.append("after " + ", ".join(group.after))
    if group.sockets:
        parts.append(
            "sockets "
            + ", ".join(
                f"{name} (fd {FIRST_LISTEN_FD + i})" for i, name in enumerate(group.sockets)
            )
        )
    parts.append(f"omp_bind {group.omp_bind}")
    return f"group {group.name}: " + "; ".join(parts)


def _socket_listen(config: Config, name: str) -> str:
    """A ``[[socket]]`` address as it will be bound (a relative unix path made absolute)."""
    return str(config.socket_named(name).address.under(config.base_dir))


def render_text(
    plan: LaunchPlan,
    config: Config,
    *,
    launcher: Launcher | None = None,
    control_socket: str | None = _UNSET,
) -> str:
    """The plan as people read it: one block per replica, warnings first."""
    out: list[str] = [f"warning: {w}" for w in plan.warnings]
    settings = config.topology
    groups = len(config.groups)
    out.append(
        f"{config.source}: {len(plan.replicas)} replica{'s' if len(plan.replicas) != 1 else ''}"
        f' in {groups} group{"s" if groups != 1 else ""}; strategy "{settings.strategy}",'
        f' numa "{settings.numa}"'
    )
    found = _launcher(plan, launcher)
    out.append(f"launcher: node rank {found.node_rank} of {found.nodes} nodes ({found.source})")
    path = _control_socket(plan, config, found, control_socket)
    listen = f"; listen {config.control.listen}" if config.control.listen else ""
    out.append(f"control: socket {path or 'none'}{listen}")
    for sock in config.sockets:
        flags = ", reuse_port" if sock.reuse_port else ""
        out.append(
            f"socket {sock.name}: {_socket_listen(config, sock.name)}"
            f" (backlog {sock.backlog}{flags})"
        )
    out.extend(_group_line(group) for group in config.groups)
    for replica in plan.replicas:
        if replica.cpus:
            where = f"CPUs {format_cpulist(replica.cpus)}, nodes {format_cpulist(replica.nodes)}"
        else:
            where = "unbound"
        out.append("")
        out.append(f"{replica.name}: {where}")
        out.append(f"  argv: {shlex.join(replica.argv)}")
        out.append(f"  cwd:  {replica.cwd}")
        for key, value in replica.env_added.items():
            out.append(f"  env:  {key}={shlex.quote(value)}")
        removed = tuple(getattr(replica, "removed_env", ()))
        if removed:
            out.append(f"  removed from env: {' '.join(removed)}")
    return "\n".join(out) + "\n"


def render_json(
    plan: LaunchPlan,
    config: Config | None = None,
    *,
    launcher: Launcher | None = None,
    control_socket: str | None = _UNSET,
) -> str:
    """The plan in the contract's machine-readable schema (``env`` = what is added).

    With ``config`` it also carries the groups' readiness/order/socket keys,
    the ``[[socket]]`` list, the control socket and the launcher.
    """
    replicas = [
        {
            "name": r.name,
            "group": r.group,
            "index": r.index,
            "argv": list(r.argv),
            "env": dict(r.env_added),
            "cpus": list(r.cpus),
            "nodes": list(r.nodes),
            "removed_env": list(getattr(r, "removed_env", ())),
        }
        for r in plan.replicas
    ]
    data: dict[str, object] = {"replicas": replicas}
    if config is not None:
        found = _launcher(plan, launcher)
        data["groups"] = [_group_json(group) for group in config.groups]
        data["sockets"] = [
            {
                "name": sock.name,
                "listen": _socket_listen(config, sock.name),
                "backlog": sock.backlog,
                "reuse_port": sock.reuse_port,
            }
            for sock in config.sockets
        ]
        data["control"] = {
            "socket": _control_socket(plan, config, found, control_socket),
            "listen": config.control.listen or None,
        }
        data["launcher"] = _launcher_json(found)
    return json.dumps(data, indent=2) + "\n"


def _launcher_json(launcher: Launcher) -> Mapping[str, object]:
    return {"node_rank": launcher.node_rank, "nodes": launcher.nodes, "source": launcher.source}


def run_check(
    path: str,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    node_rank: int | None = None,
    nodes: int | None = None,
) -> int:
    """Load and plan ``path`` against this machine; 0 when valid, else 2 and one line.

    ``node_rank``/``nodes`` are ``--node-rank``/``--nodes``; the launcher's
    variables fill in what they leave out.
    """
    try:
        config = load_config(path)
        environ = dict(os.environ)
        launcher = detect_launcher(environ, node_rank=node_rank, nodes=nodes)
        control = control_socket_path(
            config, node_rank=launcher.known_node_rank, environ=environ, euid=os.geteuid()
        )
        numactl = shutil.which("numactl", path=environ.get("PATH"))
        plan = build_plan(
            config,
            environ=environ,
            probe=NumactlProbe(numactl or "numactl", environ=environ),
            node_rank=node_rank,
            nodes=nodes,
        )
        problem = fd_problem(config, resource.getrlimit(resource.RLIMIT_NOFILE)[1])
        if problem:
            raise config.error("group", problem)
    except ConfigError as exc:
        print(exc, file=err)
        return 2
    except TopologyError as exc:  # build_plan converts these; kept as a safety net
        print(f"{path}: topology: {exc}", file=err)
        return 2
    if as_json:
        for warning in plan.warnings:
            print(f"warning: {warning}", file=err)
        out.write(render_json(plan, config, launcher=launcher, control_socket=control))
    else:
        out.write(render_text(plan, config, launcher=launcher, control_socket=control))
    return 0
