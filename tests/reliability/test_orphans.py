"""Item 1: nothing outlives the supervisor, SIGKILL included; orphans are adopted and reaped."""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.helpers import PY, procs_with, script, toml_config, wait_until
from tests.serve_process import Serve

LOOPS = ["uvloop", "asyncio", "trio"]

# A replica that leaves a sleeper in its own group and a daemon that did
# setsid + double fork (so it is in another session, re-parented to us),
# then says ready. Every process carries the token in its argv.
FAMILY = """
import os, subprocess, sys, time
token = sys.argv[1]
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", token])
daemon = (
    "import os, sys, time\\n"
    "if os.fork(): os._exit(0)\\n"
    "os.setsid()\\n"
    "if os.fork(): os._exit(0)\\n"
    "os.write(1, b'daemon %d\\\\n' % os.getpid())\\n"
    "time.sleep(600)\\n"
)
subprocess.Popen([sys.executable, "-c", daemon, token]).wait()
os.write(1, b"ready\\n")
time.sleep(600)
"""


def _family_config(tmp_path: Path, token: str, replicas: int = 2) -> Path:
    prog = script(tmp_path, "family.py", FAMILY)
    fam = {"name": "fam", "command": [PY, prog, token], "replicas": replicas}
    return toml_config(tmp_path, [fam])


def _ready(serve: Serve, n: int) -> None:
    serve.wait_for(
        lambda: serve.out.count(" ready\n") == n and serve.out.count(" daemon ") == n,
        what="replicas ready",
    )


@pytest.mark.parametrize("loop", LOOPS)
def test_sigkill_of_serve_leaves_nothing_alive(
    tmp_path: Path, loop: str, no_leaks_sync: None
) -> None:
    token = f"orphan-{uuid.uuid4().hex}"
    with Serve(_family_config(tmp_path, token), loop=loop) as serve:
        _ready(serve, 2)
        family = procs_with(token)
        # 2 x (replica, its sleeper, its setsid'd double-forked daemon)
        assert len(family) == 6, [p.cmdline() for p in family]
        assert len({p.info["cmdline"][-1] for p in family}) == 1
        kids = psutil.Process(serve.pid).children()
        guards = [p for p in kids if "guard.py" in " ".join(p.cmdline())]
        assert len(guards) == 1
        killed_at = time.monotonic()
        serve.proc.send_signal(signal.SIGKILL)
        wait_until(lambda: not procs_with(token), timeout=5.0, what="family gone")
        took = time.monotonic() - killed_at
        assert serve.finish() == -signal.SIGKILL
        assert took < 1.0, f"the replicas' family outlived the supervisor by {took:.2f} s"
        wait_until(
            lambda: not guards[0].is_running() or guards[0].status() == "zombie",
            timeout=5.0,
            what="guard exit",
        )
    assert "SIGKILLed" in serve.err


@pytest.mark.parametrize("loop", LOOPS)
def test_graceful_stop_kills_double_forked_daemons(
    tmp_path: Path, loop: str, no_leaks_sync: None
) -> None:
    token = f"orphan-{uuid.uuid4().hex}"
    with Serve(_family_config(tmp_path, token), loop=loop) as serve:
        _ready(serve, 2)
        daemons = [p for p in procs_with(token) if "setsid" in " ".join(p.cmdline())]
        assert len(daemons) == 2
        # Adopted by the supervisor (child subreaper), not by init.
        assert {d.ppid() for d in daemons} == {serve.pid}
        serve.proc.send_signal(signal.SIGTERM)
        assert serve.finish() == 0
        assert not procs_with(token)
    assert serve.events("shutdown_complete"), serve.err
    assert "guard" not in serve.err  # nothing was left for the guard to kill


# A replica that, while it runs, keeps making orphans that exit at once
# (double fork, grandchild exits) and then exits 7 itself.
ORPHANS_THEN_7 = """
import os, sys, time
for i in range(30):
    if os.fork() == 0:
        if os.fork() == 0:
            os._exit(0)      # an orphan that exits: the subreaper must reap it
        os._exit(0)
    os.wait()
print("made orphans", flush=True)
sys.exit(7)
"""


@pytest.mark.parametrize("loop", LOOPS)
def test_reaping_orphans_keeps_exit_codes_accurate(
    tmp_path: Path, loop: str, no_leaks_sync: None
) -> None:
    prog = script(tmp_path, "orphans.py", ORPHANS_THEN_7)
    hold = "import time; print('ready', flush=True); time.sleep(600)"
    cfg = toml_config(
        tmp_path,
        [
            {
                "name": "bad",
                "command": [PY, prog],
                "replicas": 3,
                "restart": "on-failure",
                "max_restarts": 2,
                "backoff": 0,
            },
            {"name": "hold", "command": [PY, "-c", hold]},
        ],
        shutdown_timeout=2.0,
    )
    with Serve(cfg, loop=loop) as serve:
        assert serve.finish() == 1
        exits = [e for e in serve.events("replica_exited") if e["replica"].startswith("bad_")]
        # Those the escalation stopped say so; every other one is the real 7, never
        # the 255 a stolen reap would give.
        own = [e["exit_code"] for e in exits if not e["cause"].startswith("stopped by")]
        assert len(own) >= 3 and set(own) == {7}, exits
        zombies = [
            c
            for c in psutil.Process().children(recursive=True)
            if c.status() == psutil.STATUS_ZOMBIE
        ]
        assert not zombies
    (esc,) = serve.events("group_escalated")
    assert esc["exit_code"] == 7
