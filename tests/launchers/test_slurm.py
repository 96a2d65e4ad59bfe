"""``serve`` under a real local Slurm cluster: srun, sbatch, scancel, time limits.

Every job runs the project's own example scripts (examples/slurm/) with a test
config; Slurm's record of each job is read back with ``scontrol show job``.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import PY, REPO, procs_with, wait_until
from tests.launchers._slurm import LocalSlurm

pytestmark = pytest.mark.slow

REPLICA = Path(__file__).with_name("_replica.py")
EXAMPLES = REPO / "examples" / "slurm"
TERMINAL = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"}
SLURM_TASK_VARS = ("SLURM_PROCID", "SLURM_LOCALID", "SLURM_CPU_BIND", "SLURM_CPUS_PER_TASK")


@pytest.fixture(autouse=True)
def _no_job_left(slurm: LocalSlurm) -> Iterator[None]:
    """A test that failed half-way must not leave a job holding the node's CPUs."""
    yield
    slurm.cancel_all()


def write_config(tmp: Path, token: str, *, replicas: int, extra_groups: str = "",
                 fail_after: float | None = None, shutdown_timeout: float = 3.0) -> Path:
    """A JSON-logging config whose bound replicas run _replica.py (one place per core)."""
    argv = [PY, str(REPLICA), token]
    if fail_after is not None:
        argv += [str(fail_after), "0"]
    path = tmp / "cfg.toml"
    path.write_text(
        f"""
[supervisor]
shutdown_timeout = {shutdown_timeout}
log_format = "json"
color = "never"

[topology]
strategy = "cores"

[[group]]
name = "engine"
command = {json.dumps(argv)}
replicas = {replicas}
restart = "never"
{extra_groups}
"""
    )
    return path


def reports(text: str) -> list[dict[str, Any]]:
    """The replicas' REPLICA lines, whatever prefix the supervisor put before them."""
    return [json.loads(m.group(1)) for m in re.finditer(r"REPLICA (\{.*\})", text)]


def ranks(got: list[dict[str, Any]]) -> list[str]:
    return sorted(str(r["rank"]) for r in got)


