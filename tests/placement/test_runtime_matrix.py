"""The runtime matrix: real OpenMP and BLAS runtimes run as replicas of ``serve``.

GNU libgomp (gcc -fopenmp), LLVM libomp (clang -fopenmp) and NumPy's OpenBLAS
(threadpoolctl) each report every thread's CPUs, their thread counts and what
runtime variables they saw. With a clean environment, and with each variable a
user's shell may carry in the supervisor's environment, every thread must stay
inside its place and every count must equal the plan.

Layouts (any machine with 2 allowed CPUs A < B):
- "cores": ``cpus = "A|B"``, two places of one CPU each (a place off CPU 0 shows
  ``KMP_AFFINITY=norespect`` moving a replica to CPU 0);
- "pair": ``strategy = "all"``, ``smt = 0`` on ``cpus = "A,B"``, ``reserved_cpus = 1``: one
  2-CPU place planned for 1 thread (a stale ``OPENBLAS_NUM_THREADS=8`` gives 2).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.placement._runs import (
    ALLOWED,
    BLAS_REPORT,
    FIRST,
    LAST,
    Runtime,
    assert_as_planned,
    clean_env,
    serve_reports,
    toml_config,
)

pytestmark = pytest.mark.skipif(
    len(ALLOWED) < 2, reason="the matrix needs 2 allowed CPUs to make 2 places"
)

STALE = {
    "clean": {},
    "kmp_affinity": {"KMP_AFFINITY": "granularity=fine,compact"},
    "kmp_norespect": {"KMP_AFFINITY": "norespect,granularity=fine,compact"},
    "gomp_cpu_affinity": {"GOMP_CPU_AFFINITY": f"{FIRST}-{LAST}"},
    "mkl_threads": {"MKL_NUM_THREADS": "8"},
    "openblas_threads": {"OPENBLAS_NUM_THREADS": "8"},
    "omp_threads": {"OMP_NUM_THREADS": "8"},
}
# The cases that bear on thread counts, where a place larger than its thread count shows them.
COUNT_CASES = ("clean", "mkl_threads", "openblas_threads", "omp_threads")


@pytest.mark.parametrize("case", list(STALE))
def test_one_cpu_places(runtime: Runtime, case: str, tmp_path: Path, no_leaks_sync: None) -> None:
    config = toml_config(tmp_path / "matrix.toml", runtime.argv, replicas=2, cpus=f"{FIRST}|{LAST}")
    run = serve_reports(config, clean_env(**STALE[case]))
    assert [p.cpus for p in run.plan.values()] == [(FIRST,), (LAST,)]
    assert_as_planned(run, runtime)


@pytest.mark.parametrize("case", COUNT_CASES)
def test_reserved_cpu_place(
    runtime: Runtime, case: str, tmp_path: Path, no_leaks_sync: None
) -> None:
    config = toml_config(
        tmp_path / "matrix.toml",
        runtime.argv,
        replicas=1,
        strategy="all",
        cpus=f"{FIRST},{LAST}",
        smt=0,  # keep both CPUs even where they are SMT siblings of one core
        reserved=1,
    )
    run = serve_reports(config, clean_env(**STALE[case]))
    (planned,) = run.plan.values()
    assert planned.cpus == (FIRST, LAST) and planned.threads == 1
    assert_as_planned(run, runtime)


def test_group_env_wins_over_derived_thread_counts(tmp_path: Path, no_leaks_sync: None) -> None:
    """A group's own ``env`` sets OMP_NUM_THREADS for a bound group (it used to be replaced)."""
    config = toml_config(
        tmp_path / "own.toml",
        BLAS_REPORT,
        replicas=1,
        strategy="all",
        cpus=f"{FIRST},{LAST}",
        smt=0,
        group_keys='env = { OMP_NUM_THREADS = "1", OPENBLAS_NUM_THREADS = "1" }',
    )
    run = serve_reports(config, clean_env(OPENBLAS_NUM_THREADS="8"))
    (name,) = run.plan
    assert run.rc == 0, run.err
    assert run.plan[name].env["OMP_NUM_THREADS"] == "1"
    report = run.reports[name]
    assert report["env"]["OMP_NUM_THREADS"] == "1"
    assert report["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert [p["num_threads"] for p in report["pools"] if p["library"] == "openblas"] == [1]
