"""The guard on its own: on EOF it kills this run's processes, and only those."""

from __future__ import annotations

import os
import subprocess
import time
import uuid

from supervisor.guard import RUN_ID_ENV, Guard, new_run_id
from tests.helpers import PY, procs_with, wait_until

# Marked with the run id; its child wipes its environment (env -i) but stays
# in the session, and must die too.
FAMILY = """
import os, subprocess, sys
token = sys.argv[1]
sleeper = [sys.executable, "-c", "import time; time.sleep(600)", token]
subprocess.Popen(["/usr/bin/env", "-i", *sleeper])
os.write(1, b"ready\\n")
import time; time.sleep(600)
"""


def _start(token: str, run_id: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, RUN_ID_ENV: run_id}
    proc = subprocess.Popen(
        [PY, "-c", FAMILY, token], env=env, stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    return proc


def test_guard_kills_its_run_and_spares_others(no_leaks_sync: None) -> None:
    mine, other = f"guard-{uuid.uuid4().hex}", f"guard-{uuid.uuid4().hex}"
    run_id = new_run_id()
    guard = Guard(run_id)
    ours = _start(mine, run_id)
    theirs = _start(other, new_run_id())
    try:
        wait_until(lambda: len(procs_with(mine)) == 2 and len(procs_with(other)) == 2)
        began = time.monotonic()
        assert guard.close(clean=False) == 0  # EOF, as when the supervisor dies
        assert time.monotonic() - began < 1.0
        wait_until(lambda: not procs_with(mine), timeout=1.0, what="this run killed")
        assert len(procs_with(other)) == 2, "the guard killed another run's processes"
    finally:
        for p in procs_with(other) + procs_with(mine):
            p.kill()
        for proc in (ours, theirs):
            proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
