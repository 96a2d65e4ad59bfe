"""``python -m topology``: print a machine's nodes, cores, CPUs and the places it gives.

Bad input is one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

from .cpulist import format_cpulist
from .errors import TopologyError
from .gpus import visible_gpus
from .model import Place, Topology


class _UsageError(Exception):
    """argparse's complaint, turned into our one-line error."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)


def _parser(prog: str) -> _Parser:
    parser = _Parser(prog=prog, description="Show CPUs, cores, NUMA nodes and places.")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--lscpu", metavar="FILE", help="read an `lscpu -Je` or `lscpu -p` dump")
    source.add_argument("--sysfs", metavar="ROOT", help="read a sysfs tree instead of /sys")
    parser.add_argument("--smt", type=int, default=1, metavar="N", help="threads per core (0=all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def _load(args: argparse.Namespace) -> tuple[Topology, Path | None]:
    """The topology and the sysfs root to look for GPUs in (None: no GPUs)."""
    if args.lscpu:
        return Topology.from_file(args.lscpu), None
    if args.sysfs:
        return Topology.from_sysfs(args.sysfs), Path(args.sysfs)
    return Topology.detect(), Path("/sys")


def _plans(
    topo: Topology, smt: int, gpu_root: Path | None, environ: Mapping[str, str]
) -> dict[str, list[Place] | str]:
    """Places per strategy, or the error text that strategy gives here."""
    strategies = ["nodes", "cores", "l3", "all"]
    if gpu_root is not None and visible_gpus(gpu_root, environ):
        strategies.append("gpus")
    plans: dict[str, list[Place] | str] = {}
    for strategy in strategies:
        try:
            plans[strategy] = list(
                topo.places(strategy, smt=smt, gpu_root=gpu_root, environ=environ)
            )
        except TopologyError as exc:
            plans[strategy] = str(exc)
    return plans


def _node_order(item: tuple[int | None, object]) -> tuple[bool, int]:
    """Nodes ascending; CPUs in no node (sysfs shows none for them) last."""
    return (item[0] is None, item[0] or 0)


def _as_json(topo: Topology, plans: Mapping[str, list[Place] | str]) -> str:
    nodes: dict[int | None, list[int]] = {}
    cores: dict[int, list[int]] = {}
    for cpu in topo.cpus:
        nodes.setdefault(cpu.node, []).append(cpu.id)
        cores.setdefault(cpu.core, []).append(cpu.id)
    by_id = {cpu.id: cpu for cpu in topo.cpus}
    document = {
        "source": topo.source,
        "nodes": [{"id": n, "cpus": ids} for n, ids in sorted(nodes.items(), key=_node_order)],
        "cores": [
            {"id": c, "socket": by_id[ids[0]].socket, "node": by_id[ids[0]].node, "cpus": ids}
            for c, ids in cores.items()
        ],
        "cpus": [
            {
                "id": cpu.id,
                "core": cpu.core,
                "socket": cpu.socket,
                "node": cpu.node,
                "online": cpu.online,
                "allowed": cpu.id in topo.allowed,
                "llc": cpu.llc,
            }
            for cpu in topo.cpus
        ],
        "mems_allowed": sorted(topo.mems_allowed),
        "places": {
            name: [{"cpus": list(p.cpus), "nodes": list(p.nodes)} for p in places]
            for name, places in plans.items()
            if not isinstance(places, str)
        },
        "errors": {name: text for name, text in plans.items() if isinstance(text, str)},
    }
    return json.dumps(document)


def _as_text(topo: Topology, plans: Mapping[str, list[Place] | str]) -> str:
    lines = [f"source: {topo.source}"]
    tree: dict[int | None, dict[int, list[str]]] = {}
    for cpu in topo.cpus:
        mark = "" if cpu.id in topo.allowed else ("(offline)" if not cpu.online else "(disallowed)")
        tree.setdefault(cpu.node, {}).setdefault(cpu.core, []).append(f"{cpu.id}{mark}")
    for node, cores in sorted(tree.items(), key=_node_order):
        ids = [cpu.id for cpu in topo.cpus if cpu.node == node]
        allowed = format_cpulist(i for i in ids if i in topo.allowed) or "none"
        name = "no node" if node is None else f"node {node}"
        lines.append(f"{name}: CPUs {format_cpulist(ids)} (allowed {allowed})")
        lines.extend(f"  core {core}: {' '.join(names)}" for core, names in cores.items())
    lines.append("places:")
    for name, places in plans.items():
        if isinstance(places, str):
            lines.append(f"  {name}: error: {places}")
        else:
            lines.append(f"  {name} ({len(places)}): {' | '.join(p.cpulist for p in places)}")
    return "\n".join(lines)


def _emit(text: str) -> None:
    """Write and flush stdout; a reader that went away (``| head -1``) is not an error.

    On EPIPE, devnull goes over the stdout descriptor so the flush at interpreter exit
    has somewhere to go instead of printing a BrokenPipeError traceback."""
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        try:
            fileno = sys.stdout.fileno()
        except (AttributeError, OSError, ValueError):  # a replaced stdout (tests): no fd
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, fileno)
        finally:
            os.close(devnull)


def main(argv: list[str] | None = None, prog: str = "python -m topology") -> int:
    """Run the command; returns the exit status instead of exiting."""
    try:
        args = _parser(prog).parse_args(argv)
        if args.smt < 0:
            raise _UsageError(f"--smt {args.smt}: must be 0 (all threads) or more")
        topo, gpu_root = _load(args)
        plans = _plans(topo, args.smt, gpu_root, os.environ)
    except _UsageError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except TopologyError as exc:
        print(f"{prog}: {exc}".replace("\n", " "), file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    _emit(_as_json(topo, plans) if args.json else _as_text(topo, plans))
    return 0
