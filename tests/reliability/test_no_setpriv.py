"""Without setpriv the parent-death signal comes from the ctypes exec shim: run it for real.

CI has util-linux, so the shim would otherwise never run. An embedded
Supervisor has no guard process, so when its host is SIGKILLed only the
parent-death signal can take the replicas with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
from pathlib import Path

import psutil

from tests.helpers import PY, REPO, path_without, procs_with, script, wait_until

HOST = """
import os, anyio
from supervisor import Supervisor
from supervisor.process import pdeathsig_prefix
from tests.helpers import config, group

code = "import os, sys, time; print('up', os.getpid(), flush=True); time.sleep(120)"

async def main() -> None:
    print("prefix", pdeathsig_prefix()[0], flush=True)
    lines = []
    async with Supervisor(
        config(group("w", code + " #" + os.environ["TEST_TOKEN"], replicas=2)),
        on_output=lines.append,
    ) as sup:
        print("pids", *[s.pid for s in sup.status()], flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


def test_replicas_die_with_a_sigkilled_host_through_the_shim(
    tmp_path: Path, no_leaks_sync: None
) -> None:
    token = f"noset-{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "PATH": path_without(tmp_path, "setpriv"),
        "PYTHONPATH": str(REPO),
        "TEST_TOKEN": token,  # in the replicas' argv only, not the host's
    }
    host = subprocess.Popen(
        [PY, script(tmp_path, "host.py", HOST)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert host.stdout is not None
    try:
        prefix = host.stdout.readline().split()
        assert prefix == ["prefix", PY], prefix  # the shim, not setpriv
        line = host.stdout.readline()
        while not line.startswith("pids"):  # the supervisor's own events come first
            assert line, "the host ended before its replicas started"
            line = host.stdout.readline()
        pids = [int(p) for p in line.split()[1:]]
        assert len(pids) == 2
        replicas = [psutil.Process(p) for p in pids]
        wait_until(lambda: len(procs_with(token)) == 2, what="both replicas running")
        assert all(token in " ".join(p.cmdline()) for p in replicas)
        host.send_signal(signal.SIGKILL)
        host.wait(timeout=10)
        wait_until(lambda: not procs_with(token), timeout=5, what="replicas gone with the host")
    finally:
        host.kill()
        host.wait()
        if host.stdout is not None:
            host.stdout.close()
