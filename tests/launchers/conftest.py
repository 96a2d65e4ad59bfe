"""The local Slurm cluster fixture: one per test session, in either plugin set.

``slurm`` is parametrized over the two plugin sets (``linuxproc`` and
``cgroup``); pytest orders the tests so the daemons restart once between the
sets. A test that needs one set only asks for it with
``@pytest.mark.parametrize("slurm", ["cgroup"], indirect=True)``. Skipped only
when Slurm's packages are missing and cannot be installed; a cluster that does
not come up is an error with the daemons' logs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.launchers._slurm import (
    MODES,
    LocalSlurm,
    SlurmUnavailable,
    cgroup_usable,
    ensure_installed,
)


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalSlurm]:
    if os.geteuid() != 0:
        pytest.skip("a local Slurm cluster needs root (slurmd runs job steps as their user)")
    try:
        ensure_installed()
    except SlurmUnavailable as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o755)
    cluster = LocalSlurm(root)
    try:
        cluster.start_munge()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session", params=MODES)
def slurm(request: pytest.FixtureRequest, local_slurm: LocalSlurm) -> LocalSlurm:
    mode = request.param
    if mode == "cgroup" and (why := cgroup_usable()):
        pytest.skip(f"Slurm's cgroup plugins cannot work in this container: {why}")
    local_slurm.start(mode)
    return local_slurm
