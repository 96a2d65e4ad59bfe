"""A stop signal sent to the whole tree at once is a stop, never a failure.

systemd's ``KillMode=control-group``, Slurm's ``scancel`` and ``kill -TERM --
-PGID`` signal the supervisor and its replicas together; whichever exit the
supervisor sees first, it must stop cleanly: exit 0, no restart, no escalation.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil
import pytest

from tests.helpers import STOP_SLACK, toml_config
from tests.serve_process import Serve

REPEAT = int(os.environ.get("TREE_REPEAT", "10"))
TIMEOUT = 2.0
REPLICAS = 3


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["replica", "group"])
@pytest.mark.parametrize("restart", ["never", "on-failure", "always"])
@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_sigterm_to_the_whole_tree_is_a_clean_stop(
    tmp_path: Path, loop: str, restart: str, scope: str, no_leaks_sync: None
) -> None:
    cfg = toml_config(
        tmp_path,
        [
            {
                "name": "w",
                "command": ["sleep", "300"],
                "replicas": REPLICAS,
                "restart": restart,
                "restart_scope": scope,
                "backoff": 0,
            }
        ],
        shutdown_timeout=TIMEOUT,
    )
    for i in range(REPEAT):
        # A process group made for the test, as a service manager's cgroup would be.
        with Serve(cfg, loop=loop, start_new_session=True) as serve:
            serve.wait_for('"replica_started"', stream="err", count=REPLICAS)
            pids = [e["pid"] for e in serve.events("replica_started")]
            # Replicas run in sessions of their own: signal them with serve's group,
            # in one tight loop, alternating who goes first.
            targets: list[int | None] = [None, *pids] if i % 2 == 0 else [*pids, None]
            for pid in targets:
                with contextlib.suppress(ProcessLookupError):
                    if pid is None:
                        os.killpg(serve.pid, signal.SIGTERM)
                    else:
                        os.kill(pid, signal.SIGTERM)
            rc = serve.finish(timeout=TIMEOUT + 1.0 + STOP_SLACK)
            err = serve.err[-3000:]
            assert rc == 0, f"run {i}: exit {rc}\n{err}"
            assert not serve.events("replica_restarting"), f"run {i}: a restart\n{err}"
            assert not serve.events("group_escalated"), f"run {i}: an escalation\n{err}"
            assert len(serve.events("shutdown_complete")) == 1, f"run {i}\n{err}"
            assert not [p for p in pids if _alive(p)], f"run {i}: a replica outlived serve"
