"""The common soft fd limit (1024, systemd's default) does not cap the fleet.

``serve`` raises its soft ``RLIMIT_NOFILE`` to the hard limit and gives the
replicas the original soft limit back; when the replicas need more fds than
the hard limit allows, ``check`` and ``serve`` refuse up front (one line, 2).
"""

from __future__ import annotations

import resource
import signal
import subprocess
from pathlib import Path

import pytest

from tests.helpers import PY, REPO, toml_config
from tests.serve_process import Serve

SOFT = 1024
HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
needs_headroom = pytest.mark.skipif(
    HARD != resource.RLIM_INFINITY and HARD < 8192, reason="hard fd limit below 8192"
)


def _hard() -> str:
    return "unlimited" if HARD == resource.RLIM_INFINITY else str(HARD)


def _limited(soft: int | str, hard: int | str) -> list[str]:
    return ["prlimit", f"--nofile={soft}:{hard}", "--"]


def _soft_limit(pid: int) -> tuple[str, str]:
    """(soft, hard) 'Max open files' of a process, as /proc shows them."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return soft, hard
    raise AssertionError("no 'Max open files' line")


@pytest.mark.slow
@needs_headroom
def test_1000_replicas_under_soft_limit_1024(tmp_path: Path, no_leaks_sync: None) -> None:
    n = 1000
    cfg = toml_config(
        tmp_path,
        [{"name": "s", "command": ["sleep", "600"], "replicas": n, "restart": "never"}],
        shutdown_timeout=5.0,
    )
    with Serve(cfg, prefix=_limited(SOFT, _hard())) as serve:
        serve.wait_for(
            lambda: (
                len(serve.events("replica_started")) == n or bool(serve.events("group_escalated"))
            ),
            timeout=180,
            what=f"{n} replicas started",
        )
        assert not serve.events("group_escalated"), serve.err[-3000:]
        assert len(serve.events("replica_started")) == n
        assert "too many open files" not in serve.err.lower()
        soft, hard = _soft_limit(serve.pid)
        assert soft == hard, f"serve kept its soft fd limit {soft} (hard {hard})"
        serve.signal(signal.SIGTERM)
        assert serve.finish(timeout=5.0 + 1.0 + 30) == 0, serve.err[-3000:]
    assert not serve.events("replica_restarting")


def test_replicas_get_the_original_soft_limit_back(tmp_path: Path, no_leaks_sync: None) -> None:
    report = (
        "import resource,time;"
        "print('nofile', *resource.getrlimit(resource.RLIMIT_NOFILE), flush=True);"
        "time.sleep(300)"
    )
    cfg = toml_config(tmp_path, [{"name": "r", "command": [PY, "-c", report]}])
    with Serve(cfg, prefix=_limited(SOFT, _hard())) as serve:
        serve.wait_for("nofile ")
        line = next(ln for ln in serve.out.splitlines() if "nofile " in ln)
        soft, hard = line.split("nofile ", 1)[1].split()
        assert int(soft) == SOFT, line
        assert int(hard) == HARD, line
        serve.signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.err[-3000:]


@pytest.mark.parametrize("command", ["check", "serve"])
def test_more_fds_than_the_hard_limit_is_refused_up_front(
    tmp_path: Path, command: str, no_leaks_sync: None
) -> None:
    cfg = toml_config(tmp_path, [{"name": "many", "command": ["sleep", "600"], "replicas": 100}])
    done = subprocess.run(
        [*_limited(64, 64), PY, "-m", "supervisor", command, str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "64" in lines[0], lines[0]  # it names the limit it ran into
    assert "replica_started" not in done.stderr
