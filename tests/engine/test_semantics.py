"""The contract's Semantics, sentence by sentence, with real children on every backend."""

from __future__ import annotations

import io
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor import Config, GroupConfig, Supervisor, SupervisorSettings, TopologySettings
from tests.engine.util import Events
from tests.helpers import PY, REPO, eventually

pytestmark = pytest.mark.anyio

#: Run n (0, 1, ...) of a replica, counted in a file: argv[1] + index.
RUN = (
    "import os,sys,time,pathlib;"
    "i=os.environ['SUPERVISOR_INDEX'];p=pathlib.Path(sys.argv[1]+i);"
    "n=len(p.read_text()) if p.exists() else 0;p.write_text('x'*(n+1));"
    "print('ready',i,n,sorted(os.sched_getaffinity(0)),flush=True);"
)


def grp(name: str, code: str, *args: str | Path, **kw: Any) -> GroupConfig:
    return GroupConfig(name=name, command=(PY, "-c", code, *map(str, args)), **kw)


def cfg(*groups: GroupConfig, shutdown_timeout: float = 0.5, **kw: Any) -> Config:
    return Config(
        groups=groups,
        supervisor=SupervisorSettings(shutdown_timeout=shutdown_timeout, color="never"),
        base_dir=REPO,
        **kw,
    )


def sup_for(config: Config, events: Events, out: io.BytesIO | None = None) -> Supervisor:
    return Supervisor(
        config,
        stdout=out if out is not None else io.BytesIO(),
        stderr=io.BytesIO(),
        logger=events,
        drain_timeout=0.3,
    )


def causes(events: Events, replica: str = "w_0") -> list[str]:
    return [r["cause"] for r in events.of("replica_exited", replica=replica)]


async def test_nonzero_exit_fails_and_restarts_in_its_place(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    code = RUN + "sys.exit(3 if n == 0 else 0)"
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code, tmp_path / "n", backoff=0.05)), events) as sup:
            assert await sup.wait() == 0
    assert causes(events) == ["exited with code 3", "exited with code 0"]
    [restarting] = events.of("replica_restarting")
    assert (restarting["replica"], restarting["delay"], restarting["restart"]) == ("w_0", 0.05, 1)
    started = events.of("replica_started")
    assert len(started) == 2 and started[0]["pid"] != started[1]["pid"]
    assert all("pid" in s and "cpus" not in s and "nodes" not in s for s in started)
    [st] = sup.status()
    assert (st.name, st.index, st.state, st.restarts, st.last_returncode) == (
        "w_0",
        0,
        "exited",
        1,
        0,
    )


async def test_death_by_a_signal_we_did_not_send_is_a_failure(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    code = RUN + "n == 0 and os.kill(os.getpid(), 9)"
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code, tmp_path / "n", backoff=0)), events) as sup:
            assert await sup.wait() == 0
    assert causes(events) == ["killed by SIGKILL (out of memory?)", "exited with code 0"]
    assert len(events.of("replica_restarting")) == 1


async def test_death_by_a_signal_we_sent_is_no_failure(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    code = "import time; print('ready', flush=True); time.sleep(60)"
    with anyio.fail_after(5):
        async with sup_for(cfg(grp("w", code)), events, out) as sup:
            await eventually(lambda: b"ready" in out.getvalue())
            child = sup.replicas[0].child
            assert child is not None and child.pidfd is not None  # exit comes from a pidfd
            await sup.signal("w_0", "SIGTERM")
            assert await sup.wait() == 0
    assert causes(events) == ["stopped by SIGTERM"]
    assert not events.of("replica_restarting")
    assert sup.status()[0].state == "exited"


async def test_always_restarts_clean_exits_until_the_budget_is_used(
    no_leaks: None, events: Events
) -> None:
    g = grp("w", "pass", restart="always", max_restarts=2, backoff=0)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events) as sup:
            assert await sup.wait() == 0
    assert [r["restart"] for r in events.of("replica_restarting")] == [1, 2]
    assert len(events.of("replica_started")) == 3
    assert not events.of("group_escalated")


