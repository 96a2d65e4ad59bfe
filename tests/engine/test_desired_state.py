"""Desired state at runtime: scale, bound places, reload, requests during a drain, typed errors.

Real children on asyncio, uvloop and trio; every wait has a deadline and
waits on a condition, never on time.
"""

from __future__ import annotations

import io
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor import Config, GroupConfig, Supervisor, SupervisorSettings, TopologySettings
from supervisor.config import ConfigError, load_config
from supervisor.errors import (
    NoFreePlaceError,
    NotRunningError,
    SupervisorError,
    UnknownGroupError,
    UnknownReplicaError,
)
from tests.engine.util import Events
from tests.helpers import PY, REPO, eventually, procs_with

pytestmark = pytest.mark.anyio

SLEEP = ("sleep", "300")


def cfg(*groups: GroupConfig, shutdown_timeout: float = 1.0, **kw: Any) -> Config:
    return Config(
        groups=groups,
        supervisor=SupervisorSettings(shutdown_timeout=shutdown_timeout, color="never"),
        base_dir=REPO,
        **kw,
    )


def sup_for(config: Config, events: Events, **kw: Any) -> Supervisor:
    kw.setdefault("drain_timeout", 0.3)
    return Supervisor(config, stdout=io.BytesIO(), stderr=io.BytesIO(), logger=events, **kw)


def pids(sup: Supervisor, group: str | None = None) -> dict[str, int | None]:
    return {s.name: s.pid for s in sup.status() if group is None or s.group == group}


def gone(pid: int | None) -> bool:
    """The process is no more (or only a zombie nobody of ours waits for)."""
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def all_running(sup: Supervisor, n: int, group: str | None = None) -> bool:
    found = [s for s in sup.status() if group is None or s.group == group]
    return len(found) == n and all(s.state == "running" and s.pid for s in found)


# -- scale ------------------------------------------------------------------------------
async def test_scale_unbound_2_5_1_keeps_pids_and_drops_highest(
    no_leaks: None, events: Events
) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, replicas=2, bind=False))
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            first = pids(sup)
            assert set(first) == {"w_0", "w_1"} and all(first.values())

            await sup.scale("w", 5)
            assert all_running(sup, 5), sup.status()
            now = pids(sup)
            assert [s.index for s in sup.status()] == [0, 1, 2, 3, 4]
            assert {k: now[k] for k in first} == first  # kept replicas keep their pids
            assert len(set(now.values())) == 5

            await sup.scale("w", 1)
            assert pids(sup) == {"w_0": first["w_0"]}  # the highest indexes went
            for name in ("w_1", "w_2", "w_3", "w_4"):
                assert gone(now[name]), name
            assert sup.is_ready()
    assert len(events.of("replica_started")) == 5
    assert not events.of("replica_restarting") and not events.of("group_escalated")


# Stops in 0.3 s after SIGTERM, so a scale-down is still under way when the scale-up comes.
SLOW_STOP = (
    PY,
    "-c",
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, lambda *a: (time.sleep(0.3), sys.exit(0)))\n"
    "print('armed', flush=True)\n"
    "time.sleep(300)",
)


async def test_scale_up_while_those_indexes_still_stop(no_leaks: None, events: Events) -> None:
    config = cfg(
        GroupConfig(name="w", command=SLOW_STOP, replicas=3, bind=False, ready="line:armed")
    )
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            old = pids(sup)
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.scale, "w", 1)
                await eventually(
                    lambda: any(s.state == "stopping" for s in sup.status()), 10, "stopping"
                )
                await sup.scale("w", 3)  # w_1 and w_2 are still on their way out
            assert all_running(sup, 3), sup.status()
            now = pids(sup)
            assert now["w_0"] == old["w_0"]
            assert now["w_1"] != old["w_1"] and now["w_2"] != old["w_2"]


