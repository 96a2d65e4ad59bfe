"""A reader of our output that never reads must not block a stop, nor the host's loop.

``serve | less`` with the pager paused, a stuck log shipper: the pipe fills,
the replicas slow down (lossless while running), and a stop still ends within
``shutdown_timeout`` + 1 s, dropping (and counting) what could not be written.
"""

from __future__ import annotations

import io
import os
import signal
import threading
import uuid
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor import Supervisor
from tests.engine.util import Events
from tests.helpers import (
    PY,
    STOP_SLACK,
    config,
    eventually,
    group,
    procs_with,
    toml_config,
    wait_until,
)
from tests.serve_process import Serve

TIMEOUT = 1.0
#: A replica that writes 1 KiB lines as fast as it can, forever.
FLOOD = "import sys\nline = b'x' * 1023 + b'\\n'\nwhile True: sys.stdout.buffer.write(line)"


def blocked_writing(pid: int) -> bool:
    """A thread of ``pid`` sleeps in a write to a full pipe: the reader has stalled us.

    (Bytes waiting in the pipe say nothing: small writes fill its slots early.)
    """
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            if (
                Path(f"/proc/{pid}/task/{tid}/wchan").read_text().endswith("pipe_write")
            ):  # anon_pipe_write on 6.x
                return True
        except OSError:
            continue
    return False


@pytest.mark.anyio
async def test_embedded_stalled_stream_never_blocks_the_host(events: Events) -> None:
    r, w = os.pipe()
    out = open(w, "wb", buffering=0)  # noqa: SIM115 (closed below, after the reader)
    writers_before = set(threading.enumerate())
    ticks = 0

    async def host_task() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    cfg = config(group("flood", FLOOD, replicas=2, bind=False), shutdown_timeout=TIMEOUT)
    sup = Supervisor(cfg, stdout=out, stderr=io.BytesIO(), logger=events, drain_timeout=0.3)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(host_task)
            with anyio.fail_after(30), anyio.CancelScope() as bounded:
                async with sup:
                    await eventually(lambda: blocked_writing(os.getpid()), 20, "our writer stalled")
                    pids = [s.pid for s in sup.status()]
                    assert all(pids)
                    # The pipe stays full, and the host's loop keeps running.
                    seen = ticks
                    await eventually(lambda: ticks >= seen + 5, 10, "host ticks while stalled")
                    assert blocked_writing(os.getpid())
                    stop_from = ticks
                    # Leaving the block must end in bounded time although nobody reads.
                    bounded.deadline = anyio.current_time() + TIMEOUT + 1.0 + STOP_SLACK
            assert not bounded.cancel_called, "leaving `async with` passed the stop deadline"
            # The other host task ran during the stop.
            assert ticks > stop_from
            tg.cancel_scope.cancel()
    finally:
        os.close(r)  # the stuck writer thread gets EPIPE and ends
        wait_until(
            lambda: (
                not any(
                    t.is_alive() and t.name.startswith("placevisor-")
                    for t in set(threading.enumerate()) - writers_before
                )
            ),
            10,
            "the writer threads ended",
        )
        out.close()
    for pid in pids:
        assert pid is not None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
    (done,) = events.of("shutdown_complete")
    assert done["output_dropped_bytes"] > 0, done
    assert not events.of("group_escalated")


@pytest.mark.parametrize("loop", ["asyncio", "uvloop", "trio"])
def test_serve_with_unread_stdout_stops_on_sigterm(
    tmp_path: Path, loop: str, no_leaks_sync: None
) -> None:
    token = f"tok-{uuid.uuid4()}"
    cfg = toml_config(
        tmp_path,
        [{"name": "flood", "command": [PY, "-c", FLOOD, token], "replicas": 2}],
        shutdown_timeout=TIMEOUT,
    )
    r, w = os.pipe()
    try:
        serve = Serve(cfg, loop=loop, stdout=w)  # nobody ever reads r
        os.close(w)
        with serve:
            serve.wait_for(lambda: len(serve.events("replica_started")) == 2, what="2 started")
            wait_until(lambda: blocked_writing(serve.pid), 20, "serve's writer stalled")
            assert len(procs_with(token)) == 2
            serve.signal(signal.SIGTERM)
            # A deadline on the wait: the stop timeout + 1 s (+ scheduling slack).
            rc = serve.finish(timeout=TIMEOUT + 1.0 + STOP_SLACK)
            assert rc == 0, serve.err[-3000:]
        assert not procs_with(token), "a replica outlived serve"
        done = serve.events("shutdown_complete")
        assert len(done) == 1, serve.err[-3000:]
        assert done[0]["output_dropped_bytes"] > 0, done
        assert not serve.events("group_escalated")
    finally:
        os.close(r)
