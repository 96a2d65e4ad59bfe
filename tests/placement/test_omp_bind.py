"""``omp_bind`` per group, with real OpenMP runtimes on one 2-CPU place.

"close" and "spread" pin each OpenMP thread to one core of the place, the main
thread included (so threads it starts later share its one core); "none" leaves
every thread, the main one first, free over the whole place.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.placement._runs import (
    ALLOWED,
    FIRST,
    LAST,
    Run,
    Runtime,
    clean_env,
    cpus_of,
    describe,
    serve_reports,
    toml_config,
)

pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs a place of 2 allowed CPUs")
OMP_RUNTIMES = ("libgomp", "libomp")


def _run(runtime: Runtime, bind: str, tmp_path: Path, **stale: str) -> Run:
    config = toml_config(
        tmp_path / "bind.toml",
        runtime.argv,
        replicas=1,
        strategy="all",
        cpus=f"{FIRST},{LAST}",
        smt=0,  # keep both CPUs even where they are SMT siblings of one core
        group_keys=f'omp_bind = "{bind}"',
    )
    run = serve_reports(config, clean_env(**stale))
    assert run.rc == 0, f"serve exited {run.rc}:\n{run.err[-3000:]}"
    assert "ignored because" not in run.err, run.err
    return run


def _main_and_team(run: Run) -> tuple[set[int], list[set[int]], dict[str, object]]:
    (name,) = run.plan
    report = run.reports[name]
    pid = run.pids[name]  # the wrapper execs the program: the replica's pid is its own
    main = [cpus_of(t) for t in report["threads"] if t["tid"] == pid]
    assert len(main) == 1, describe(run, name)
    assert report["team"] == report["max_threads"] == 2, describe(run, name)
    for thread in report["threads"]:
        assert cpus_of(thread) <= {FIRST, LAST}, describe(run, name)
    return main[0], [cpus_of(t) for t in report["threads"]], report


@pytest.mark.parametrize("name", OMP_RUNTIMES)
@pytest.mark.parametrize(
    "stale", [{}, {"OMP_PROC_BIND": "close", "OMP_PLACES": "cores"}], ids=["clean", "stale_omp"]
)
def test_none_leaves_every_thread_free_in_the_place(
    build_omp: Callable[[str], Runtime],
    name: str,
    stale: dict[str, str],
    tmp_path: Path,
    no_leaks_sync: None,
) -> None:
    run = _run(build_omp(name), "none", tmp_path, **stale)
    (planned,) = run.plan.values()
    assert planned.cpus == (FIRST, LAST)
    assert "OMP_PLACES" not in planned.env and "OMP_PROC_BIND" not in planned.env
    main, team, report = _main_and_team(run)
    assert main == {FIRST, LAST}
    assert all(cpus == {FIRST, LAST} for cpus in team), report
    env = report["env"]
    assert isinstance(env, dict)
    assert "OMP_PLACES" not in env and "OMP_PROC_BIND" not in env, env


@pytest.mark.parametrize("name", OMP_RUNTIMES)
@pytest.mark.parametrize("bind", ["close", "spread"])
def test_close_and_spread_pin_each_thread_main_on_the_first_core(
    build_omp: Callable[[str], Runtime], name: str, bind: str, tmp_path: Path, no_leaks_sync: None
) -> None:
    run = _run(build_omp(name), bind, tmp_path)
    (planned,) = run.plan.values()
    assert planned.env.get("OMP_PROC_BIND") == bind
    places = [
        set(map(int, p.split(","))) for p in re.findall(r"\{([^}]*)\}", planned.env["OMP_PLACES"])
    ]
    assert set().union(*places) == {FIRST, LAST}
    main, team, report = _main_and_team(run)
    # The documented consequence: the main thread sits on the place's first core.
    assert main == places[0], report
    assert all(cpus in places for cpus in team), report
    if len(places) == 2:  # two cores: one thread on each
        assert sorted(min(cpus) for cpus in team) == [FIRST, LAST], report
