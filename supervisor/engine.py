"""The Supervisor: desired state, reconciled by group runners, stopped in bounded phases.

What should run (the config's groups, their replica counts, the places) is
data; group runners make it so and report back. Scaling and reload change
the desired state; they are not separate code paths. Embedding is the
default: no signal handler, no ``sys.exit``, no logging configuration.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, BinaryIO, TextIO

import anyio
import anyio.to_thread
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream

from .allocator import PlaceAllocator
from .config import Config, ConfigError, GroupConfig
from .errors import (
    NotRunningError,
    RollingRestartError,
    StoppingError,
    UnknownGroupError,
    UnknownReplicaError,
)
from .exits import parse_signal
from .group import GroupRunner
from .output import (
    ChannelSink,
    OutputLine,
    OutputSink,
    RecordSink,
    Stream,
    StreamSink,
    make_prefix,
    use_color,
)
from .plan import LaunchPlan, Planner
from .policy import RestartBudget
from .readiness import NotifyListener, parent_of
from .replica import DRAIN_TIMEOUT, KILL_WAIT, Replica, ReplicaStatus
from .sockets import SocketSet
from .state import ReplicaState
from .verify import Target, Verifier

EXIT_OK = 0
EXIT_ESCALATED = 1
#: A bound replica's threads are read back once it is this old (its wrappers have exec'd).
VERIFY_AFTER = 0.4
#: After the stop deadline, how long a stalled reader of our output is waited for.
OUTPUT_GRACE = 0.5


class Supervisor:
    """Run every group of a ``Config`` inside any anyio host, and change it while it runs.

    ``async with Supervisor(config) as sup`` returns once every replica is
    ready (or has ended); leaving the block stops them all, shielded from
    cancellation. ``await tg.start(sup.run)`` does the same inside a task
    group the host owns; ``run`` returns the exit status ``serve`` would.
    """

    def __init__(
        self,
        config: Config,
        *,
        plan: LaunchPlan | None = None,
        stdout: TextIO | BinaryIO | None = None,
        stderr: TextIO | BinaryIO | None = None,
        on_output: Callable[[OutputLine], Awaitable[None] | None] | None = None,
        color: bool | None = None,
        logger: Any = None,
        environ: Mapping[str, str] | None = None,
        drain_timeout: float = DRAIN_TIMEOUT,
        line_buffer: int | None = None,
        output: StreamSink | None = None,
        sockets: SocketSet | None = None,
        child_nofile: tuple[int, int] | None = None,
        node_rank: int | None = None,
        nodes: int | None = None,
    ) -> None:
        self.config = config
        self._sockets = sockets
        self._own_sockets = sockets is None
        self.child_nofile = child_nofile
        self._launcher_args = (node_rank, nodes)
        self._plan = plan
        self._environ = dict(os.environ if environ is None else environ)
        self.log = logger if logger is not None else structlog.get_logger("supervisor")
        self.sink: OutputSink
        self._own_sink = on_output is None and output is None and line_buffer is None
        if on_output is not None:
            self.sink = RecordSink(on_output)
        elif output is not None:
            self.sink = output
        else:
            self.sink = StreamSink(stdout, stderr, on_closed=self._output_closed)
        self._channel: ChannelSink | None = None
        if line_buffer is not None:
            if on_output is not None or stdout is not None or stderr is not None:
                raise ValueError("give line_buffer or on_output or stdout/stderr, not several")
            self._channel = ChannelSink(line_buffer)
            self.sink = self._channel
        if color is None:
            color = use_color(
                config.supervisor.color, stdout if stdout is not None else sys.stdout, self._environ
            )
        self._color = color and self.sink.prefixed
        self.drain_timeout = drain_timeout
        self.history: Any = _new_history()
        self.groups: dict[str, GroupRunner] = {}
        self.stopping = False
        self.exit_status = EXIT_OK
        self.escalations = 0
        self._colors = 0
        self._verifier = Verifier()
        self._notify: NotifyListener | None = None
        self._tg: TaskGroup | None = None
        self._outer: TaskGroup | None = None
        self._unsettled: set[Replica] = set()
        self._not_done: set[Replica] = set()
        self._state_change = anyio.Event()
        self._end = anyio.Event()
        self._stop_requested = anyio.Event()
        self._force = anyio.Event()
        self._shutdown_done = anyio.Event()
        self._finished = anyio.Event()
        self._started = False
        self._launched = False  # every replica of the config was added
        self._owner: int | None = None
        self._reloading = anyio.Lock()

    # -- lifecycle of the supervisor itself -----------------------------------
    @property
    def plan(self) -> LaunchPlan:
        if self._plan is None:
            self._plan = self._build_plan(self.config)
            self._log_warnings(self._plan.warnings)
        return self._plan

    def _build_plan(self, config: Config) -> LaunchPlan:
        """Blocking (topology, numactl probe): called before the loop or in a worker thread."""
        from .numaprobe import NumactlProbe
        from .plan import build_plan

        node_rank, nodes = self._launcher_args
        return build_plan(
            config,
            environ=self._environ,
            probe=NumactlProbe(),
            node_rank=node_rank,
            nodes=nodes,
        )

    def _log_warnings(self, warnings: Sequence[str]) -> None:
        for warning in warnings:
            self.log.warning("plan_warning", message=warning)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()  # shielded inside; closes the task group that start opened

    async def _close_outer(self) -> None:
        """Exit the task group entered by ``start`` (every task in it has ended)."""
        outer, self._outer = self._outer, None
        if outer is not None:
            await outer.__aexit__(None, None, None)

    async def start(self) -> None:
        """Start every group; return once each replica is ready or has ended."""
        if self._started:
            raise RuntimeError("this Supervisor was already started")
        self._owner = anyio.get_current_task().id
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        try:
            # Shielded: on trio, ``started()`` inside a cancelled caller does not
            # hand the task over, and ``start`` would wait for it forever.
            with anyio.CancelScope(shield=True):
                await self._outer.start(self.run)
            await anyio.lowlevel.checkpoint_if_cancelled()  # a host cancelled meanwhile
        except BaseException:
            self.request_stop()
            await self._wait_finished()
            await self._close_outer()
            raise

    async def run(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> int:
        """Supervise until every replica is done or a stop completed; the exit status.

        ``task_status.started()`` comes once every replica is ready or has
        ended, so ``await tg.start(sup.run)`` returns with the fleet up.
        """
        if self._started:
            raise RuntimeError("this Supervisor was already started")
        self._started = True
        try:
            if self._plan is None:
                self._plan = await anyio.to_thread.run_sync(self._build_plan, self.config)
                self._log_warnings(self._plan.warnings)
            if self._sockets is None:
                self._sockets = SocketSet()
                self._sockets.open(self.config)
            await self._main(self._plan, task_status)
        finally:
            if self.history is not None:
                self.history.close()  # `tail -f` followers end
            if self._notify is not None:
                self._notify.close()
            if self._own_sockets and self._sockets is not None:
                self._sockets.close()
            if self._own_sink and isinstance(self.sink, StreamSink):
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(self.sink.close, self.drain_timeout)
            self._finished.set()
            if self._channel is not None:
                self._channel.close()
        return self.exit_status

    async def wait(self) -> int:
        """Wait until every replica is done or stopped; return serve's exit status."""
        if not self._started:
            raise RuntimeError("start the Supervisor first (async with, or await start())")
        await self._finished.wait()
        return self.exit_status

    async def stop(self, *, force: bool = False) -> int:
        """Stop every replica (stop signal, grace, SIGKILL of the trees) and wait.

        Called from the task that called ``start``, it also closes the task
        group that ``start`` opened; from another task it only waits.
        """
        if not self._started:
            return self.exit_status
        self.request_stop(force=force)
        pierced = await self._wait_finished()
        if self._outer is not None and anyio.get_current_task().id == self._owner:
            await self._close_outer()
        if pierced is not None:
            raise pierced
        return self.exit_status

    async def _wait_finished(self) -> BaseException | None:
        """Wait, shielded, until the stop is complete.

        asyncio's ``Task.cancel()`` pierces anyio's shields, so a host that
        cancels its task twice would leave mid-stop with replicas alive; such a
        cancellation is held back and returned, for the caller to re-raise once
        everything is stopped.
        """
        pierced: BaseException | None = None
        while True:
            try:
                with anyio.CancelScope(shield=True):
                    await self._finished.wait()
                return pierced
            except anyio.get_cancelled_exc_class() as exc:
                pierced = exc

    def request_stop(self, *, force: bool = False) -> None:
        """Begin stopping without waiting (what a signal handler calls)."""
        if force:
            self._force.set()
        self._stop_requested.set()

    def lines(self) -> MemoryObjectReceiveStream[OutputLine]:
        """The replicas' output as ``OutputLine`` records (needs ``line_buffer=N``).

        ``async for rec in sup.lines():`` ends once the supervisor has finished
        and the buffered lines were read. At most N lines wait unread; then the
        replicas block on their writes until the host reads (backpressure).
        One reader; closing it discards the lines that follow.
        """
        if self._channel is None:
            raise RuntimeError("lines() needs Supervisor(config, line_buffer=N)")
        self._channel.claimed = True
        return self._channel.receive

    def serve_control(self, *, socket: str | None = None, listen: str | None = None) -> Any:
        """``async with sup.serve_control(socket=PATH)``: the control socket in a host app.

        The same HTTP API ``serve`` offers to ``ctl`` and ``curl``; ``listen``
        adds a read-only TCP listener (metrics, health, status).
        """
        from .control.server import serve_control

        return serve_control(self, socket=socket, listen=listen)

    # -- reading the state ------------------------------------------------------
    @property
    def replicas(self) -> list[Replica]:
        return [r for g in self.groups.values() for _, r in sorted(g.replicas.items())]

    def status(self, *, verify: bool = True) -> list[ReplicaStatus]:
        """One snapshot per replica; ``verify`` first reads back bound replicas' threads
        (what a status request asks for; a watcher of every state change skips it)."""
        if verify:
            self._verify_all()
        return [r.status() for r in self.replicas]

    def group_names(self) -> list[str]:
        return list(self.groups)

    def resolve(self, name_or_group: str) -> list[str]:
        """The replica names a name or a group name stands for."""
        return [r.name for r in self._targets(name_or_group)]

    def is_ready(self) -> bool:
        """Every replica that should run is running and ready."""
        for r in self.replicas:
            if r.want in ("stop", "remove") or r.state in (
                ReplicaState.EXITED,
                ReplicaState.STOPPED,
            ):
                continue
            if not (r.state is ReplicaState.RUNNING and r.ready):
                return False
        return self._launched and not self.stopping

    def managed_pids(self) -> set[int]:
        """Pids of running replicas (their own waiters reap them)."""
        return {r.child.pid for r in self.replicas if r.child is not None and r.alive}

    def _targets(self, name_or_group: str) -> list[Replica]:
        group = self.groups.get(name_or_group)
        if group is not None:
            return group.active()
        for r in self.replicas:
            if r.name == name_or_group and r.want != "remove":
                return [r]
        known = ", ".join([*self.groups, *(r.name for r in self.replicas[:20])])
        raise UnknownReplicaError(f"no replica or group named {name_or_group!r} (known: {known})")

    def _group(self, name: str) -> GroupRunner:
        group = self.groups.get(name)
        if group is None:
            raise UnknownGroupError(
                f"no group named {name!r} (groups: {', '.join(self.groups) or 'none'})"
            )
        return group

    def _check_running(self) -> None:
        if self.stopping or self._stop_requested.is_set():
            raise StoppingError("the supervisor is stopping")
        if self._tg is None:
            raise NotRunningError("the supervisor is not running (start it first)")

    # -- operations -------------------------------------------------------------
    async def signal(self, name: str, signum: int | str) -> None:
        """Send a signal to each named replica's process group."""
        sig = parse_signal(signum) if isinstance(signum, str) else signum
        targets = self._targets(name)
        sent = [r for r in targets if r.send(int(sig))]
        if not sent:
            states = ", ".join(f"{r.name} {r.state.value}" for r in targets)
            raise NotRunningError(f"no running replica to signal in {name!r} ({states})")

    async def scale(self, group: str, n: int) -> None:
        """Run ``n`` replicas of ``group`` from now on; returns once they are started/gone.

        Up: new replicas take free places (NoFreePlaceError, nothing changed,
        when a bound group has too few). Down: the highest indexes stop for
        good and give their places back.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"replicas must be an integer >= 0, got {n!r}")
        self._check_running()
        runner = self._group(group)
        # An index still on its way out (an earlier scale-down) is let go first,
        # so that index starts afresh rather than being skipped.
        leaving = [r for r in runner.replicas.values() if r.want == "remove" and r.index < n]
        with anyio.move_on_after(self._op_timeout()):
            for r in leaving:
                await r.finished.wait()
        before = set(runner.replicas.values())
        runner.scale_to(n)
        self.log.info("group_scaled", group=group, replicas=n)
        added = [r for r in runner.replicas.values() if r not in before]
        removed = [r for r in before if r.want == "remove"]
        with anyio.move_on_after(self._op_timeout()):
            for r in added:
                await r.settled.wait()
            for r in removed:
                await r.finished.wait()

    async def start_replica(self, name: str) -> None:
        """Start stopped (or finished) replicas of a name or group again."""
        self._check_running()
        targets = self._targets(name)
        waiting = []
        for r in targets:
            if r.state is ReplicaState.STOPPED:
                r.settled = anyio.Event()
                r.request("run")
                waiting.append(r)
            elif r.state is ReplicaState.EXITED:
                r.want = "run"
                r.settled = anyio.Event()
                self.groups[r.plan.group].relaunch(r)
                waiting.append(r)
            elif r.want == "stop":
                r.request("run")
        with anyio.move_on_after(self._op_timeout()):
            for r in waiting:
                await r.settled.wait()

    async def stop_replica(self, name: str) -> None:
        """Stop replicas for good (stop signal, grace, tree kill); they keep their place."""
        self._check_running()
        targets = self._targets(name)
        for r in targets:
            r.request("stop", timeout=self.config.supervisor.shutdown_timeout)
        with anyio.move_on_after(self._op_timeout()):
            for r in targets:
                while not (
                    r.state in (ReplicaState.STOPPED, ReplicaState.FAILED)
                    or (r.state.terminal and not r.alive)
                ):
                    await self._wait_change()

    async def restart(
        self, name: str, *, rolling: bool = False
    ) -> ReplicaStatus | list[ReplicaStatus]:
        """Restart a replica or a group; return once each successor was spawned.

        ``rolling``: one replica at a time, each successor ready before the next
        one stops; a successor that fails stops the roll (RollingRestartError)
        and leaves the rest running. An operator's restart is not a failure:
        it does not count toward ``max_restarts``.
        """
        self._check_running()
        single = name not in self.groups
        targets = self._targets(name)
        for r in targets:
            if r.state.terminal and r.state is ReplicaState.FAILED:
                raise NotRunningError(f"replica {r.name!r} has failed; it cannot restart")
        if rolling:
            for r in targets:
                await self._replace(r)
        else:
            marks = {r: r.spawns for r in targets}
            for r in targets:
                self._request_restart(r)
            with anyio.move_on_after(self._op_timeout()):
                for r, mark in marks.items():
                    while r.spawns == mark and not r.state.terminal and not self.stopping:
                        await self._wait_change()
        statuses = [r.status() for r in targets]
        return statuses[0] if single else statuses

    def _request_restart(self, r: Replica) -> None:
        if r.state is ReplicaState.EXITED:
            r.want = "run"
            self.groups[r.plan.group].relaunch(r)
        else:
            r.request("restart", timeout=self.config.supervisor.shutdown_timeout)

    async def _replace(self, r: Replica) -> None:
        """Restart ``r`` and wait for its successor to be ready; raise when it is not."""
        mark = r.spawns
        self._request_restart(r)
        limit = self._op_timeout() + float(getattr(r.config, "ready_timeout", 60.0))
        with anyio.move_on_after(limit):
            while not self.stopping:
                if r.spawns > mark and r.state is ReplicaState.RUNNING and r.ready:
                    return
                if r.spawns > mark and r.state in (
                    ReplicaState.BACKOFF,
                    ReplicaState.FAILED,
                    ReplicaState.EXITED,
                    ReplicaState.STOPPED,
                ):
                    break
                await self._wait_change()
        raise RollingRestartError(
            f"replica {r.name!r} did not come back ready ({r.state.value}"
            + (f", {r.last_exit}" if r.last_exit else "")
            + "); the rolling restart stopped there and the rest keep running"
        )

    async def reload(self, config: Config | None = None) -> None:
        """Apply a new config: removed groups stop, added ones start, changed ones roll.

        ``None`` reads the file the current config came from again. An invalid
        config raises ConfigError and changes nothing (one ``reload_failed``).
        A group whose only change is ``replicas`` is scaled; every other
        replica keeps running untouched (same pid).
        """
        self._check_running()
        async with self._reloading:
            try:
                if config is None:
                    from .config import load_config

                    config = await anyio.to_thread.run_sync(load_config, self.config.source)
                plan = await anyio.to_thread.run_sync(self._build_plan, config)
                if self._sockets is not None:
                    self._sockets.open(config)
            except ConfigError as exc:
                self.log.error("reload_failed", error=str(exc))
                raise
            self.log.info("reload_started", source=config.source)
            self._log_warnings(plan.warnings)
            await self._apply(config, plan)
            self.log.info("reload_complete", groups=len(self.groups))

    async def _apply(self, new: Config, plan: LaunchPlan) -> None:
        old = self.config
        assert plan.planner is not None
        planner = plan.planner
        allocator = PlaceAllocator(planner.places)
        topology_same = new.topology == old.topology
        old_specs = {g.name: g for g in old.groups}
        unchanged: list[tuple[GroupRunner, GroupConfig]] = []
        changed: list[tuple[GroupRunner, GroupConfig]] = []
        added: list[GroupConfig] = []
        for gc in new.groups:
            runner = self.groups.get(gc.name)
            if runner is None:
                added.append(gc)
            elif _same_spec(old_specs[gc.name], gc) and (topology_same or not gc.bind):
                unchanged.append((runner, gc))
            else:
                changed.append((runner, gc))
        removed = [g for name, g in self.groups.items() if name not in {g.name for g in new.groups}]
        # Kept replicas hold on to their places in the new allocator first.
        for runner, gc in [*unchanged, *changed]:
            for r in runner.replicas.values():
                place = r.plan.place
                if place is not None and r.want != "remove" and planner.binds(gc):
                    allocator.claim(place, r.name)
        self.config = new
        for runner, _ in [*unchanged, *changed]:
            runner.planner, runner.allocator = planner, allocator
        for runner in removed:
            for r in runner.replicas.values():
                r.request("remove", timeout=new.supervisor.shutdown_timeout)
        for runner, gc in unchanged:
            runner.config = gc
            if len(runner.active()) != gc.replicas:
                runner.scale_to(gc.replicas)
        for gc in added:
            runner = await self._add_group(gc, planner, allocator)
            runner.scale_to(gc.replicas)
        for runner, gc in changed:
            await self._roll_group(runner, gc)
        for runner in removed:
            with anyio.move_on_after(self._op_timeout()):
                for r in list(runner.replicas.values()):
                    await r.finished.wait()
            runner.close()
            del self.groups[runner.name]
        self._poke()

    async def _roll_group(self, runner: GroupRunner, gc: GroupConfig) -> None:
        """Replace a changed group's replicas one at a time, on their places."""
        old_binds = runner.planner.binds(runner.config) if runner.config else False
        runner.config = gc
        runner.budget = RestartBudget(gc)
        keep = [r for r in runner.active() if r.index < gc.replicas]
        for r in keep:
            place = r.plan.place
            binds = runner.planner.binds(gc)
            if binds and (place is None or runner.allocator.holder(place) != r.name):
                place = runner.allocator.take(r.name)
            elif not binds:
                if place is not None and old_binds:
                    runner.allocator.give(place)
                place = None
            r.plan = runner.planner.replica(gc, r.index, gc.replicas, place)
            r.config = gc
            r.stop_signal = parse_signal(gc.stop_signal)
            if r.state in (ReplicaState.STOPPED, ReplicaState.EXITED, ReplicaState.FAILED):
                continue  # takes the new plan when it next starts
            await self._replace(r)
        runner.scale_to(gc.replicas)

    async def _add_group(
        self, gc: GroupConfig, planner: Planner, allocator: PlaceAllocator
    ) -> GroupRunner:
        assert self._tg is not None
        runner = GroupRunner(self, gc, planner, allocator)
        await self._tg.start(runner.run)
        self.groups[gc.name] = runner
        return runner

    def _op_timeout(self) -> float:
        return self.config.supervisor.shutdown_timeout + KILL_WAIT + self.drain_timeout

    # -- what groups and replicas ask of the supervisor -------------------------
    def shutdown_timeout(self) -> float:
        return self.config.supervisor.shutdown_timeout

    def next_color(self) -> int:
        self._colors += 1
        return self._colors - 1

    def prefix(self, replica: Replica, pid: int) -> bytes:
        if not self.sink.prefixed:
            return b""
        return make_prefix(replica.name, pid, replica.color_index if self._color else None)

    async def write(self, replica: Replica, pid: int, stream: Stream, data: bytes) -> None:
        if self.history is not None:
            self.history.record(replica.name, stream, data)
        await self.sink.write(replica.name, pid, stream, data)

    def socket_fds(self, names: tuple[str, ...]) -> tuple[int, ...]:
        if not names or self._sockets is None:
            return ()
        return self._sockets.fds(names)

    def notify_socket(self) -> str:
        """The path of our own sd_notify socket for replicas, opened on first use."""
        if self._notify is None:
            assert self._tg is not None
            self._notify = NotifyListener(self._notified)
            self._tg.start_soon(self._notify.serve)
        return self._notify.path

    def _notified(self, pid: int, fields: dict[str, str]) -> None:
        by_pid = {r.pid: r for r in self.replicas if r.pid is not None}
        for _ in range(4):  # the replica itself, or a descendant a few levels down
            replica = by_pid.get(pid)
            if replica is not None:
                replica.notified(fields)
                return
            pid = parent_of(pid)
            if pid <= 1:
                return

    async def wait_changed(self) -> None:
        """Return at the next change of any replica's state (for status watchers)."""
        await self._wait_change()

    async def flushed(self, stream: Stream) -> None:
        if isinstance(self.sink, StreamSink):
            await self.sink.drain(stream)

    async def stop_requested(self) -> None:
        await self._stop_requested.wait()

    async def dependencies_ready(self, group: GroupRunner) -> None:
        """Wait until every group this one comes ``after`` is ready (start order)."""
        while not self.dependencies_met(group):
            await self._wait_change()

    def dependencies_met(self, group: GroupRunner) -> bool:
        return all(self._satisfied(name) for name in group.config.after)

    def _satisfied(self, name: str) -> bool:
        runner = self.groups.get(name)
        if runner is None:
            return True
        active = runner.active()
        return bool(active) and all(
            (r.state is ReplicaState.RUNNING and r.ready)
            or (r.state is ReplicaState.EXITED and r.last_returncode == 0)
            for r in active
        )

    def changed(self, replica: Replica) -> None:
        """A replica moved: keep the counts that decide settling and finishing."""
        if replica.settled.is_set():
            self._unsettled.discard(replica)
        else:
            self._unsettled.add(replica)
        if replica.finished.is_set():
            self._not_done.discard(replica)
        else:
            self._not_done.add(replica)
        self._poke()
        if (
            not self._not_done
            and not self.stopping
            and self._tg is not None
            and any(r.state.terminal and r.want != "remove" for r in self.replicas)
        ):
            self._end.set()  # every replica is done: the supervisor's work is over

    def _poke(self) -> None:
        change, self._state_change = self._state_change, anyio.Event()
        change.set()

    async def _wait_change(self) -> None:
        await self._state_change.wait()

    def escalate(self, replica: Replica, cause: str, reason: str) -> None:
        self.exit_status = EXIT_ESCALATED
        self.escalations += 1
        self.log.error(
            "group_escalated",
            group=replica.plan.group,
            replica=replica.name,
            pid=replica.child.pid if replica.child else None,
            cause=cause,
            reason=reason,
            exit_code=replica.last_returncode,
        )
        self.request_stop()

    def verify(self, replica: Replica) -> None:
        """Read back where a bound replica's threads may run; report drift once each."""
        self._verify([replica])

    def _verify_all(self) -> None:
        self._verify(self.replicas)

    def _verify(self, replicas: Sequence[Replica]) -> None:
        # Memory nodes are not compared: Mems_allowed is the cpuset's, which
        # numactl --membind does not narrow, so it would always read as drift.
        # A process younger than VERIFY_AFTER may still be in its exec chain
        # (setpriv, numactl), with the supervisor's own affinity: not drift yet.
        settled = time.time() - VERIFY_AFTER
        targets = [
            Target(r.name, r.pid, tuple(r.plan.cpus), tuple(r.plan.nodes), False)
            for r in replicas
            if r.plan.cpus and r.pid is not None and (r.started_at or 0) <= settled
        ]
        if not targets:
            return
        results = self._verifier.check_all(targets)
        by_name = {r.name: r for r in replicas}
        for name, (verdict, found) in results.items():
            replica = by_name[name]
            replica.placement = verdict
            for m in found:
                self.log.warning(
                    "placement_mismatch",
                    replica=name,
                    pid=m.pid,
                    tid=m.tid,
                    thread=m.thread,
                    cpus=_cpulist(m.cpus),
                    place=_cpulist(replica.plan.cpus),
                )

    def _output_closed(self, stream: str, why: str) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr may be the closed one
            self.log.warning(
                "output_closed",
                stream=stream,
                reason=f"{why}; replica output to {stream} is dropped from now on, "
                "the replicas keep running",
            )

    # -- the main task -------------------------------------------------------------
    async def _main(self, plan: LaunchPlan, task_status: Any) -> None:
        try:
            # Shielded: the host's cancel scopes end the host's code, not the
            # replicas; they stop through stop(), which __aexit__ always calls.
            with anyio.CancelScope(shield=True):
                await self._supervise(plan, task_status)
        except BaseException:
            # An engine bug or a host cancellation: never leave a replica behind.
            for r in self.replicas:
                r.kill()
            raise

    async def _supervise(self, plan: LaunchPlan, task_status: Any) -> None:
        planner = plan.planner or Planner(self.config, environ=self._environ)
        allocator = PlaceAllocator(planner.places)
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for gc in self.config.groups:
                await self._add_group(gc, planner, allocator)
            for rp in plan.replicas:
                if rp.place is not None:
                    allocator.claim(rp.place, rp.name)
                runner = self.groups[rp.group]
                if self._stop_requested.is_set():
                    continue
                self._unsettled.add(runner.add(rp))
                # Let the replica spawn and the loop poll its pipes before the next
                # one: the first lines are forwarded while later replicas start.
                await anyio.lowlevel.checkpoint()
            self._launched = True
            tg.start_soon(self._watch_stop)
            if not self.replicas:
                self._end.set()
            async with anyio.create_task_group() as wait:

                async def settled() -> None:
                    while self._unsettled:
                        await self._wait_change()
                    wait.cancel_scope.cancel()

                async def stopped() -> None:
                    await self._stop_requested.wait()
                    wait.cancel_scope.cancel()

                wait.start_soon(settled)
                wait.start_soon(stopped)
            task_status.started()
            await self._end.wait()
            if self._stop_requested.is_set():
                await self._shutdown_done.wait()
            await self._final_drain()
            for runner in self.groups.values():
                runner.close()
            tg.cancel_scope.cancel()
        self._tg = None

    async def _watch_stop(self) -> None:
        await self._stop_requested.wait()
        await self._shutdown()
        self._shutdown_done.set()
        self._end.set()

    def _stop_layers(self) -> list[list[GroupRunner]]:
        """Groups in stop order: those nothing else comes after stop first."""
        remaining = dict(self.groups)
        layers: list[list[GroupRunner]] = []
        while remaining:
            needed = {d for g in remaining.values() for d in getattr(g.config, "after", ())}
            layer = [g for name, g in remaining.items() if name not in needed]
            if not layer:  # a cycle cannot pass config checks; stop the rest together
                layer = list(remaining.values())
            layers.append(layer)
            for g in layer:
                del remaining[g.name]
        return layers

    async def _shutdown(self) -> None:
        """Stop signal in reverse start order, one shared deadline, then SIGKILL of the trees."""
        self.stopping = True
        timeout = self.config.supervisor.shutdown_timeout
        deadline = anyio.current_time() + timeout
        live = [r for r in self.replicas if r.alive]
        self.log.info("shutdown_started", replicas=len(live), timeout=timeout)
        assert self._tg is not None
        self._tg.start_soon(self._abandon_output_at, deadline + OUTPUT_GRACE)

        async def forced() -> None:
            await self._force.wait()
            for r in self.replicas:
                r.stop_by(anyio.current_time(), grace=0.0, forced=True)

        told_by = anyio.current_time() + self.drain_timeout
        async with anyio.create_task_group() as tg:
            tg.start_soon(forced)
            for layer in self._stop_layers():
                members = [r for g in layer for r in g.replicas.values()]
                for r in members:
                    r.stop_by(deadline, grace=timeout, forced=self._force.is_set())
                    r.begin_stop()  # here, in one pass: no wait for 64 tasks to wake
                with anyio.move_on_after(max(0.0, deadline - anyio.current_time()) + KILL_WAIT):
                    for r in members:
                        await r.wait_gone()
                # Their exits told (last lines forwarded) before the next layer's signal;
                # a slow reader of ours holds the layers back by drain_timeout in all.
                with anyio.move_on_after(max(0.0, told_by - anyio.current_time())):
                    for r in members:
                        await r.wait_reported()
            tg.cancel_scope.cancel()
        for r in self.replicas:
            # Descendants that left the process group, remembered at the stop signal.
            r.kill()

    async def _abandon_output_at(self, when: float) -> None:
        await anyio.sleep(max(0.0, when - anyio.current_time()))
        if isinstance(self.sink, StreamSink):
            self.sink.abandon()

    async def _final_drain(self) -> None:
        """Let the last lines through (one bounded wait), then report completion.

        Output a stalled reader still holds back at the end of that wait is
        dropped, and counted in ``shutdown_complete``.
        """
        for r in self.replicas:
            r.kill_strays()  # nothing of ours outlives the supervisor
        with anyio.move_on_after(self.drain_timeout):
            for r in self.replicas:
                await r.wait_drained()
            if isinstance(self.sink, StreamSink):
                for stream in ("stdout", "stderr"):
                    await self.sink.drain(stream)
        dropped = self.sink.abandon() if isinstance(self.sink, StreamSink) else 0
        with anyio.move_on_after(self.drain_timeout):
            for r in self.replicas:
                await r.finished.wait()  # each replica's last state is recorded
        if self.stopping:
            fields: dict[str, object] = {"exit_status": self.exit_status}
            if dropped:
                fields["output_dropped_bytes"] = dropped
            self.log.info("shutdown_complete", **fields)


def _same_spec(a: GroupConfig, b: GroupConfig) -> bool:
    """Equal but for ``replicas``: such a group is scaled, not replaced."""
    from dataclasses import replace

    return replace(a, replicas=b.replicas) == b


def _cpulist(cpus: Any) -> str:
    from topology import format_cpulist

    return format_cpulist(sorted(cpus))


def _new_history() -> Any:
    try:
        from .history import OutputHistory
    except ImportError:
        return None
    return OutputHistory()
