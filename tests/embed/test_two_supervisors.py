"""Two supervisors in one process keep to themselves: places, output, shutdowns.

Both name their group ``w``, so any mix-up by replica name would show.
"""

from __future__ import annotations

import io
import os
import signal

import psutil
import pytest

from supervisor import Config, Supervisor, TopologySettings
from tests.embed.util import token, tree_group
from tests.helpers import config, eventually, procs_with

pytestmark = pytest.mark.anyio

#: Prints its CPU affinity, then "usr1" on each SIGUSR1, until SIGTERM.
WORKER = """
import os, signal, sys, time
signal.signal(signal.SIGUSR1, lambda *_: print('usr1', sys.argv[1], flush=True))
print('ready', sorted(os.sched_getaffinity(0)), sys.argv[1], flush=True)
while True:
    time.sleep(60)
"""


async def test_two_supervisors_do_not_interfere(no_leaks: None) -> None:
    allowed = sorted(os.sched_getaffinity(0))
    cpu_a, cpu_b = allowed[0], allowed[-1]
    tok_a, tok_b = token(), token()
    out_a, out_b = io.BytesIO(), io.BytesIO()

    def cfg(tok: str, cpu: int) -> Config:
        return config(
            tree_group("w", tok, WORKER),
            topology=TopologySettings(strategy="cores", cpus=str(cpu), numa="off"),
            shutdown_timeout=2.0,
        )

    async with Supervisor(cfg(tok_b, cpu_b), stdout=out_b, stderr=out_b) as b:
        async with Supervisor(cfg(tok_a, cpu_a), stdout=out_a, stderr=out_a) as a:
            await eventually(lambda: b"ready" in out_a.getvalue() and b"ready" in out_b.getvalue())
            (sa,), (sb,) = a.status(), b.status()
            assert sa.pid != sb.pid
            assert (sa.cpus, sb.cpus) == ((cpu_a,), (cpu_b,))
            assert psutil.Process(sa.pid).cpu_affinity() == [cpu_a]
            assert psutil.Process(sb.pid).cpu_affinity() == [cpu_b]
            assert tok_a.encode() in out_a.getvalue() and tok_b.encode() not in out_a.getvalue()
            assert tok_b.encode() in out_b.getvalue() and tok_a.encode() not in out_b.getvalue()

            assert await a.stop() == 0
            assert procs_with(tok_a) == []
            assert [p.pid for p in procs_with(tok_b)] == [sb.pid]
            assert b.status()[0].state == "running"

            # b still supervises and forwards, to its own stream only.
            before_a = out_a.getvalue()
            await b.signal("w_0", signal.SIGUSR1)
            await eventually(lambda: f"usr1 {tok_b}".encode() in out_b.getvalue())
            assert out_a.getvalue() == before_a
        assert b.status()[0].state == "running"
    assert procs_with(tok_b) == []
    assert [s.state for s in b.status()] == ["exited"]