def events(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return found


def job_env(cfg: Path) -> dict[str, str]:
    return {"PYTHONPATH": str(REPO), "PLACEVISOR_CONFIG": str(cfg), "PLACEVISOR_PYTHON": PY}


def submit(slurm: LocalSlurm, script: Path, tmp: Path, cfg: Path, *options: str) -> str:
    """sbatch the example ``script`` with ``options`` overriding its #SBATCH lines."""
    env = {**slurm.env(), **job_env(cfg)}
    done = subprocess.run(
        ["sbatch", "--parsable", f"--output={tmp / 'job.out'}", f"--chdir={tmp}",
         *options, str(script)],
        capture_output=True, text=True, env=env, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().split(";")[0]


def wait_end(slurm: LocalSlurm, job_id: str, timeout: float) -> dict[str, str]:
    info: dict[str, str] = {}

    def ended() -> bool:
        nonlocal info
        info = slurm.job(job_id)
        return info.get("JobState") in TERMINAL

    wait_until(ended, timeout, f"job {job_id} to end")
    return info


def output(tmp: Path) -> str:
    try:
        return (tmp / "job.out").read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_replicas(tmp: Path, count: int, timeout: float = 20) -> None:
    wait_until(lambda: len(reports(output(tmp))) >= count, timeout,
               f"{count} replicas to report in the job's output:\n{output(tmp)}")


def assert_graceful(tmp: Path, info: dict[str, str], token: str) -> None:
    text = output(tmp)
    complete = [e for e in events(text) if e.get("event") == "shutdown_complete"]
    assert complete and complete[-1]["exit_status"] == 0, text
    assert not [e for e in events(text) if e.get("event") == "group_escalated"], text
    assert info["ExitCode"] == "0:0", (info, text)
    wait_until(lambda: not procs_with(token), 2, f"processes of job left running: {token}")


def test_srun_two_supervisors_each_inside_its_task(slurm: LocalSlurm, tmp_path: Path) -> None:
    """srun -n2 -c1: two supervisors, one replica each, on its own task's CPU, distinct ranks."""
    token = uuid.uuid4().hex
    cfg = write_config(tmp_path, token, replicas=1, fail_after=0.2)
    # Each task says which CPUs Slurm gave it, then becomes the supervisor.
    launch = (
        "import os, sys; "
        "print('TASK', os.environ['SLURM_PROCID'], sorted(os.sched_getaffinity(0)), flush=True); "
        f"os.execv(sys.executable, [sys.executable, '-m', 'supervisor', 'serve', {str(cfg)!r}])"
    )
    done = subprocess.run(
        ["srun", "-n2", "-c1", "--cpu-bind=cores", f"--chdir={tmp_path}", PY, "-c", launch],
        capture_output=True, text=True, timeout=60, check=False,
        env={**slurm.env(), **job_env(cfg)},
    )
    text = done.stdout + done.stderr
    assert done.returncode == 0, text
    tasks = {int(m.group(1)): json.loads(m.group(2))
             for m in re.finditer(r"^TASK (\d) (\[.*\])$", done.stdout, re.M)}
    assert sorted(tasks) == [0, 1], text
    got = reports(done.stdout)
    assert len(got) == 2, text
    assert ranks(got) == ["0", "1"], f"SUPERVISOR_RANK per replica:\n{text}"
    assert {r["world_size"] for r in got} == {"2"}, text
    for r in got:
        assert len(r["cpus"]) == 1, r
        assert set(r["cpus"]) <= set(tasks[int(r["node_rank"])]), (r, tasks)
        assert r["job_id"], "job-level Slurm variables are passed on"
        assert not set(r["task_vars"]) & set(SLURM_TASK_VARS), r
        assert not [v for v in r["task_vars"] if v.startswith("SLURM_CPU_BIND")], r
    assert {r["cpus"][0] for r in got} == {tasks[0][0], tasks[1][0]}


def test_srun_recipe_in_batch_ranks_tasks(slurm: LocalSlurm, tmp_path: Path) -> None:
    """The many-node batch script, squeezed onto one node: one supervisor per task, ranked."""
    token = uuid.uuid4().hex
    cfg = write_config(tmp_path, token, replicas=1, fail_after=0.2)
    job = submit(slurm, EXAMPLES / "placevisor-srun.sbatch", tmp_path, cfg,
                 "--nodes=1", "--ntasks-per-node=2", "-c1", "--time=2")
    info = wait_end(slurm, job, 30)
    text = output(tmp_path)
    assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", (info, text)
    got = reports(text)
    assert ranks(got) == ["0", "1"], f"SUPERVISOR_RANK per replica:\n{text}"
    assert not [v for r in got for v in r["task_vars"]], text


def test_sbatch_scancel_is_graceful(slurm: LocalSlurm, tmp_path: Path) -> None:
    """scancel of an exec'd supervisor: shutdown_complete 0, ExitCode 0:0, nothing left."""
    token = uuid.uuid4().hex
    cfg = write_config(tmp_path, token, replicas=2)
    job = submit(slurm, EXAMPLES / "placevisor.sbatch", tmp_path, cfg, "-c2", "--time=5")
    wait_replicas(tmp_path, 2)
    slurm.run(["scancel", job])
    info = wait_end(slurm, job, 30)
    assert info["JobState"] == "CANCELLED", info
    assert_graceful(tmp_path, info, token)


@pytest.mark.parametrize("slurm", ["cgroup"], indirect=True)
def test_sbatch_time_limit_signal_is_graceful(slurm: LocalSlurm, tmp_path: Path) -> None:
    """--signal=B:TERM@N before --time: the supervisor alone stops, the job COMPLETED 0:0."""
    token = uuid.uuid4().hex
    cfg = write_config(tmp_path, token, replicas=2)
    # --time=1 is Slurm's smallest limit; @60 makes the signal due at once, and
    # slurmctld sends it at its next periodic limit check (every 30 s or less).
    job = submit(slurm, EXAMPLES / "placevisor.sbatch", tmp_path, cfg,
                 "-c2", "--time=1", "--signal=B:TERM@60")
    wait_replicas(tmp_path, 2)
    info = wait_end(slurm, job, 50)
    assert info["JobState"] == "COMPLETED", (info, output(tmp_path))
    assert_graceful(tmp_path, info, token)


@pytest.mark.parametrize("slurm", ["linuxproc"], indirect=True)
def test_sbatch_failing_replica_records_exit_1(slurm: LocalSlurm, tmp_path: Path) -> None:
    """A replica exiting 3 under restart="never": the job records the supervisor's 1."""
    token = uuid.uuid4().hex
    bad = [PY, str(REPLICA), token, "0.3", "3"]
    cfg = write_config(
        tmp_path, token, replicas=1,
        extra_groups=f'\n[[group]]\nname = "bad"\ncommand = {json.dumps(bad)}\n'
                     'bind = false\nrestart = "never"\n',
    )
    job = submit(slurm, EXAMPLES / "placevisor.sbatch", tmp_path, cfg, "-c2", "--time=2")
    info = wait_end(slurm, job, 30)
    text = output(tmp_path)
    assert info["JobState"] == "FAILED" and info["ExitCode"] == "1:0", (info, text)
    escalated = [e for e in events(text) if e.get("event") == "group_escalated"]
    assert escalated and escalated[0]["group"] == "bad", text
    wait_until(lambda: not procs_with(token), 2, "processes of the failed job left running")
