"""A cancelled or failing host never leaves a replica or a descendant behind.

``__aexit__`` runs the same bounded stop as ``serve`` under a shield, so
the cancellation may come while the replicas start, run or stop.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from supervisor import Supervisor
from tests.embed.util import STUBBORN, Lines, token, tree_group
from tests.helpers import config, eventually, procs_with

pytestmark = pytest.mark.anyio


async def test_cancelled_while_starting(no_leaks: None) -> None:
    tok = token()
    sup = Supervisor(config(tree_group("w", tok, replicas=3)), on_output=Lines())
    entered = False
    with anyio.CancelScope() as host:
        host.cancel()
        async with sup:
            entered = True
    assert host.cancelled_caught
    assert not entered
    assert procs_with(tok) == []
    assert all(s.pid is None for s in sup.status())


async def test_cancelled_while_running(no_leaks: None) -> None:
    tok = token()
    lines = Lines()
    sup = Supervisor(config(tree_group("w", tok, replicas=2)), on_output=lines)
    with anyio.CancelScope() as host:
        async with sup:
            await lines.wait_for(b"ready", 2)
            await eventually(lambda: len(procs_with(tok)) == 4)  # replicas, grandchildren
            host.cancel()
            await anyio.sleep_forever()
    assert host.cancelled_caught
    assert procs_with(tok) == []
    assert [s.state for s in sup.status()] == ["exited", "exited"]
    assert await sup.wait() == 0


async def test_cancelled_while_stopping_still_kills_the_trees(no_leaks: None) -> None:
    tok = token()
    lines = Lines()
    cfg = config(tree_group("w", tok, STUBBORN, replicas=2), shutdown_timeout=1.0)
    sup = Supervisor(cfg, on_output=lines)
    async with anyio.create_task_group() as tg:
        with anyio.CancelScope() as host:

            async def cancel_once_stopping() -> None:
                await lines.wait_for(b"term", 2)  # the stop signal arrived: stopping
                host.cancel()

            tg.start_soon(cancel_once_stopping)
            async with sup:
                await lines.wait_for(b"ready", 2)
    assert host.cancel_called  # it came during the stop, which went on to SIGKILL
    assert procs_with(tok) == []
    assert [s.last_returncode for s in sup.status()] == [-9, -9]


async def test_exception_in_body_stops_everything_and_propagates(no_leaks: None) -> None:
    tok = token()
    lines = Lines()
    sup = Supervisor(config(tree_group("w", tok, replicas=2)), on_output=lines)
    with pytest.raises(LookupError, match="host bug"):
        async with sup:
            await lines.wait_for(b"ready", 2)
            raise LookupError("host bug")
    assert procs_with(tok) == []
    assert [s.state for s in sup.status()] == ["exited", "exited"]


@pytest.mark.parametrize(
    "anyio_backend",
    [
        pytest.param(("asyncio", {}), id="asyncio"),
        pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
    ],
)
async def test_native_task_cancel_twice_cannot_cut_the_stop_short(
    anyio_backend: Any, no_leaks: None
) -> None:
    """``Task.cancel()`` pierces anyio shields on asyncio; the stop must still finish."""
    tok = token()
    lines = Lines()
    cfg = config(tree_group("w", tok, STUBBORN, replicas=2), shutdown_timeout=1.0)
    sup = Supervisor(cfg, on_output=lines)

    async def host() -> None:
        async with sup:
            await anyio.sleep_forever()

    task = asyncio.get_running_loop().create_task(host())
    await lines.wait_for(b"ready", 2)
    task.cancel()
    await lines.wait_for(b"term", 2)  # now inside the shielded stop
    task.cancel()
    with anyio.fail_after(10), pytest.raises(asyncio.CancelledError):
        await task
    assert procs_with(tok) == []
    assert [s.last_returncode for s in sup.status()] == [-9, -9]
