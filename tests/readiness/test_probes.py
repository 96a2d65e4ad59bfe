"""Readiness (notify, line:, tcp:, http:), ready_timeout, health checks and the watchdog.

Real replicas, real sd_notify clients (apt's ``systemd-notify`` and a Python
one), real sockets. A replica waits at a gate (a FIFO) until the test lets
it go on, so "not ready yet" is observed, not guessed.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import GroupConfig, ReplicaStatus, Supervisor
from tests.helpers import PY, config, eventually
from tests.readiness._embed import Recorder, gate, release, running, state
from tests.readiness._load import free_port

pytestmark = pytest.mark.anyio

#: A Python sd_notify client: one datagram of KEY=VALUE lines to $NOTIFY_SOCKET.
TELL = """
import os, socket, sys, threading, time
def tell(*lines):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto("\\n".join(lines).encode(), os.environ["NOTIFY_SOCKET"])
    s.close()
"""

NOTIFY = (
    TELL
    + """
tell("STATUS=loading weights")
open(sys.argv[1]).read()
tell("READY=1", "STATUS=serving")
time.sleep(60)
"""
)

LINE = """
import sys, time
print("loading", flush=True)
open(sys.argv[1]).read()
print("listening on port 8123", flush=True)
time.sleep(60)
"""

TCP = """
import socket, sys, time
print("loading", flush=True)
open(sys.argv[1]).read()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""

#: 503 until the flag file exists, then 200; one line per request answered.
HTTP = """
import http.server, os, sys
flag = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        code = 200 if os.path.exists(flag) else 503
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print("answered", code, flush=True)
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[2])), H).serve_forever()
"""

#: Listens from the start (healthy); closes its listener at the gate, stays alive.
UNHEALTHY = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[2])))
s.listen()
print("up", flush=True)
open(sys.argv[1]).read()
s.close()
print("closed", flush=True)
time.sleep(60)
"""

#: READY=1, then WATCHDOG=1 every 0.1 s until the gate opens, then silence.
WATCHDOG = (
    TELL
    + """
tell("READY=1")
gone = threading.Event()
threading.Thread(target=lambda: (open(sys.argv[1]).read(), gone.set()), daemon=True).start()
n = 0
while not gone.wait(0.1):
    tell("WATCHDOG=1")
    n += 1
    print("beat", n, flush=True)
