"""``serve`` inside a cpuset cgroup, as in a pod with exclusive CPUs: it places only there.

The test makes its own cpuset cgroup holding one CPU (the static CPU
manager's exclusive cpuset is the same kernel object), moves a shell into it
and execs the supervisor, so the supervisor never runs outside it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import PY, REPO, wait_until

REPLICA = Path(__file__).with_name("_replica.py")
ROOT = Path("/sys/fs/cgroup")


def _make_cpuset(cpu: int) -> Path:
    """A cpuset cgroup with the one CPU ``cpu``; v1 (cpuset hierarchy) or v2 (unified)."""
    name = f"placevisor-test-{uuid.uuid4().hex[:8]}"
    if (ROOT / "cgroup.controllers").exists():
        if "cpuset" not in (ROOT / "cgroup.subtree_control").read_text().split():
            (ROOT / "cgroup.subtree_control").write_text("+cpuset")
        path = ROOT / name
        path.mkdir()
        (path / "cpuset.cpus").write_text(str(cpu))
        return path
    path = ROOT / "cpuset" / name
    path.mkdir()
    (path / "cpuset.cpus").write_text(str(cpu))
    (path / "cpuset.mems").write_text((ROOT / "cpuset" / "cpuset.mems").read_text().strip())
    return path


@pytest.fixture
def one_cpu_cgroup() -> Iterator[tuple[Path, int]]:
    if os.geteuid() != 0:
        pytest.skip("making a cpuset cgroup needs root")
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        pytest.skip("needs at least 2 allowed CPUs to leave one out")
    cpu = allowed[-1]
    try:
        path = _make_cpuset(cpu)
    except OSError as exc:
        pytest.skip(f"cannot make a cpuset cgroup in this container: {exc}")
    try:
        yield path, cpu
    finally:
        # The cgroup can go once its last process has exited (zombies included).
        def removed() -> bool:
            try:
                path.rmdir()
            except OSError:
                return False
            return True

        wait_until(removed, 10, f"{path} to be empty")


def in_cgroup(cgroup: Path, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as a process that joined ``cgroup`` before it started."""
    script = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
    return subprocess.run(
        ["sh", "-c", script, str(cgroup), *argv],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )


def write_config(tmp: Path, replicas: int) -> Path:
    path = tmp / "pod.toml"
    argv = [PY, str(REPLICA), "cpuset-test", "0.1", "0"]
    path.write_text(
        f'[supervisor]\nshutdown_timeout = 3.0\ncolor = "never"\n\n'
        f'[topology]\nstrategy = "cores"\n\n'
        f'[[group]]\nname = "engine"\ncommand = {json.dumps(argv)}\n'
        f'replicas = {replicas}\nrestart = "never"\n'
    )
    return path


def test_check_plans_only_inside_the_cpuset(one_cpu_cgroup: tuple[Path, int],
                                            tmp_path: Path) -> None:
    cgroup, cpu = one_cpu_cgroup
    done = in_cgroup(cgroup, PY, "-m", "supervisor", "check", str(write_config(tmp_path, 1)),
                     "--json")
    assert done.returncode == 0, done.stderr
    (replica,) = json.loads(done.stdout)["replicas"]
    assert replica["cpus"] == [cpu], replica


def test_serve_binds_inside_the_cpuset(one_cpu_cgroup: tuple[Path, int], tmp_path: Path) -> None:
    cgroup, cpu = one_cpu_cgroup
    done = in_cgroup(cgroup, PY, "-m", "supervisor", "serve", str(write_config(tmp_path, 1)))
    assert done.returncode == 0, done.stdout + done.stderr
    (report,) = [json.loads(m) for m in re.findall(r"REPLICA (\{.*\})", done.stdout)]
    assert report["cpus"] == [cpu], report


def test_more_bound_replicas_than_the_cpuset_holds_is_a_config_error(
    one_cpu_cgroup: tuple[Path, int], tmp_path: Path
) -> None:
    cgroup, _cpu = one_cpu_cgroup
    done = in_cgroup(cgroup, PY, "-m", "supervisor", "serve", str(write_config(tmp_path, 2)))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "replicas" in lines[0], done.stderr
    assert "REPLICA" not in done.stdout, "nothing starts on a plan that does not fit"
