"""Binding renderer: OMP env with one place per core, and the numactl/taskset wrapper."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys

import pytest

from topology import Place, TopologyError, omp_env, wrapper_argv
from topology.testing import synthetic

PLACE = Place(cpus=(0, 1, 2, 3), nodes=(0,), cores=((0,), (1,), (2,), (3,)))
SMT = Place(cpus=(0, 1, 56, 57), nodes=(0, 1), cores=((0, 56), (1, 57)))
NO_NODE = Place(cpus=(2, 3), nodes=(), cores=((2,), (3,)))


def test_omp_env_one_place_per_core() -> None:
    assert omp_env(PLACE) == {
        "OMP_NUM_THREADS": "4",
        "OMP_PLACES": "{0},{1},{2},{3}",
        "OMP_PROC_BIND": "close",
    }
    assert omp_env(SMT, reserved=1)["OMP_PLACES"] == "{0,56},{1,57}"
    assert omp_env(SMT, reserved=1)["OMP_NUM_THREADS"] == "3"


def test_omp_places_is_not_one_set_regression() -> None:
    """vLLM put the whole set in one OpenMP place, so threads floated across it."""
    place = synthetic(cores_per_socket=8).places("all")[0]
    assert omp_env(place)["OMP_PLACES"].count("{") == 8


def test_omp_env_refuses_zero_threads() -> None:
    with pytest.raises(TopologyError, match="OMP_NUM_THREADS would be 0"):
        omp_env(PLACE, reserved=4)


def test_wrapper_with_numactl() -> None:
    assert wrapper_argv(PLACE, memory="bind", numactl="numactl") == [
        "numactl", "--physcpubind=0-3", "--membind=0", "--"
    ]
    assert wrapper_argv(SMT, memory="bind", numactl="/usr/bin/numactl")[2] == "--membind=0-1"
    assert wrapper_argv(SMT, memory="preferred", numactl="numactl") == [
        "numactl", "--physcpubind=0-1,56-57", "--preferred=0", "--"
    ]
    assert wrapper_argv(PLACE, memory="off", numactl="numactl") == [
        "numactl", "--physcpubind=0-3", "--"
    ]


@pytest.mark.parametrize("memory", ["bind", "preferred", "off"])
def test_place_without_node_binds_no_memory(memory: str) -> None:
    """A CPU sysfs shows in no node: nothing names a node that is not there."""
    assert wrapper_argv(NO_NODE, memory=memory, numactl="numactl") == [
        "numactl", "--physcpubind=2-3", "--"
    ]


def test_wrapper_without_numactl_has_no_double_dash_regression() -> None:
    """util-linux taskset runs the first word after the list: a ``--`` there ran ``--``."""
    assert wrapper_argv(PLACE, memory="off", numactl=None) == ["taskset", "-c", "0-3"]
    for memory in ("bind", "preferred"):
        with pytest.raises(TopologyError, match="apt-get install numactl"):
            wrapper_argv(PLACE, memory=memory, numactl=None)
    with pytest.raises(TopologyError, match="unknown"):
        wrapper_argv(PLACE, memory="auto", numactl="numactl")


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs util-linux taskset")
def test_taskset_wrapper_really_pins_the_child() -> None:
    """Run the wrapper for real: the child starts, and its affinity is the place."""
    cpu = max(os.sched_getaffinity(0))
    place = Place(cpus=(cpu,), nodes=(), cores=((cpu,),))
    argv = [
        *wrapper_argv(place, memory="off", numactl=None),
        sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))",
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ast.literal_eval(done.stdout.strip()) == [cpu]
