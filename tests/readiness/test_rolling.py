"""Rolling restarts: one at a time, each successor ready first; a failing one stops the roll."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from supervisor import RollingRestartError
from tests.helpers import config
from tests.readiness._embed import Recorder, running, state
from tests.readiness.test_probes import prog

pytestmark = pytest.mark.anyio

#: Ready (the line) unless the "broken" file exists: then it never says so.
SERVER = """
import os, sys, time
if not os.path.exists(sys.argv[1]):
    print("serving", flush=True)
time.sleep(60)
"""

NAMES = ("r_0", "r_1", "r_2")


async def test_each_successor_is_ready_before_the_next_stops(tmp_path: Path) -> None:
    rec = Recorder()
    grp = prog("r", SERVER, tmp_path / "broken", replicas=3, ready="line:^serving$")
    async with running(config(grp), rec) as sup:
        with anyio.fail_after(20):
            while not sup.is_ready():
                await sup.wait_changed()
        before = {n: state(sup, n).pid for n in NAMES}
        statuses = await sup.restart("r", rolling=True)
        assert isinstance(statuses, list)
        assert all(s.ready and s.pid != before[s.name] for s in statuses), statuses
        exits = {f["replica"]: t for t, f in rec.named("replica_exited")}
        readies = {f["replica"]: t for t, f in rec.named("replica_ready")}  # the last of each
        assert exits["r_0"] < readies["r_0"] < exits["r_1"] < readies["r_1"] < exits["r_2"]
        assert state(sup, "r_0").restarts == 1  # an operator's restart, not a failure budget


async def test_a_successor_that_is_not_ready_stops_the_roll(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    rec = Recorder()
    grp = prog(
        "r", SERVER, broken, replicas=3, ready="line:^serving$", ready_timeout=0.5,
        backoff=30.0, max_restarts=3,
    )  # fmt: skip
    async with running(config(grp), rec) as sup:
        with anyio.fail_after(20):
            while not sup.is_ready():
                await sup.wait_changed()
        before = {n: state(sup, n).pid for n in NAMES}
        broken.touch()  # from now on a new process never becomes ready
        with pytest.raises(RollingRestartError, match=r"'r_0'.*rest keep running"):
            await sup.restart("r", rolling=True)
        # The roll stopped at r_0: the others were never touched and still serve.
        assert [state(sup, n).pid for n in ("r_1", "r_2")] == [before["r_1"], before["r_2"]]
        assert all(state(sup, n).ready for n in ("r_1", "r_2"))
        assert "not ready within 0.5 s" in (state(sup, "r_0").last_exit or "")
