"""Item 4: a 200-cycle crash loop leaks nothing, does not spin, escalates exactly as configured."""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil

from tests.helpers import PY, fd_count, script, toml_config
from tests.serve_process import Serve

CYCLES = 200


# Run 0 and run CYCLES wait on a FIFO (so the test can measure a quiet
# supervisor before and after the storm); every other run fails at once.
CRASHER = """
import os, sys
counter, fifo = sys.argv[1], sys.argv[2]
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
if n in (0, CYCLES):
    os.write(1, b"waiting %d\\n" % n)
    open(fifo).read()
sys.exit(1)
""".replace("CYCLES", str(CYCLES))


def _zombies(sup: psutil.Process) -> list[psutil.Process]:
    return [c for c in sup.children() if c.status() == psutil.STATUS_ZOMBIE]


def test_crash_loop_of_200_cycles(tmp_path: Path, no_leaks_sync: None) -> None:
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    prog = script(tmp_path, "crasher.py", CRASHER)
    hold = "import os, time; os.write(1, b'ready\\n'); time.sleep(600)"
    cfg = toml_config(
        tmp_path,
        [
            {
                "name": "crash",
                "command": [PY, prog, str(tmp_path / "n"), str(fifo)],
                "restart": "on-failure",
                "max_restarts": CYCLES,
                "restart_window": 600.0,
                "backoff": 0,
            },
            {"name": "hold", "command": [PY, "-c", hold]},
        ],
        shutdown_timeout=2.0,
    )
    with Serve(cfg) as serve:

        def out() -> str:
            return serve.out

        serve.wait_for(lambda: " ready\n" in out() and " waiting 0\n" in out(), what="ready")
        sup = psutil.Process(serve.pid)
        fds_before, cpu_before = fd_count(serve.pid), sup.cpu_times()
        fifo.write_bytes(b"")  # opening it for writing lets run 0 go: the storm begins
        serve.wait_for(lambda: f" waiting {CYCLES}\n" in out(), 120, "the storm to end")
        fds_after, cpu_after = fd_count(serve.pid), sup.cpu_times()
        zombies = _zombies(sup)
        fifo.write_bytes(b"")  # the 201st failure
        assert serve.finish() == 1
    assert fds_after == fds_before, "fds leaked over 200 restarts"
    assert not zombies, zombies
    restarts = serve.events("replica_restarting")
    assert [e["restart"] for e in restarts] == list(range(1, CYCLES + 1))
    crash_exits = [e for e in serve.events("replica_exited") if e["replica"] == "crash_0"]
    assert len(crash_exits) == CYCLES + 1
    assert all(e["exit_code"] == 1 for e in crash_exits)
    (esc,) = serve.events("group_escalated")
    assert esc["group"] == "crash" and esc["exit_code"] == 1
    assert f"max_restarts = {CYCLES}" in esc["reason"]
    used = (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system)
    # A cycle costs the supervisor a fork, a few syscalls and log lines: far under 20 ms.
    assert used / CYCLES < 0.020, f"{used:.2f} s of supervisor CPU for {CYCLES} cycles"


def test_backoff_sleeps_without_spinning(tmp_path: Path, no_leaks_sync: None) -> None:
    """0.2 + 0.4 + 0.8 s of backoff: the wall clock shows it, the CPU clock does not."""
    cfg = toml_config(
        tmp_path,
        [{"name": "crash", "command": ["/bin/false"], "max_restarts": 3, "backoff": 0.2}],
    )
    began = time.monotonic()
    with Serve(cfg) as serve:
        serve.wait_for(lambda: len(serve.events("replica_restarting")) == 3, 30, "3 restarts")
        cpu = psutil.Process(serve.pid).cpu_times()
        assert serve.finish() == 1
    wall = time.monotonic() - began
    delays = [e["delay"] for e in serve.events("replica_restarting")]
    assert delays == [0.2, 0.4, 0.8]
    assert wall >= 1.4
    assert len(serve.events("group_escalated")) == 1
    # Startup (imports) dominates; the 1.4 s of backoff adds next to nothing.
    assert cpu.user + cpu.system < 1.0 + wall * 0.1, cpu