async def test_scale_to_zero_and_back(no_leaks: None, events: Events) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, replicas=2, bind=False))
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            await sup.scale("w", 0)
            assert sup.status() == [] and sup.group_names() == ["w"]
            await sup.scale("w", 3)
            assert all_running(sup, 3), (sup.status(), events.names())
    assert len(events.of("replica_started")) == 5


def bound_config() -> Config:
    """Two bound groups on this machine's first two CPUs: exactly two places."""
    return cfg(
        GroupConfig(name="a", command=SLEEP, replicas=1),
        GroupConfig(name="b", command=SLEEP, replicas=1),
        topology=TopologySettings(strategy="cores", cpus="0|1", numa="off"),
    )


def cpus_of(sup: Supervisor) -> dict[str, tuple[int, ...]]:
    return {s.name: s.cpus for s in sup.status()}


def no_overlap(sup: Supervisor) -> bool:
    taken = [c for s in sup.status() for c in s.cpus]
    return len(taken) == len(set(taken))


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")
async def test_bound_scale_to_last_place_refuses_one_past_and_reuses_places(
    no_leaks: None, events: Events
) -> None:
    with anyio.fail_after(30):
        async with sup_for(bound_config(), events) as sup:
            start = cpus_of(sup)
            assert sorted(start.values()) == [(0,), (1,)], start
            before = sup.status()

            # Both places are taken: one more replica anywhere is refused, nothing changes.
            with pytest.raises(NoFreePlaceError):
                await sup.scale("b", 2)
            assert sup.status() == before

            # Free a's place; b takes it as its last free place.
            await sup.scale("a", 0)
            await sup.scale("b", 2)
            assert all_running(sup, 2, "b")
            assert cpus_of(sup) == {"b_0": start["b_0"], "b_1": start["a_0"]}
            assert no_overlap(sup)

            # ...and every running replica is really bound where it says.
            def bound_as_planned() -> bool:
                return all(
                    set(os.sched_getaffinity(s.pid or 0)) == set(s.cpus) for s in sup.status()
                )

            # "started" comes at spawn: numactl binds itself a moment later.
            await eventually(bound_as_planned, 10, "every replica bound to its place")

            before = sup.status()
            with pytest.raises(NoFreePlaceError):
                await sup.scale("b", 3)
            assert sup.status() == before
            with pytest.raises(NoFreePlaceError):
                await sup.scale("a", 1)
            assert sup.status() == before

            # Down and up again: the freed place is reused, never shared.
            await sup.scale("b", 1)
            assert cpus_of(sup) == {"b_0": start["b_0"]}
            await sup.scale("a", 1)
            assert cpus_of(sup) == {"a_0": start["a_0"], "b_0": start["b_0"]}
            assert no_overlap(sup)
    assert not events.of("group_escalated")


