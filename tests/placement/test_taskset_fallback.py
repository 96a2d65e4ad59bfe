"""Bound replicas on a machine without numactl: the taskset wrapper, run for real.

CI installs numactl, so this path only runs when PATH is built without it: a
directory of links to every program on PATH but numactl. The replicas must start
(util-linux taskset runs the word after the CPU list, so a ``--`` there would be
run as the command) and hold exactly their planned CPUs from their first line.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import PY, path_without
from tests.placement._runs import (
    ALLOWED,
    FIRST,
    LAST,
    Runtime,
    clean_env,
    cpus_of,
    describe,
    plan_of,
    serve_reports,
    toml_config,
)
from topology.cpulist import format_cpulist

pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2 allowed CPUs for 2 places")

# First line: the main thread's CPUs before anything else runs, as JSON.
AFFINITY = (
    "import json, os; print(json.dumps({'cpus': sorted(os.sched_getaffinity(0)), "
    "'pid': os.getpid()}), flush=True)"
)


def path_without_numactl(root: Path) -> str:
    """A PATH holding links to every program on this PATH except numactl."""
    path = path_without(root, "numactl")
    assert os.path.exists(os.path.join(path, "taskset")), "taskset (util-linux) must be on PATH"
    return path


def test_python_replicas_bound_by_taskset(tmp_path: Path, no_leaks_sync: None) -> None:
    env = clean_env(PATH=path_without_numactl(tmp_path))
    command = (PY, "-c", AFFINITY)
    config = toml_config(tmp_path / "taskset.toml", command, replicas=2, cpus=f"{FIRST}|{LAST}")
    plan = plan_of(config, env)
    for planned in plan.values():
        # The contract's wrapper: taskset -c CPUS COMMAND, nothing between.
        assert planned.argv == ["taskset", "-c", format_cpulist(planned.cpus), *command]
    run = serve_reports(config, env)
    assert run.rc == 0, f"serve exited {run.rc}:\n{run.out}\n{run.err[-3000:]}"
    assert sorted(run.reports) == sorted(plan) == ["rt_0", "rt_1"], run.out
    for name, planned in plan.items():
        report = run.reports[name]
        assert tuple(report["cpus"]) == planned.cpus, describe(run, name)
        assert report["pid"] == run.pids[name]  # taskset execs: no wrapper process left
    assert [p.cpus for p in plan.values()] == [(FIRST,), (LAST,)]


def test_openmp_replicas_bound_by_taskset(
    build_omp: Callable[[str], Runtime], tmp_path: Path, no_leaks_sync: None
) -> None:
    runtime = build_omp("libgomp")
    env = clean_env(PATH=path_without_numactl(tmp_path))
    config = toml_config(tmp_path / "omp.toml", runtime.argv, replicas=2, cpus=f"{FIRST}|{LAST}")
    run = serve_reports(config, env)
    assert run.rc == 0, f"serve exited {run.rc}:\n{run.err[-3000:]}"
    for name, planned in run.plan.items():
        assert planned.argv[0] == "taskset", planned.argv
        report = run.reports[name]
        assert report["team"] == planned.threads, describe(run, name)
        assert [cpus_of(t) for t in report["threads"]] == [set(planned.cpus)] * len(
            report["threads"]
        ), describe(run, name)
