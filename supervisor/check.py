"""``check``: validate a config and show the plan, for people or for machines.

Nothing is started: the output is the plan the ``serve`` command would
execute, so a user can see every argv, CPU set and added variable first.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from typing import TextIO

from topology import TopologyError, format_cpulist

from .config import Config, ConfigError, load_config
from .numaprobe import NumactlProbe
from .plan import LaunchPlan, build_plan


def render_text(plan: LaunchPlan, config: Config) -> str:
    """The plan as people read it: one block per replica, warnings first."""
    out: list[str] = [f"warning: {w}" for w in plan.warnings]
    settings = config.topology
    groups = len(config.groups)
    out.append(
        f"{config.source}: {len(plan.replicas)} replica{'s' if len(plan.replicas) != 1 else ''}"
        f' in {groups} group{"s" if groups != 1 else ""}; strategy "{settings.strategy}",'
        f' numa "{settings.numa}"'
    )
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
    return "\n".join(out) + "\n"


def render_json(plan: LaunchPlan) -> str:
    """The plan in the contract's machine-readable schema (``env`` = what is added)."""
    replicas = [
        {
            "name": r.name,
            "group": r.group,
            "index": r.index,
            "argv": list(r.argv),
            "env": dict(r.env_added),
            "cpus": list(r.cpus),
            "nodes": list(r.nodes),
        }
        for r in plan.replicas
    ]
    return json.dumps({"replicas": replicas}, indent=2) + "\n"


def run_check(path: str, *, as_json: bool, out: TextIO, err: TextIO) -> int:
    """Load and plan ``path`` against this machine; 0 when valid, else 2 and one line."""
    try:
        config = load_config(path)
        environ = dict(os.environ)
        numactl = shutil.which("numactl", path=environ.get("PATH"))
        plan = build_plan(
            config,
            environ=environ,
            probe=NumactlProbe(numactl or "numactl", environ=environ),
        )
    except ConfigError as exc:
        print(exc, file=err)
        return 2
    except TopologyError as exc:  # build_plan converts these; kept as a safety net
        print(f"{path}: topology: {exc}", file=err)
        return 2
    if as_json:
        for warning in plan.warnings:
            print(f"warning: {warning}", file=err)
        out.write(render_json(plan))
    else:
        out.write(render_text(plan, config))
    return 0
