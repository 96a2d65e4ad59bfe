"""Item 6: fd limit, fork failure, a deleted binary, a removed cwd: a clear event, the
configured failure path (here: 2 restarts, then escalation and exit 1), no hang."""

from __future__ import annotations

import os
import resource
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.helpers import PY, fd_count, script, toml_config
from tests.serve_process import Serve

PIDS_CGROUP = Path("/sys/fs/cgroup/pids")

# Says ready, waits until the test opens the FIFO, runs ``then`` and fails.
WAITER = """
import os, shutil, sys
fifo = sys.argv[1]
os.write(1, b"ready\\n")
open(fifo).read()
{then}
sys.exit(1)
"""


@pytest.fixture
def pids_cgroup() -> Iterator[Path]:
    """A fresh pids cgroup (v1 or v2 layout), removed afterwards."""
    base = PIDS_CGROUP if PIDS_CGROUP.is_dir() else Path("/sys/fs/cgroup")
    path = base / f"placevisor-test-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    try:
        yield path
    finally:
        for proc in (path / "cgroup.procs").read_text().split():  # move back anything left
            (base / "cgroup.procs").write_text(proc)
        path.rmdir()


def _run_fault(
    tmp_path: Path,
    command: list[str],
    *,
    fault: Callable[[int], None],
    cwd: str = ".",
    extra: str = "",
) -> Serve:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    hold = "import os, time; os.write(1, b'held\\n'); time.sleep(600)"
    cfg = toml_config(
        tmp_path,
        [
            {
                "name": "w",
                "command": [*command, str(fifo)],
                "cwd": cwd,
                "restart": "on-failure",
                "max_restarts": 2,
                "backoff": 0,
            },
            {"name": "hold", "command": [PY, "-c", hold], "bind": False},
        ],
        shutdown_timeout=2.0,
        extra=extra,
    )
    serve = Serve(cfg)
    with serve:

        def out() -> str:
            return serve.out

        serve.wait_for(lambda: " ready\n" in out() and " held\n" in out(), what="ready")
        fault(serve.pid)
        began = time.monotonic()
        fifo.write_bytes(b"")  # the replica fails; each restart meets the fault
        assert serve.finish(timeout=20) == 1
        assert time.monotonic() - began < 5
    assert "Traceback" not in serve.err
    assert len(serve.events("replica_restarting")) == 2
    (esc,) = serve.events("group_escalated")
    assert esc["group"] == "w" and "max_restarts = 2" in esc["reason"]
    assert [e["cause"] for e in serve.events("replica_exited") if e["replica"] == "hold_0"] == [
        "stopped by SIGTERM"
    ]
    return serve


def _spawn_errors(serve: Serve) -> list[str]:
    errors = [e["error"] for e in serve.events("replica_spawn_failed")]
    assert len(errors) == 2, serve.err  # both restarts met the fault
    return errors


def _waiter(tmp_path: Path, then: str = "") -> list[str]:
    return [PY, script(tmp_path, "waiter.py", WAITER.format(then=then))]


def test_fd_limit_too_low_to_spawn(tmp_path: Path, no_leaks_sync: None) -> None:
    def fault(pid: int) -> None:
        # One fd of headroom: a spawn needs two pipes and more.
        limit = fd_count(pid) + 1
        psutil.Process(pid).rlimit(resource.RLIMIT_NOFILE, (limit, limit))

    serve = _run_fault(tmp_path, _waiter(tmp_path), fault=fault)
    assert all("too many open files" in e and "ulimit -n" in e for e in _spawn_errors(serve))


@pytest.mark.skipif(
    not os.access(PIDS_CGROUP if PIDS_CGROUP.is_dir() else "/sys/fs/cgroup", os.W_OK),
    reason="needs root and a writable pids cgroup to make fork fail for root",
)
def test_fork_failing_with_eagain(tmp_path: Path, pids_cgroup: Path, no_leaks_sync: None) -> None:
    """RLIMIT_NPROC does not bind root, so a pids cgroup at its current count makes fork fail."""

    def fault(pid: int) -> None:
        (pids_cgroup / "cgroup.procs").write_text(str(pid))  # moves all its threads
        (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())

    serve = _run_fault(tmp_path, _waiter(tmp_path), fault=fault)
    assert all("fork failed" in e and "process limit" in e for e in _spawn_errors(serve))


@pytest.mark.parametrize("strategy", ["none", "cores"], ids=["unbound", "numactl-wrapped"])
def test_binary_deleted_before_a_restart(
    tmp_path: Path, strategy: str, no_leaks_sync: None
) -> None:
    prog = tmp_path / "prog"
    prog.write_text(f"#!{PY}\n" + WAITER.format(then="os.unlink(sys.argv[0])"))
    prog.chmod(0o755)
    extra = f'[topology]\nstrategy = "{strategy}"\n'
    serve = _run_fault(tmp_path, [str(prog)], fault=lambda pid: None, extra=extra)
    assert not prog.exists()
    assert all("command not found" in e and str(prog) in e for e in _spawn_errors(serve))


def test_cwd_removed_before_a_restart(tmp_path: Path, no_leaks_sync: None) -> None:
    work = tmp_path / "work"
    work.mkdir()
    cmd = _waiter(tmp_path, then="os.rmdir(os.getcwd())")
    serve = _run_fault(tmp_path, cmd, fault=lambda pid: None, cwd=str(work))
    assert not work.exists()
    assert all(f"cwd {str(work)!r} does not exist" in e for e in _spawn_errors(serve))


def test_missing_binary_at_start_is_refused_before_anything_starts(
    tmp_path: Path, no_leaks_sync: None
) -> None:
    missing = str(tmp_path / "no-such-prog")
    cfg = toml_config(tmp_path, [{"name": "w", "command": [missing], "restart": "never"}])
    with Serve(cfg) as serve:
        assert serve.finish(timeout=20) == 2
    (line,) = serve.err.splitlines()
    assert "command" in line and missing in line
    assert not serve.events("replica_started")