# -- reload -------------------------------------------------------------------------------
async def test_reload_changes_adds_removes_and_leaves_the_rest_alone(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    keep = GroupConfig(name="keep", command=SLEEP, replicas=2, bind=False)
    change = GroupConfig(name="change", command=SLEEP, replicas=2, bind=False, env={"V": "1"})
    drop = GroupConfig(name="drop", command=SLEEP, replicas=1, bind=False)
    new_change = GroupConfig(name="change", command=SLEEP, replicas=2, bind=False, env={"V": "2"})
    added = GroupConfig(name="added", command=SLEEP, replicas=2, bind=False)
    with anyio.fail_after(60):
        async with sup_for(cfg(keep, change, drop), events) as sup:
            old = pids(sup)
            await sup.reload(cfg(keep, new_change, added))
            now = pids(sup)
            assert set(sup.group_names()) == {"keep", "change", "added"}
            assert set(now) == {"keep_0", "keep_1", "change_0", "change_1", "added_0", "added_1"}
            assert {k: now[k] for k in ("keep_0", "keep_1")} == {
                k: old[k] for k in ("keep_0", "keep_1")
            }
            for name in ("change_0", "change_1"):
                assert now[name] is not None and now[name] != old[name], name
                assert gone(old[name])
                proc = psutil.Process(now[name])

                def has_new_env(p: psutil.Process = proc) -> bool:
                    # /proc/PID/environ reads empty for an instant during each exec.
                    return p.cmdline()[:1] == [SLEEP[0]] and p.environ().get("V") == "2"

                # Read once it has exec'd sleep (a spawn goes through a short trampoline).
                await eventually(has_new_env, 10, "the new env")
            assert gone(old["drop_0"])
            assert all_running(sup, 6)
            assert sup.config.groups[1].env == {"V": "2"}
    assert events.of("reload_started") and events.of("reload_complete")
    assert not events.of("group_escalated")


async def test_reload_with_only_replicas_changed_scales_in_place(
    no_leaks: None, events: Events
) -> None:
    two = GroupConfig(name="w", command=SLEEP, replicas=2, bind=False)
    three = GroupConfig(name="w", command=SLEEP, replicas=3, bind=False)
    with anyio.fail_after(30):
        async with sup_for(cfg(two), events) as sup:
            old = pids(sup)
            await sup.reload(cfg(three))
            await eventually(lambda: all_running(sup, 3), 10, "the third replica")
            now = pids(sup)
            assert {k: now[k] for k in old} == old
            await sup.reload(cfg(three))  # unchanged: nothing restarts
            assert pids(sup) == now
    assert len(events.of("replica_started")) == 3


async def test_invalid_reload_changes_nothing(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    path = tmp_path / "cfg.toml"
    good = (
        '[supervisor]\nshutdown_timeout = 1.0\ncolor = "never"\n'
        '[[group]]\nname = "w"\ncommand = ["sleep", "300"]\nreplicas = 2\nbind = false\n'
    )
    path.write_text(good)
    config = load_config(path)
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            before = sup.status()
            path.write_text(good + "replicaz = 3\n")
            with pytest.raises(ConfigError) as caught:
                await sup.reload()  # re-reads the file, as SIGHUP does
            assert isinstance(caught.value, SupervisorError)
            assert "replicaz" in str(caught.value)
            assert sup.status() == before
            assert sup.config is config
            (failed,) = events.of("reload_failed")
            assert "replicaz" in failed["error"]
            assert "\n" not in failed["error"]
            assert not events.of("reload_started")

            # The fixed file applies (a scale), the same pids stay.
            path.write_text(good.replace("replicas = 2", "replicas = 3"))
            await sup.reload()
            await eventually(lambda: all_running(sup, 3), 10, "the third replica")
            assert {s.name: s.pid for s in sup.status()[:2]} == {s.name: s.pid for s in before}


# -- requests during a drain ----------------------------------------------------------------
async def test_restart_requested_while_draining_is_not_lost(
    no_leaks: None, events: Events, tmp_path: Path
) -> None:
    """A replica exits on its own (restart never) while a grandchild holds its stdout;
    a restart requested in that drain window must still happen."""
    token = f"tok-{uuid.uuid4()}"
    code = (
        "import signal,subprocess,sys;"
        "signal.pthread_sigmask(signal.SIG_BLOCK,[signal.SIGUSR1]);"
        # A grandchild in its own session keeps our stdout open after we exit.
        "subprocess.Popen([sys.executable,'-c','import time; time.sleep(20)',sys.argv[1]],"
        "start_new_session=True);"
        "print('ready',flush=True);signal.sigwait([signal.SIGUSR1])"
    )
    group = GroupConfig(name="w", command=(PY, "-c", code, token), restart="never", bind=False)
    with anyio.fail_after(30):
        async with sup_for(cfg(group, shutdown_timeout=2.0), events, drain_timeout=3.0) as sup:
            (first,) = sup.status()
            assert first.pid is not None
            await eventually(lambda: sup.status()[0].lines_stdout == 1, 10, "ready printed")
            os.kill(first.pid, signal.SIGUSR1)  # not through the engine: its own exit
            # Exited, but still draining: no pid, not yet exited in the table.
            await eventually(lambda: sup.status()[0].pid is None, 10, "the replica exited")
            assert sup.status()[0].state in ("starting", "running", "stopping")
            assert not events.of("replica_exited")
            status = await sup.restart("w_0")
            assert not isinstance(status, list)
            assert status.pid is not None and status.pid != first.pid
            assert status.state in ("starting", "running")
            assert len(events.of("replica_started")) == 2
            await eventually(lambda: sup.status()[0].state == "running", 10, "running again")
            assert events.of("replica_exited", replica="w_0")
        await eventually(lambda: not procs_with(token), 5, "the grandchild killed")
    assert not events.of("group_escalated")


async def test_stop_then_start_replica(no_leaks: None, events: Events) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, replicas=2, bind=False))
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            old = pids(sup)
            await sup.stop_replica("w_1")
            states = {s.name: s.state for s in sup.status()}
            assert states == {"w_0": "running", "w_1": "stopped"}
            assert gone(old["w_1"])
            assert sup.is_ready()  # a replica stopped on request is not awaited
            with pytest.raises(NotRunningError) as caught:
                await sup.signal("w_1", "SIGUSR1")
            assert isinstance(caught.value, ProcessLookupError)
            await sup.start_replica("w_1")
            assert all_running(sup, 2)
            assert pids(sup)["w_0"] == old["w_0"]
            assert pids(sup)["w_1"] != old["w_1"]


