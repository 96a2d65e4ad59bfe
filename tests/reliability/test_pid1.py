"""Item 2: as a container's PID 1, serve reaps every zombie and stops gracefully on SIGTERM."""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from pathlib import Path

import psutil
import pytest

from tests.helpers import PY, procs_with, script, toml_config
from tests.serve_process import Serve

# Orphans that exit at once (double fork): in a PID namespace they are
# re-parented to PID 1, which must reap them.
ZOMBIE_MAKER = """
import os, sys, time
for _ in range(20):
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(0.05)
            os._exit(0)
        os._exit(0)
    os.wait()
os.write(1, b"ready\\n")
time.sleep(600)
"""


def _zombies(root: psutil.Process) -> list[psutil.Process]:
    found = []
    for p in root.children(recursive=True):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.Error:
            continue
    return found


@pytest.mark.skipif(os.geteuid() != 0, reason="a new PID namespace needs root")
@pytest.mark.parametrize("loop", ["uvloop", "trio"])
def test_pid1_reaps_zombies_and_stops_on_sigterm(
    tmp_path: Path, loop: str, no_leaks_sync: None
) -> None:
    unshare = shutil.which("unshare")
    assert unshare, "util-linux unshare is needed (apt-get install util-linux)"
    token = f"pid1-{uuid.uuid4().hex}"
    prog = script(tmp_path, "zombies.py", ZOMBIE_MAKER)
    cfg = toml_config(tmp_path, [{"name": "z", "command": [PY, prog, token], "replicas": 2}])
    prefix = [unshare, "--pid", "--fork", "--mount-proc", "--kill-child"]
    with Serve(cfg, prefix=prefix, loop=loop) as serve:
        serve.wait_for(lambda: serve.out.count(" ready\n") == 2, what="ready")
        outer = psutil.Process(serve.pid)
        (init,) = outer.children()  # the supervisor, PID 1 inside the namespace
        assert "supervisor" in init.cmdline()
        (nspid,) = [
            line.split()[1:]
            for line in Path(f"/proc/{init.pid}/status").read_text().splitlines()
            if line.startswith("NSpid:")
        ]
        assert nspid[-1] == "1", nspid
        # The 40 orphans exit after 50 ms; PID 1 must reap every one of them.
        serve.wait_for(
            lambda: len(procs_with(token)) == 2 and not _zombies(outer),
            what="every orphan exited and was reaped",
        )
        init.send_signal(signal.SIGTERM)
        assert serve.finish() == 0, serve.err
        assert not procs_with(token)
    (done,) = serve.events("shutdown_complete")
    assert done["exit_status"] == 0
    stops = [e["cause"] for e in serve.events("replica_exited")]
    assert stops == ["stopped by SIGTERM"] * 2