async def test_never_escalates_names_replica_pid_cause_and_stops_the_rest(
    no_leaks: None, events: Events
) -> None:
    out = io.BytesIO()
    config = cfg(
        grp("bad", "import sys,time; time.sleep(0.2); sys.exit(3)", restart="never"),
        grp("ok", "import time; print('ready', flush=True); time.sleep(60)", replicas=2),
    )
    with anyio.fail_after(5):
        async with sup_for(config, events, out) as sup:
            bad_pid = sup.status()[0].pid
            assert await sup.wait() == 1
    [esc] = events.of("group_escalated")
    assert (esc["group"], esc["replica"], esc["pid"]) == ("bad", "bad_0", bad_pid)
    assert (esc["cause"], esc["exit_code"]) == ("exited with code 3", 3)
    assert esc["reason"] == 'restart = "never"'
    states = {s.name: (s.state, s.last_exit) for s in sup.status()}
    assert states == {
        "bad_0": ("failed", "exited with code 3"),
        "ok_0": ("exited", "stopped by SIGTERM"),
        "ok_1": ("exited", "stopped by SIGTERM"),
    }
    names = events.names()
    assert names.index("group_escalated") < names.index("shutdown_started")
    assert names[-1] == "shutdown_complete"


async def test_crash_loop_escalates_exactly_after_max_restarts(
    no_leaks: None, events: Events
) -> None:
    g = grp("w", "import sys; sys.exit(7)", max_restarts=3, backoff=0)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events) as sup:
            assert await sup.wait() == 1
    assert [r["restart"] for r in events.of("replica_restarting")] == [1, 2, 3]
    assert len(events.of("replica_started")) == 4
    [esc] = events.of("group_escalated")
    assert esc["reason"] == "max_restarts = 3 used up within 60 s"
    assert sup.status()[0].restarts == 3


async def test_backoff_doubles_and_is_waited(no_leaks: None, events: Events) -> None:
    g = grp("w", "import sys; sys.exit(1)", max_restarts=3, backoff=0.1)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events) as sup:
            assert await sup.wait() == 1
    delays = [r["delay"] for r in events.of("replica_restarting")]
    assert delays == [0.1, 0.2, 0.4]
    exits, starts = events.of("replica_exited"), events.of("replica_started")
    for delay, exited, started in zip(delays, exits[:3], starts[1:], strict=True):
        assert started["t"] - exited["t"] >= delay - 0.01


async def test_backoff_and_count_reset_after_running_for_the_window(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    # Run 0 crashes at once; run 1 outlives the 0.4 s window, then crashes; run 2 exits 0.
    code = RUN + "n == 1 and time.sleep(0.6); sys.exit(0 if n == 2 else 1)"
    g = grp("w", code, tmp_path / "n", max_restarts=1, restart_window=0.4, backoff=0.05)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events) as sup:
            assert await sup.wait() == 0
    assert [(r["delay"], r["restart"]) for r in events.of("replica_restarting")] == [
        (0.05, 1),
        (0.05, 1),
    ]


async def test_group_scope_restarts_every_replica_and_counts_once(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    out = io.BytesIO()
    # w_0's first run fails once the others have counted their first run.
    code = RUN + (
        "others = [pathlib.Path(sys.argv[1] + j) for j in '12'];\n"
        "while i == '0' and n == 0 and not all(o.exists() for o in others): time.sleep(0.01)\n"
        "i == '0' and n == 0 and sys.exit(3); time.sleep(60)"
    )
    g = grp("w", code, tmp_path / "n", replicas=3, restart_scope="group", backoff=0.05)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events, out) as sup:
            first = {s.name: s.pid for s in sup.status()}
            await eventually(lambda: all(s.restarts == 1 and s.pid for s in sup.status()))
            for i in range(3):
                await eventually(lambda i=i: f"ready {i} 1 ".encode() in out.getvalue())
            second = {s.name: s.pid for s in sup.status()}
            assert sup.groups["w"].budget.in_window(anyio.current_time()) == 1
            assert await sup.stop() == 0
    assert all(first[n] != second[n] for n in first)
    [restarting] = events.of("replica_restarting")
    assert (restarting["replica"], restarting["restart"]) == ("w_0", 1)
    assert causes(events, "w_1")[0] == "stopped by SIGTERM"
    assert causes(events, "w_2")[0] == "stopped by SIGTERM"


