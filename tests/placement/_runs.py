"""Run report programs as real replicas of ``serve`` and compare what they saw to the plan.

The plan comes from ``check --json`` run with the same environment as ``serve``, so
every comparison is "what the supervisor said it would do" against "what the
kernel and the runtime did", whatever the planner's internals.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import PY, REPO
from tests.serve_process import Serve
from topology.cpulist import format_cpulist, parse_cpulist

HERE = Path(__file__).parent
BLAS_REPORT = (PY, str(HERE / "blas_report.py"))
ALLOWED = sorted(os.sched_getaffinity(0))
FIRST, LAST = ALLOWED[0], ALLOWED[-1]
# Variables a user's shell may carry that bear on threads and placement.
RUNTIME_PREFIXES = ("OMP_", "KMP_", "GOMP_", "MKL_", "OPENBLAS_", "BLIS_", "NUMEXPR_")
OVERRIDE_VARS = ("GOMP_CPU_AFFINITY", "KMP_AFFINITY", "KMP_HW_SUBSET", "KMP_PLACE_THREADS")
BLAS_VARS = ("MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLIS_NUM_THREADS", "NUMEXPR_NUM_THREADS")
_LINE = re.compile(r"^\((?P<name>[\w.-]+) pid=(?P<pid>\d+)\) (?P<text>\{.*\})$", re.M)


@dataclass(frozen=True)
class Runtime:
    name: str  # libgomp | libomp | openblas
    argv: tuple[str, ...]
    library: str  # what the loaded runtime's file name contains


@dataclass
class Planned:
    cpus: tuple[int, ...]
    nodes: tuple[int, ...]
    argv: list[str]
    env: dict[str, str]

    @property
    def threads(self) -> int:
        return int(self.env["OMP_NUM_THREADS"])


@dataclass
class Run:
    rc: int
    out: str
    err: str
    plan: dict[str, Planned]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any runtime variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(RUNTIME_PREFIXES)}
    env["PYTHONPATH"] = str(REPO)
    return env | extra


def toml_config(
    path: Path,
    command: tuple[str, ...] | list[str],
    *,
    replicas: int,
    strategy: str = "cores",
    cpus: str = "",
    smt: int = 1,
    reserved: int = 0,
    group_keys: str = "",
    extra: str = "",
) -> Path:
    """A config file for one bound group; ``group_keys``/``extra`` are raw TOML lines."""
    path.write_text(
        "[supervisor]\n"
        'log_format = "json"\ncolor = "never"\nshutdown_timeout = 5.0\n'
        "[topology]\n"
        f'strategy = "{strategy}"\ncpus = "{cpus}"\nsmt = {smt}\nreserved_cpus = {reserved}\n'
        f"{extra}\n"
        "[[group]]\n"
        'name = "rt"\n'
        f"command = {json.dumps(list(command))}\n"
        f'replicas = {replicas}\nrestart = "never"\n'
        f"{group_keys}\n"
    )
    return path


def plan_of(config: Path, env: dict[str, str]) -> dict[str, Planned]:
    done = subprocess.run(
        [PY, "-m", "supervisor", "check", str(config), "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"check failed:\n{done.stdout}\n{done.stderr}"
    data = json.loads(done.stdout)
    return {
        r["name"]: Planned(tuple(r["cpus"]), tuple(r["nodes"]), r["argv"], dict(r["env"]))
        for r in data["replicas"]
    }


def serve_reports(config: Path, env: dict[str, str], *, timeout: float = 60) -> Run:
    """Plan, then serve until every replica printed its report and exited."""
    plan = plan_of(config, env)
    serve = Serve(config, env=env)
    try:
        rc = serve.finish(timeout)
    finally:
        close(serve)
    run = Run(rc=rc, out=serve.out, err=serve.err, plan=plan)
    for m in _LINE.finditer(run.out):
        run.reports[m["name"]] = json.loads(m["text"])
        run.pids[m["name"]] = int(m["pid"])
    return run


def close(serve: Serve) -> None:
    """Kill ``serve`` if it still runs and close its pipes once the readers saw EOF."""
    if serve.proc.poll() is None:
        serve.proc.kill()
        serve.proc.wait()
    for pipe in (serve.proc.stdout, serve.proc.stderr):
        if pipe is not None:
            pipe.close()


def cpus_of(thread: dict[str, Any]) -> set[int]:
    return set(parse_cpulist(thread["cpus"]))


def describe(run: Run, name: str) -> str:
    planned = run.plan[name]
    return (
        f"{name}: planned CPUs {format_cpulist(planned.cpus)}, {planned.threads} threads, "
        f"argv {planned.argv}\nreport: {run.reports.get(name)}"
    )


def problems(run: Run, runtime: Runtime) -> list[str]:
    """Every way the replicas differ from the plan, so one failure shows them all."""
    found: list[str] = []
    if run.rc != 0:
        found.append(f"serve exited {run.rc}")
    if set(run.reports) != set(run.plan):
        found.append(f"reports from {sorted(run.reports)}, planned {sorted(run.plan)}")
    # A runtime that ignored our OMP_PLACES/OMP_PROC_BIND says so on stderr.
    if "ignored because" in run.out + run.err:
        found.append("the OpenMP runtime ignored the place: 'ignored because' on its stderr")
    for name, planned in run.plan.items():
        report = run.reports.get(name)
        if report is None:
            continue
        for thread in report["threads"]:
            if not cpus_of(thread) <= set(planned.cpus):
                found.append(f"{name}: thread {thread} outside {format_cpulist(planned.cpus)}")
        if runtime.name == "openblas":
            counts = [p["num_threads"] for p in report["pools"] if p["library"] == "openblas"]
            if not counts or any(n != planned.threads for n in counts):
                found.append(f"{name}: OpenBLAS threads {counts}, planned {planned.threads}")
        else:
            if runtime.library not in report["runtime"]:
                found.append(f"{name}: runtime {report['runtime']}, not {runtime.library}")
            counts = [report["max_threads"], report["team"]]
            if counts != [planned.threads] * 2:
                found.append(f"{name}: OpenMP max/team threads {counts}, planned {planned.threads}")
        env = report["env"]
        found += [f"{name}: {var} reached the replica" for var in OVERRIDE_VARS if var in env]
        for var in ("OMP_NUM_THREADS", *BLAS_VARS):
            if env.get(var) != str(planned.threads):
                found.append(f"{name}: {var}={env.get(var)}, planned {planned.threads}")
    return found


def assert_as_planned(run: Run, runtime: Runtime) -> None:
    """Every replica: its threads inside its place, thread counts and env as the plan."""
    found = problems(run, runtime)
    details = "\n\n".join(describe(run, name) for name in run.plan)
    assert not found, "\n".join(found) + f"\n\n{details}\nserve stderr:\n{run.err[-3000:]}"