print("silent", flush=True)
time.sleep(60)
"""
)


def prog(name: str, code: str, *args: object, **kw: Any) -> GroupConfig:
    return GroupConfig(name=name, command=(PY, "-c", code, *map(str, args)), bind=False, **kw)


def ready_now(st: ReplicaStatus) -> bool:
    return st.ready and st.state == "running"


async def not_ready_while_gated(sup: Supervisor, rec: Recorder, seen: str) -> None:
    """The replica said ``seen`` and waits at its gate: it must still be starting."""
    await eventually(lambda: rec.said(seen), 10, f"the replica said {seen!r}")
    st = state(sup, "r_0")
    assert (st.state, st.ready) == ("starting", False), st
    assert not sup.is_ready()


async def test_notify_from_a_python_client_with_status_text(tmp_path: Path) -> None:
    g = gate(tmp_path)
    rec = Recorder()
    async with running(config(prog("r", NOTIFY, g, ready="notify")), rec) as sup:
        await eventually(lambda: state(sup, "r_0").status_text == "loading weights", 10)
        st = state(sup, "r_0")
        assert (st.state, st.ready) == ("starting", False), st
        await release(g)
        await eventually(lambda: ready_now(state(sup, "r_0")), 10, "ready after READY=1")
        assert state(sup, "r_0").status_text == "serving"
        assert sup.is_ready()
        assert rec.named("replica_ready", "r_0")


async def test_notify_from_systemd_notify(tmp_path: Path) -> None:
    if shutil.which("systemd-notify") is None:
        pytest.skip("systemd-notify is not installed (apt install systemd)")
    g = gate(tmp_path)
    shell = (
        'echo waiting; cat "$1" >/dev/null; '
        'systemd-notify --ready --status="sent by systemd-notify"; exec sleep 60'
    )
    grp = GroupConfig(
        name="r", command=("sh", "-c", shell, "sh", str(g)), ready="notify", bind=False
    )
    rec = Recorder()
    async with running(config(grp), rec) as sup:
        await not_ready_while_gated(sup, rec, "waiting")
        await release(g)
        await eventually(lambda: ready_now(state(sup, "r_0")), 10, "ready after systemd-notify")
        assert state(sup, "r_0").status_text == "sent by systemd-notify"


async def test_line_ready_matches_a_forwarded_line(tmp_path: Path) -> None:
    g = gate(tmp_path)
    rec = Recorder()
    grp = prog("r", LINE, g, ready=r"line:^listening on port \d+$")
    async with running(config(grp), rec) as sup:
        await not_ready_while_gated(sup, rec, "loading")
        await release(g)
        await eventually(lambda: ready_now(state(sup, "r_0")), 10, "ready after the line")
        # The line that made it ready was forwarded once, like any other.
        assert sum(r.line == b"listening on port 8123" for _, r in rec.lines) == 1


async def test_tcp_ready_once_the_port_listens(tmp_path: Path) -> None:
    g = gate(tmp_path)
    port = free_port()
    rec = Recorder()
    async with running(config(prog("r", TCP, g, port, ready=f"tcp:127.0.0.1:{port}")), rec) as sup:
        await not_ready_while_gated(sup, rec, "loading")
        await release(g)
        await eventually(lambda: ready_now(state(sup, "r_0")), 10, "ready once listening")
        await eventually(lambda: rec.said("listening"), 10, "its line about it")


async def test_http_ready_needs_a_2xx(tmp_path: Path) -> None:
    flag = tmp_path / "loaded"
    port = free_port()
    rec = Recorder()
    grp = prog("r", HTTP, flag, port, ready=f"http:http://127.0.0.1:{port}/health")
    async with running(config(grp), rec) as sup:
        # Probes came and got 503: retried, and not ready.
        await eventually(lambda: sum(b"503" in r.line for _, r in rec.lines) >= 2, 10)
        assert not state(sup, "r_0").ready
        flag.touch()
        await eventually(lambda: ready_now(state(sup, "r_0")), 10, "ready on 200")
        # The server's own line about it may be forwarded just after.
        await eventually(lambda: rec.said("answered 200"), 10, "the 200 in its output")


async def test_ready_timeout_is_a_failure_for_the_restart_policy() -> None:
    rec = Recorder()
    grp = prog(
        "r", "import time; print('never ready', flush=True); time.sleep(60)",
        ready="line:^ready$", ready_timeout=0.5, restart="on-failure",
        max_restarts=1, backoff=0.0,
    )  # fmt: skip
    sup = Supervisor(config(grp), logger=rec, on_output=rec.on_output)
    with anyio.fail_after(30):
        status = await sup.run()
    assert status == 1
    unhealthy = rec.named("replica_unhealthy", "r_0")
    assert len(unhealthy) == 2, rec.events  # the first start, and its one restart
    assert all("not ready within 0.5 s" in f["reason"] for _, f in unhealthy), unhealthy
    assert len(rec.named("replica_restarting", "r_0")) == 1
    ((_, escalated),) = rec.named("group_escalated")
    assert "max_restarts = 1" in escalated["reason"], escalated
    assert "not ready within 0.5 s" in escalated["cause"], escalated


async def test_ready_timeout_with_restart_never_escalates() -> None:
    rec = Recorder()
    grp = prog(
        "r", "import time; time.sleep(60)", ready="notify", ready_timeout=0.3, restart="never"
    )
    sup = Supervisor(config(grp), logger=rec, on_output=rec.on_output)
    with anyio.fail_after(30):
        assert await sup.run() == 1
    ((_, escalated),) = rec.named("group_escalated")
    assert escalated["reason"] == 'restart = "never"', escalated
    assert not rec.named("replica_ready")


async def test_failed_health_checks_restart_the_replica(tmp_path: Path) -> None:
    g = gate(tmp_path)
    port = free_port()
    rec = Recorder()
    grp = prog(
        "r", UNHEALTHY, g, port, health=f"tcp:127.0.0.1:{port}", health_interval=0.1,
        health_failures=3, backoff=0.0,
    )  # fmt: skip
    async with running(config(grp), rec) as sup:
        await eventually(lambda: ready_now(state(sup, "r_0")), 10)
        first = state(sup, "r_0").pid
        await release(g)
        await eventually(lambda: bool(rec.named("replica_unhealthy", "r_0")), 10)
        ((_, bad),) = rec.named("replica_unhealthy", "r_0")
        assert "failed 3 health checks in a row" in bad["reason"], bad
        assert rec.line_at("closed") < rec.first("replica_unhealthy", "r_0")
        await eventually(lambda: ready_now(state(sup, "r_0")) and state(sup, "r_0").pid != first)
        assert state(sup, "r_0").restarts == 1
        assert "failed 3 health checks" in (state(sup, "r_0").last_exit or "")


async def test_missing_watchdog_restarts_the_replica(tmp_path: Path) -> None:
    g = gate(tmp_path)
    rec = Recorder()
    grp = prog("r", WATCHDOG, g, ready="notify", watchdog=0.5, backoff=0.0)
    async with running(config(grp), rec) as sup:
        # Ten beats span twice the watchdog: WATCHDOG=1 kept it alive.
        await eventually(lambda: rec.said("beat 10"), 15)
        assert not rec.named("replica_unhealthy")
        first = state(sup, "r_0").pid
        await release(g)
        await eventually(lambda: bool(rec.named("replica_unhealthy", "r_0")), 10)
        ((_, bad),) = rec.named("replica_unhealthy", "r_0")
        assert bad["reason"] == "no WATCHDOG=1 for 0.5 s", bad
        await eventually(lambda: state(sup, "r_0").pid not in (None, first), 10, "restarted")
        assert state(sup, "r_0").restarts == 1
