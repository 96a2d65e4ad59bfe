"""Item 5: a stopped or uninterruptibly sleeping replica still dies at the deadline."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import PY, toml_config
from tests.serve_process import Serve

TIMEOUT = 1.0

# vfork(): the parent sleeps in the kernel (state D, uninterruptible; only
# SIGKILL ends it) until the child execs or exits, and the child never does.
# The child ignores SIGTERM too, so only SIGKILL of the group ends them both.
D_STATE_C = r"""
#include <signal.h>
#include <unistd.h>
int main(void) {
    signal(SIGTERM, SIG_IGN);
    write(1, "ready\n", 6);
    pid_t pid = vfork();
    if (pid == 0) { for (;;) pause(); }
    return 0;
}
"""


@pytest.fixture(scope="module")
def d_state_bin(tmp_path_factory: pytest.TempPathFactory) -> str:
    gcc = shutil.which("gcc") or shutil.which("cc")
    assert gcc, "a C compiler is needed (apt-get install gcc)"
    d = tmp_path_factory.mktemp("dstate")
    (d / "dstate.c").write_text(D_STATE_C)
    subprocess.run([gcc, "-O0", "-o", str(d / "dstate"), str(d / "dstate.c")], check=True)
    return str(d / "dstate")


def _stop_and_time(serve: Serve) -> float:
    began = time.monotonic()
    serve.proc.send_signal(signal.SIGTERM)
    assert serve.finish() == 0
    return time.monotonic() - began


def test_sigstopped_replica_is_killed_at_the_deadline(tmp_path: Path, no_leaks_sync: None) -> None:
    # A graceful SIGTERM handler that a stopped process cannot run (without one
    # the kernel kills even a stopped process at once: SIGTERM is then fatal).
    hold = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\n"
        "os.write(1, b'ready\\n')\n"
        "time.sleep(600)\n"
    )
    cfg = toml_config(
        tmp_path, [{"name": "w", "command": [PY, "-c", hold]}], shutdown_timeout=TIMEOUT
    )
    with Serve(cfg) as serve:
        serve.wait_for(lambda: " ready\n" in serve.out, what="ready")
        replica = next(p for p in psutil.Process(serve.pid).children() if "-c" in p.cmdline())
        os.kill(replica.pid, signal.SIGSTOP)
        serve.wait_for(lambda: replica.status() == psutil.STATUS_STOPPED, what="stopped")
        took = _stop_and_time(serve)
    assert TIMEOUT <= took < TIMEOUT + 1.0, took
    (killed,) = serve.events("replica_killed")
    assert "ignored SIGTERM" in killed["reason"]
    assert not replica.is_running()


def test_replica_in_uninterruptible_sleep_is_killed_at_the_deadline(
    tmp_path: Path, d_state_bin: str, no_leaks_sync: None
) -> None:
    cfg = toml_config(tmp_path, [{"name": "d", "command": [d_state_bin]}], shutdown_timeout=TIMEOUT)
    with Serve(cfg) as serve:
        serve.wait_for(lambda: " ready\n" in serve.out, what="ready")
        replica = next(
            p for p in psutil.Process(serve.pid).children() if d_state_bin in p.cmdline()
        )
        serve.wait_for(lambda: replica.status() == psutil.STATUS_DISK_SLEEP, what="state D")
        took = _stop_and_time(serve)
    assert TIMEOUT <= took < TIMEOUT + 1.0, took
    (killed,) = serve.events("replica_killed")
    assert "ignored SIGTERM" in killed["reason"]
    assert not replica.is_running()
