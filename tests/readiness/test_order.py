"""Start order (``after``): pending while waiting, started once ready, stopped in reverse."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor import Supervisor
from tests.helpers import config, eventually
from tests.readiness._embed import Recorder, gate, release, running, state
from tests.readiness.test_probes import TELL, prog

pytestmark = pytest.mark.anyio

ENGINE = """
import signal, sys, time
def term(*_):
    print("engine got SIGTERM", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("loading", flush=True)
open(sys.argv[1]).read()
print("engine ready", flush=True)
while True:
    time.sleep(60)
"""

#: Takes a moment to stop: the engine must still wait for it.
API = """
import signal, sys, time
def term(*_):
    time.sleep(0.3)
    print("api done", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
print("api up", flush=True)
while True:
    time.sleep(60)
"""


async def test_after_waits_for_readiness_and_stops_in_reverse(tmp_path: Path) -> None:
    g = gate(tmp_path)
    rec = Recorder()
    cfg = config(
        prog("engine", ENGINE, g, ready="line:^engine ready$"),
        prog("api", API, replicas=2, after=("engine",)),
    )
    async with running(cfg, rec) as sup:
        await eventually(lambda: rec.said("loading"), 10)
        assert [state(sup, n).state for n in ("api_0", "api_1")] == ["pending", "pending"]
        assert state(sup, "api_0").pid is None
        assert not rec.named("replica_started", "api_0")
        await release(g)
        await eventually(sup.is_ready, 10, "every replica ready")
        ready = rec.first("replica_ready", "engine_0")
        assert ready < rec.first("replica_started", "api_0")
        assert ready < rec.first("replica_started", "api_1")
        await eventually(lambda: sum(r.line == b"api up" for _, r in rec.lines) == 2, 10)
    # Reverse order: both api replicas had exited before the engine got its stop signal.
    term = rec.line_at("engine got SIGTERM")
    api_exits = [t for name in ("api_0", "api_1") for t, _ in rec.named("replica_exited", name)]
    assert len(api_exits) == 2 and max(api_exits) < term, (api_exits, term)
    assert rec.line_at("api done") < term


async def test_start_returns_once_replicas_are_ready() -> None:
    """``async with Supervisor`` counts readiness, in start order, not just the start."""
    code = TELL + 'time.sleep(0.3)\ntell("READY=1")\ntime.sleep(60)\n'
    cfg = config(
        prog("engine", code, ready="notify"),
        prog("api", code, ready="notify", after=("engine",)),
    )
    rec = Recorder()
    async with Supervisor(cfg, logger=rec, on_output=rec.on_output) as sup:
        assert sup.is_ready()
        assert [(s.name, s.state, s.ready) for s in sup.status()] == [
            ("engine_0", "running", True),
            ("api_0", "running", True),
        ]
        assert rec.first("replica_ready", "engine_0") < rec.first("replica_started", "api_0")
