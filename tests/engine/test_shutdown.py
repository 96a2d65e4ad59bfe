"""Stopping is bounded: grace, SIGKILL of whole trees, a second stop, stray descendants."""

from __future__ import annotations

import io
import time
import uuid

import anyio
import pytest

from supervisor import Supervisor
from tests.engine.test_semantics import cfg, grp, sup_for
from tests.engine.util import Events
from tests.helpers import eventually, procs_with

pytestmark = pytest.mark.anyio

IGNORE_TERM = (
    "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    "print('ready', flush=True); time.sleep(60)"
)


def spawner(token: str, *, setsid: bool, hold_output: bool, then: str) -> str:
    """A replica that starts a sleeping grandchild tagged with ``token``."""
    out = "None" if hold_output else "subprocess.DEVNULL"
    return (
        "import subprocess,sys,time;"
        f"subprocess.Popen([sys.executable,'-c','import time; time.sleep(60)','{token}'],"
        f"start_new_session={setsid},stdout={out},stderr={out});"
        f"print('ready', flush=True);{then}"
    )


async def test_stop_signal_ignored_gets_sigkill_after_the_timeout(
    no_leaks: None, events: Events
) -> None:
    out = io.BytesIO()
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", IGNORE_TERM, replicas=2)), events, out) as sup:
            await eventually(lambda: out.getvalue().count(b"ready") == 2)
            t0 = time.monotonic()
            assert await sup.stop() == 0
            took = time.monotonic() - t0
    assert 0.5 <= took < 1.5, took
    killed = events.of("replica_killed")
    assert {k["replica"] for k in killed} == {"w_0", "w_1"}
    assert all("ignored SIGTERM for 0.5 s" in k["reason"] for k in killed)
    assert [s.last_exit for s in sup.status()] == ["stopped by SIGKILL"] * 2
    assert events.names()[-1] == "shutdown_complete"


async def test_second_stop_kills_at_once(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    config = cfg(grp("w", IGNORE_TERM), shutdown_timeout=30)
    with anyio.fail_after(5):
        async with sup_for(config, events, out) as sup:
            await eventually(lambda: b"ready" in out.getvalue())
            t0 = time.monotonic()
            sup.request_stop()
            await eventually(lambda: bool(events.of("shutdown_started")))
            assert await sup.stop(force=True) == 0
            assert time.monotonic() - t0 < 1.0
    [killed] = events.of("replica_killed")
    assert "second stop request" in killed["reason"]


async def test_descendant_that_left_the_group_is_killed_at_stop(
    no_leaks: None, events: Events
) -> None:
    token = f"pv-{uuid.uuid4().hex[:12]}"
    out = io.BytesIO()
    code = spawner(token, setsid=True, hold_output=False, then="time.sleep(60)")
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code)), events, out) as sup:
            await eventually(lambda: b"ready" in out.getvalue())
            await eventually(lambda: bool(procs_with(token)))
            assert await sup.stop() == 0
        await eventually(lambda: not procs_with(token), timeout=2, what="setsid grandchild")


async def test_grandchild_holding_stdout_is_detached_not_waited_for(
    no_leaks: None, events: Events
) -> None:
    token = f"pv-{uuid.uuid4().hex[:12]}"
    out = io.BytesIO()
    code = spawner(token, setsid=True, hold_output=True, then="print('bye')")
    t0 = time.monotonic()
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code, restart="never")), events, out) as sup:
            assert await sup.wait() == 0
    took = time.monotonic() - t0
    assert took < 2.0, took  # drain_timeout is 0.3 s
    [detached] = events.of("output_detached")
    [exited] = events.of("replica_exited")
    assert detached["t"] <= exited["t"]
    assert exited["t"] - events.of("replica_started")[0]["t"] >= 0.3
    assert len(detached["holders"]) == 1
    assert b"bye" in out.getvalue()
    await eventually(lambda: not procs_with(token), timeout=2, what="grandchild holding stdout")


async def test_grandchild_in_the_group_dies_with_its_replica(
    no_leaks: None, events: Events
) -> None:
    token = f"pv-{uuid.uuid4().hex[:12]}"
    out = io.BytesIO()
    code = spawner(token, setsid=False, hold_output=True, then="print('bye')")
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code, restart="never")), events, out) as sup:
            assert await sup.wait() == 0
    assert not events.of("output_detached")
    await eventually(lambda: not procs_with(token), timeout=2, what="grandchild")


async def test_start_and_stop_without_async_with(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    sup = sup_for(
        cfg(grp("w", "import time; print('ready', flush=True); time.sleep(60)")), events, out
    )
    assert await sup.stop() == 0  # never started: nothing to do
    with anyio.fail_after(5):
        await sup.start()
        await eventually(lambda: b"ready" in out.getvalue())
        assert sup.status()[0].state == "running"
        assert await sup.stop() == 0
        assert await sup.wait() == 0
    assert sup.status()[0].last_exit == "stopped by SIGTERM"
    with pytest.raises(RuntimeError, match="already started"):
        await sup.start()


async def test_stop_from_another_task(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    code = "import time; print('ready', flush=True); time.sleep(60)"
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code)), events, out) as sup:
            await eventually(lambda: b"ready" in out.getvalue())
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.stop)
                assert await sup.wait() == 0


async def test_host_cancellation_still_stops_everything(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    code = "import time; print('ready', flush=True); time.sleep(60)"
    with anyio.fail_after(5):
        with anyio.move_on_after(0.5):
            async with Supervisor(cfg(grp("w", code)), stdout=out, logger=events) as sup:
                await anyio.sleep_forever()
    assert events.names()[-1] == "shutdown_complete"
    assert sup.status()[0].last_exit == "stopped by SIGTERM"  # graceful, not killed