# -- typed errors and task-group use ----------------------------------------------------------
async def test_unknown_names_raise_unknown_replica_error(no_leaks: None, events: Events) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, replicas=1, bind=False))
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            with pytest.raises(UnknownReplicaError) as caught:
                sup.resolve("nope")
            assert isinstance(caught.value, KeyError)
            assert "nope" in str(caught.value) and not str(caught.value).startswith("'")
            for call in (
                sup.restart("nope"),
                sup.signal("nope", signal.SIGUSR1),
                sup.stop_replica("nope"),
                sup.start_replica("w_9"),
            ):
                with pytest.raises(UnknownReplicaError):
                    await call
            with pytest.raises(UnknownGroupError):
                await sup.scale("w_0", 2)  # a replica is not a group
            with pytest.raises(ValueError):
                await sup.scale("w", -1)
            assert sup.resolve("w") == ["w_0"] and sup.resolve("w_0") == ["w_0"]
            assert all_running(sup, 1)


async def test_signal_to_exited_replica_is_not_running_error(
    no_leaks: None, events: Events
) -> None:
    config = cfg(
        GroupConfig(name="w", command=SLEEP, bind=False),
        GroupConfig(name="once", command=("true",), restart="never", bind=False),
    )
    with anyio.fail_after(30):
        async with sup_for(config, events) as sup:
            await eventually(
                lambda: next(s for s in sup.status() if s.group == "once").state == "exited"
            )
            with pytest.raises(NotRunningError):
                await sup.signal("once_0", signal.SIGUSR1)
            with pytest.raises(NotRunningError):
                await sup.signal("once", "SIGUSR1")


async def test_task_group_start_run(no_leaks: None, events: Events) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, replicas=3, bind=False))
    sup = sup_for(config, events)
    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            # start() returned with the fleet up.
            assert all_running(sup, 3) and sup.is_ready()
            await sup.scale("w", 4)
            assert all_running(sup, 4)
            sup.request_stop()
            assert await sup.wait() == 0
        assert all(gone(p) for p in pids(sup).values())
    assert len(events.of("shutdown_complete")) == 1


async def test_operations_after_stop_raise_supervisor_errors(
    no_leaks: None, events: Events
) -> None:
    config = cfg(GroupConfig(name="w", command=SLEEP, bind=False))
    sup = sup_for(config, events)
    with anyio.fail_after(30):
        async with sup:
            pass
        for call in (sup.scale("w", 2), sup.restart("w"), sup.reload(config)):
            with pytest.raises(SupervisorError):
                await call