async def test_requested_stop_cancels_a_pending_restart(no_leaks: None, events: Events) -> None:
    g = grp("w", "import sys; sys.exit(1)", backoff=30)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events) as sup:
            await eventually(lambda: sup.status()[0].state == "backoff")
            t0 = time.monotonic()
            assert await sup.stop() == 0
            assert time.monotonic() - t0 < 1.0
    assert len(events.of("replica_started")) == 1
    assert sup.status()[0].state == "exited"
    assert events.names()[-1] == "shutdown_complete"


async def test_manual_restart_keeps_place_and_wakes_backoff(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    out = io.BytesIO()
    code = RUN + "n == 1 and sys.exit(1); time.sleep(60)"
    g = grp("w", code, tmp_path / "n", backoff=30)
    with anyio.fail_after(5):
        async with sup_for(cfg(g), events, out) as sup:
            await eventually(lambda: b"ready 0 0" in out.getvalue())
            pid0 = sup.status()[0].pid
            await sup.restart("w_0")  # run 1: exits 1, so a 30 s backoff begins
            await eventually(lambda: sup.status()[0].state == "backoff")
            await sup.restart("w_0")  # skips the backoff
            await eventually(lambda: b"ready 0 2" in out.getvalue())
            st = sup.status()[0]
            assert st.pid not in (None, pid0)
            assert (st.name, st.index, st.state, st.restarts) == ("w_0", 0, "running", 2)
            with pytest.raises(KeyError, match="w_9"):
                await sup.restart("w_9")
    assert causes(events)[0] == "stopped by SIGTERM"


async def test_signal_reaches_the_replica(no_leaks: None, events: Events) -> None:
    out = io.BytesIO()
    code = (
        "import signal,time;"
        "signal.signal(signal.SIGUSR1, lambda *a: print('got usr1', flush=True));"
        "print('ready', flush=True); time.sleep(60)"
    )
    with anyio.fail_after(5):
        async with sup_for(
            cfg(grp("w", code), grp("x", "pass", restart="never")), events, out
        ) as sup:
            await eventually(lambda: b"ready" in out.getvalue())
            await sup.signal("w_0", signal.SIGUSR1)
            await eventually(lambda: b"got usr1" in out.getvalue())
            assert sup.status()[0].state == "running"
            await eventually(lambda: sup.status()[1].state == "exited")
            with pytest.raises(ProcessLookupError, match="x_0"):
                await sup.signal("x_0", "SIGTERM")
            with pytest.raises(KeyError):
                await sup.signal("nope", "SIGTERM")


async def test_bound_replica_keeps_its_cpus_across_restarts(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    out = io.BytesIO()
    code = RUN + "n == 0 and sys.exit(1); time.sleep(60)"
    config = cfg(
        grp("w", code, tmp_path / "n", replicas=2, backoff=0),
        topology=TopologySettings(strategy="cores"),
    )
    with anyio.fail_after(5):
        async with sup_for(config, events, out) as sup:
            planned = {r.index: list(r.cpus) for r in sup.plan.replicas}
            assert all(planned.values()) and planned[0] != planned[1]
            for i in range(2):
                await eventually(lambda i=i: f"ready {i} 1 ".encode() in out.getvalue())
                text = out.getvalue().decode()
                assert f"ready {i} 0 {planned[i]}" in text
                assert f"ready {i} 1 {planned[i]}" in text
            assert [list(s.cpus) for s in sup.status()] == [planned[0], planned[1]]
    started = events.of("replica_started", replica="w_0")
    assert len(started) == 2 and started[0]["cpus"] == started[1]["cpus"] != ""
