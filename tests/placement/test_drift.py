"""A replica that widens its own CPU set is reported: one event, and ``drift`` in status.

Replica 0 of a bound group calls ``os.sched_setaffinity`` with every allowed CPU
(what ``KMP_AFFINITY=norespect`` or a careless library does); replica 1 stays put.
The supervisor reads the threads back within a second of each start and at each
status request, and logs each distinct mismatch once.
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import structlog

from supervisor import Config, GroupConfig, Supervisor, SupervisorSettings, TopologySettings
from tests.helpers import PY, REPO, eventually
from tests.placement._runs import ALLOWED, FIRST, LAST, clean_env, close, toml_config
from tests.serve_process import Serve
from topology.cpulist import parse_cpulist

pytestmark = pytest.mark.skipif(len(ALLOWED) < 2, reason="needs 2 allowed CPUs to widen into")

WIDEN = (
    "import os, signal\n"
    "if os.environ['SUPERVISOR_INDEX'] == '0':\n"
    f"    os.sched_setaffinity(0, os.sched_getaffinity(0) | {{{FIRST}, {LAST}}})\n"
    "print('widened' if os.environ['SUPERVISOR_INDEX'] == '0' else 'pinned', flush=True)\n"
    "signal.pause()\n"
)


def _events(stderr: str, name: str) -> list[dict[str, Any]]:
    found = []
    for line in stderr.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            if event.get("event") == name:
                found.append(event)
    return found


def _ctl_status(socket: Path) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [PY, "-m", "supervisor", "ctl", "--socket", str(socket), "status", "--json"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=REPO,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return {r["name"]: r for r in json.loads(done.stdout)["replicas"]}


@pytest.mark.slow
def test_widened_replica_gives_one_mismatch_and_drift_in_status(
    tmp_path: Path, no_leaks_sync: None
) -> None:
    socket = tmp_path / "ctl.sock"
    config = toml_config(
        tmp_path / "drift.toml",
        (PY, "-c", WIDEN),
        replicas=2,
        cpus=f"{FIRST}|{LAST}",
        extra=f'[control]\nsocket = "{socket}"',
    )
    serve = Serve(config, env=clean_env())
    try:
        serve.wait_for("widened")
        serve.wait_for("pinned")
        # The check a second after the start finds it without being asked.
        serve.wait_for('"placement_mismatch"', stream="err")
        for _ in range(3):  # each status request verifies again; nothing new to report
            status = _ctl_status(socket)
            assert status["rt_0"]["placement"] == "drift", status
            assert status["rt_1"]["placement"] == "ok", status
        events = _events(serve.err, "placement_mismatch")
        assert len(events) == 1, serve.err
        (event,) = events
        pid = status["rt_0"]["pid"]
        assert (event["replica"], event["pid"], event["tid"]) == ("rt_0", pid, pid), event
        assert event["place"] == str(FIRST), event
        assert {FIRST, LAST} <= set(parse_cpulist(event["cpus"])), event
    finally:
        serve.signal()
        try:
            rc = serve.finish()
        finally:
            close(serve)
    assert rc == 0, serve.err


@pytest.mark.anyio
async def test_embedded_status_shows_drift_once(no_leaks: None) -> None:
    cfg = Config(
        groups=(GroupConfig(name="w", command=(PY, "-c", WIDEN), replicas=2, restart="never"),),
        topology=TopologySettings(strategy="cores", cpus=f"{FIRST}|{LAST}"),
        supervisor=SupervisorSettings(shutdown_timeout=5.0, color="never"),
        base_dir=REPO,
    )
    out = io.BytesIO()
    with structlog.testing.capture_logs() as logs:
        async with Supervisor(cfg, stdout=out, stderr=io.BytesIO()) as sup:
            await eventually(lambda: b"widened" in out.getvalue() and b"pinned" in out.getvalue())

            def placements() -> dict[str, str]:
                return {st.name: getattr(st, "placement", "") for st in sup.status()}

            await eventually(lambda: placements() == {"w_0": "drift", "w_1": "ok"}, timeout=15)
            await sup.stop()
    events = [e for e in logs if e["event"] == "placement_mismatch"]
    assert [e["replica"] for e in events] == ["w_0"], events
    assert events[0]["tid"] == events[0]["pid"]
