"""The engine's basic promises on every backend: start, forward, finish."""

from __future__ import annotations

import io

import pytest

from supervisor import Supervisor
from tests.helpers import config, group

pytestmark = pytest.mark.anyio


async def test_replicas_run_forward_and_finish(no_leaks: None) -> None:
    out, err = io.BytesIO(), io.BytesIO()
    code = (
        "import os,sys; print('hi', os.environ['SUPERVISOR_NAME']);"
        "print('oops', file=sys.stderr); sys.stdout.write('tail')"
    )
    cfg = config(group("w", code, replicas=2, restart="never"))
    async with Supervisor(cfg, stdout=out, stderr=err) as sup:
        pids = {s.name: s.pid for s in sup.status()}
        assert all(pids.values())
        assert await sup.wait() == 0
    text = out.getvalue().decode()
    for name, pid in pids.items():
        assert f"({name} pid={pid}) hi {name}\n" in text
        assert f"({name} pid={pid}) tail\n" in text
        assert f"({name} pid={pid}) oops\n" in err.getvalue().decode()
    assert [s.state for s in sup.status()] == ["exited", "exited"]


async def test_failure_escalates_and_stops_the_rest(no_leaks: None) -> None:
    cfg = config(
        group("bad", "import sys; sys.exit(3)", restart="never"),
        group("ok", "import time; time.sleep(60)"),
        shutdown_timeout=2.0,
    )
    out = io.BytesIO()
    async with Supervisor(cfg, stdout=out, stderr=out) as sup:
        assert await sup.wait() == 1
    states = {s.name: (s.state, s.last_returncode) for s in sup.status()}
    assert states["bad_0"] == ("failed", 3)
    assert states["ok_0"] == ("exited", -15)
